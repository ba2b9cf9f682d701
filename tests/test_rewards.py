"""Each built-in reward as a pure function on hand-made completions, and every way to name a plugin."""

import pytest
from helpers import ROOT

from rlrefine.core.registry import build


class Tok:  # what the rewards read from the policy's tokenizer
    eos_token_id = 1


def resolve(name, tokenizer=None, **settings):
    """A reward as the pipeline resolves it: by name, with settings from the config."""
    return build("reward", {"name": name, **settings}, tokenizer=tokenizer)


def test_solver_correctness(reward_batch, caplog):
    completions, ids, columns = reward_batch
    logged = {}
    reward = resolve("solver", tokenizer=Tok(), solver="hops=1", subquestion_cost=0.05)
    out = reward([None] * 5, completions, ids, log_metric=logged.__setitem__, **columns)
    assert out == pytest.approx([0.9, 0.0, 0.0, 0.0, 0.0])  # 1 - 2 x 0.05; cut-off completion gets 0
    assert logged["solver[hops=1]/accuracy"] == pytest.approx(2 / 5) and logged["decomposer/truncated"] == 0.2
    reward([None] * 5, completions, ids, **columns)
    warned = [r.getMessage() for r in caplog.records if "completion-length limit" in r.getMessage()]
    assert warned == [  # a fifth of the batch cut, said once: those samples teach nothing
        "solver[hops=1]: 20 % of a batch was cut at the completion-length limit and scored 0.0: if decompositions "
        "need more tokens (deeper problems, more sub-questions), raise max_completion_length"
    ]
    two = resolve("solver", solver="hops=2")(None, completions, ids, **columns)
    assert two[:2] == [1.0, 1.0] and reward.__name__ == "solver[hops=1]"


def test_solver_failure_gives_none(reward_batch):
    completions, ids, columns = reward_batch
    columns = {
        **columns,
        "graph": [""] * len(completions),
    }  # a symbolic solver cannot work without the graph: it raises
    logged = {}
    out = resolve("solver", solver="hops=1")(None, completions, ids, log_metric=logged.__setitem__, **columns)
    assert out == [None] * 5 and logged["solver[hops=1]/errors"] == 5.0


def test_a_reward_that_skips_every_sample_stops_the_run_naming_why(reward_batch):
    """A solver endpoint that fails every request (a wrong model id, a URL without /v1) leaves no signal: after
    ``SILENT_BATCHES`` such batches in a row the run stops with the solver's own error, not after 500 silent steps."""
    from rlrefine.core.protocols import BackendError
    from rlrefine.training.rl import SILENT_BATCHES, Watched

    completions, ids, columns = reward_batch
    broken = {**columns, "graph": [""] * len(completions)}  # the symbolic solver cannot work without the graph
    reward = Watched(resolve("solver", solver="hops=1"), "solver")
    reward(None, completions, ids, **columns)  # a batch with signal resets the count
    for _ in range(SILENT_BATCHES - 1):
        assert reward(None, completions, ids, **broken) == [None] * 5
    assert reward(None, completions, ids, **columns) != [None] * 5  # signal again: counting starts over
    for _ in range(SILENT_BATCHES - 1):
        reward(None, completions, ids, **broken)
    with pytest.raises(BackendError, match=r"skipped every sample of 3 batches in a row.*its solver says: \w+Error"):
        reward(None, completions, ids, **broken)


def test_partial_and_multi_solver(reward_batch):
    completions, ids, columns = reward_batch
    assert resolve("partial", solver="hops=1")(None, completions, ids, **columns) == [1.0, 0.0, 0.5, 0.0, 1.0]
    multi = resolve("multi_solver", solvers=["hops=1", "hops=2"])(None, completions, ids, **columns)
    assert multi[:3] == [1.0, 0.5, 0.5]


def test_shape_rewards(reward_batch):
    completions, ids, _ = reward_batch
    assert resolve("format")(None, completions) == [1.0, 1.0, 1.0, 0.0, 1.0]
    assert resolve("cost", per_subquestion=0.1)(None, completions) == pytest.approx([-0.2, -0.1, -0.2, -0.1, -0.2])
    assert resolve("token_cost", per_token=0.5)(None, completions, ids) == [-1.5, -1.0, -1.5, -1.0, -1.5]
    assert resolve("cap", cap=1)(None, completions) == [-1.0, 0.0, -1.0, 0.0, -1.0]


def test_plugin_forms(tmp_path, monkeypatch):
    assert resolve("rlrefine.rewards.shape:format_validity")(None, ["No decomposition ."]) == [1.0]
    example = resolve(f"{ROOT / 'rewards' / 'plugin_example.py'}:novelty", penalty=2.0)  # from any folder
    assert example(None, ["Q1: a ?\nQ2: a ?"], question=["b ?"]) == [-2.0]
    plugin = tmp_path / "my_reward.py"
    plugin.write_text("def short(prompts, completions, **kwargs):\n    return [-len(c) / 100 for c in completions]\n")
    assert resolve(f"{plugin}:short")(None, ["abcd"]) == [-0.04]
    # an installed package's entry point, found through real package metadata on sys.path
    dist = tmp_path / "site" / "myrewards-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myrewards\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[rlrefine.rewards]\nbrevity = my_reward:short\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve("brevity")(None, ["ab"]) == [-0.02]


def test_resolution_errors():
    with pytest.raises(ValueError) as unknown:
        resolve("formt")
    assert str(unknown.value) == (
        "unknown reward 'formt'; did you mean 'format'? valid: cap, cost, format, multi_solver, partial, solver, "
        "token_cost, 'package.module:attr' or 'file.py:attr'"
    )
    with pytest.raises(
        ValueError, match=r"^reward 'solver': unknown setting\(s\) solvr; valid: solver, subquestion_cost, truncated$"
    ):
        resolve("solver", solvr="hops=1")
    with pytest.raises(
        ValueError,
        match=r"is a ready reward, not a factory: it takes settings its own keyword parameters \(cap\), "
        "not weight; .*write a factory",
    ):
        resolve("format", weight=2)
    assert resolve("format", cap=4)(None, ["Q1: a ?\nQ2: b ?\nQ3: c ?\nQ4: d ?"]) == [1.0]  # its own setting binds
    with pytest.raises(ValueError, match="plugin file 'missing.py' not found"):
        resolve("missing.py:f")
    with pytest.raises(ValueError, match="rlrefine.rewards.shape has no 'nothing'; it defines: .*format_validity"):
        resolve("rlrefine.rewards.shape:nothing")
    with pytest.raises(ValueError, match="reward 'nope.mod:f': cannot import 'nope.mod': ModuleNotFoundError"):
        resolve("nope.mod:f")


def test_a_broken_plugin_file_is_one_line_and_is_loaded_afresh_once_fixed(tmp_path):
    plugin = tmp_path / "wip.py"
    plugin.write_text("def short(prompts, completions, **kwargs):\n    return [0.0]\nundefined_name\n")
    for _ in range(2):  # the file's own error, not "has no 'short'" nor a half-run module on retry
        with pytest.raises(
            ValueError, match=f"^plugin file {plugin}: NameError: name 'undefined_name' is not defined$"
        ):
            resolve(f"{plugin}:short")
    plugin.write_text("def short(prompts, completions, **kwargs)\n    return [1.0]\n")
    with pytest.raises(ValueError, match=r"^plugin file .*wip.py: SyntaxError: .*\(wip.py, line 1\)$"):
        resolve(f"{plugin}:short")
    plugin.write_text("def short(prompts, completions, **kwargs):\n    return [1.0]\n")
    assert resolve(f"{plugin}:short")(None, ["x"]) == [1.0]


def test_solver_reward_takes_a_mapping_spec(reward_batch, tiny_model_dir):
    from rlrefine.solvers import shared_solver

    completions, ids, columns = reward_batch
    two = resolve("solver", solver={"name": "symbolic", "hops": 2})  # the mapping's settings reach the solver:
    assert two.__name__ == "solver[hops=2]"  # with hops=1 (the default) this would be [1, 0, 0, 0, 1]
    assert two(None, completions, ids, **columns) == [1.0, 1.0, 1.0, 0.0, 1.0]
    spec = {"backend": "hf", "model": str(tiny_model_dir), "dtype": "float32", "device": "cpu", "max_tokens": 4}
    reward = resolve("solver", solver=spec)
    assert reward.__name__ == f"solver[hf:{tiny_model_dir}]"
    out = reward(None, completions, ids, **columns)
    solved = list(shared_solver(spec).memo.values())  # what the reward's solver answered: the model, 4 tokens each
    assert len(solved) == 4 and all(0 < s.completion_tokens <= 4 and s.error is None for s in solved)
    assert out == [0.0] * 5  # an untrained model's 4 tokens never state the answer


def test_readme_plugin_example_is_the_file():
    """README shows rewards/plugin_example.py as the complete example; the two must not drift (docstrings aside)."""
    import ast
    from pathlib import Path

    def code(source: str) -> str:
        tree = ast.parse(source)
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
                if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
        return ast.dump(tree)

    root = Path(__file__).resolve().parents[1]
    shown = (root / "README.md").read_text().split("This complete file is")[1].split("```python")[1].split("```")[0]
    assert code(shown) == code((root / "rewards" / "plugin_example.py").read_text())


def test_the_reward_wrapper_skips_nan_and_inf_counts_them_and_names_a_raising_reward(caplog):
    """What every reward goes through in RL (``rl.Watched``, ``AsyncWatched``), on plain functions: NaN/inf become
    None (TRL skips them), are counted and logged, warned about once; a reward that raises names itself and the step."""
    import asyncio
    import math
    from types import SimpleNamespace

    from rlrefine.training.rl import AsyncWatched, Watched

    def values(prompts, completions, **kwargs):
        return [1.0, math.nan, math.inf, None, 0.5]

    async def async_values(prompts, completions, **kwargs):
        return values(prompts, completions)

    for wrapper, func in ((Watched, values), (AsyncWatched, async_values)):
        logged, reward = {}, wrapper(func, "shaky")
        call = reward(None, ["c"] * 5, log_metric=logged.__setitem__)
        out = asyncio.run(call) if asyncio.iscoroutine(call) else call
        assert (
            out == [1.0, None, None, None, 0.5] and reward.nonfinite == 2 and logged == {"rewards/shaky/nonfinite": 2.0}
        )
        call = reward(None, ["c"] * 5, log_metric=logged.__setitem__)
        asyncio.run(call) if asyncio.iscoroutine(call) else call
        assert reward.nonfinite == 4 and reward.seconds > 0
    assert sum("returned NaN or inf" in r.getMessage() for r in caplog.records) == 2  # once per reward, not per batch

    def broken(prompts, completions, **kwargs):
        raise ConnectionError("judge unreachable")

    state = SimpleNamespace(global_step=7)
    with pytest.raises(RuntimeError, match=r"^reward judge failed at step 7: ConnectionError: judge unreachable \("):
        Watched(broken, "judge")(None, ["c"], trainer_state=state)
