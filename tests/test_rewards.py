"""Each built-in reward as a pure function on hand-made completions, and every way to name a plugin."""

import pytest
from helpers import ROOT
from hypothesis import given
from hypothesis import strategies as st

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


class Scripted:
    """A frozen solver whose every answer is known before the call (named as ``test_rewards:Scripted``): a question
    ``"says 7 3"`` is answered ``7`` by ``reads=0`` and ``3`` by ``reads=1``; ``-`` there makes that solve fail. It
    answers each sub-question except those that ask about ``nobody``. What it says depends only on the question and
    the sub-questions, so the shared solver's memo (keyed by both) can never hand one test another test's answer."""

    price_key = "solver"

    def __init__(self, reads: int = 0) -> None:
        self.reads, self.name = reads, f"scripted{reads}"

    def solve(self, rows, subquestions):
        from rlrefine.core.protocols import SolveResult

        out = []
        for row, subs in zip(rows, subquestions):
            said = row["question"].split()[1 + self.reads]
            if said == "-":
                out.append(
                    SolveResult(answer=None, error=f"ScriptedError: {self.name} cannot answer {row['question']}")
                )
                continue
            trace = [{"subquestion": q, "answer": None if "nobody" in q else "1"} for q in subs]
            out.append(SolveResult(answer=said, trace=trace))
        return out


SCRIPTED, SCRIPTED_1 = "test_rewards:Scripted", {"name": "test_rewards:Scripted", "reads": 1}
TWO = "Q1: How many has Ava ?\nQ2: How many has Ben ?"
ONE = "Q1: How many has Ava ?"


def columns_for(questions, answers, metrics=None):
    """TRL's dataset columns for a batch: one entry per completion."""
    n = len(questions)
    return {
        "id": [f"p{i}" for i in range(n)],
        "context": ["Ava has 3 ."] * n,
        "question": list(questions),
        "answer": list(answers),
        "metric": list(metrics or ["numeric"] * n),
    }


def test_the_scripted_solver_is_the_one_the_registry_builds():
    from rlrefine.solvers import shared_solver

    assert shared_solver(SCRIPTED).inner.name == "scripted0" and shared_solver(SCRIPTED_1).inner.name == "scripted1"


# (completion, question the solver reads, gold, metric, completion ids: EOS is 1, reward with subquestion_cost 0.1)
CORRECTNESS = [
    (TWO, "says 7", "7", "numeric", [5, 1], 0.8),  # right, two sub-questions: 1 - 2 x 0.1
    ("No decomposition .", "says 7", "7", "numeric", [1], 1.0),  # right with none: no cost; a lone EOS is finished
    (ONE, "says 3", "7", "numeric", [5, 1], 0.0),  # wrong: 0, the cost is not taken off a wrong answer
    (ONE, "says red", "red blue green", "f1", [5, 1], 0.45),  # F1 1/2 (precision 1, recall 1/3), less a tenth
    (ONE, "says -", "7", "numeric", [5, 6], None),  # the solver failed: skipped, even though it was cut too
    (ONE, "says 7", "7", "numeric", [5, 6], 0.0),  # right but cut at the length cap: the truncated reward
    (ONE, "says 7", "7", "numeric", [], 0.0),  # no token at all, no EOS: cut
]


def test_solver_correctness_takes_the_cost_off_right_answers_only_and_skips_failed_solves():
    completions, questions, golds, metrics, ids, expected = map(list, zip(*CORRECTNESS))
    logged = {}
    reward = resolve("solver", tokenizer=Tok(), solver=SCRIPTED, subquestion_cost=0.1)
    out = reward(None, completions, ids, log_metric=logged.__setitem__, **columns_for(questions, golds, metrics))
    assert out == pytest.approx(expected)
    assert logged == pytest.approx(
        {
            "solver[test_rewards:Scripted]/accuracy": (1 + 1 + 0 + 0.5 + 1 + 1) / 6,  # the failed solve left out
            "solver[test_rewards:Scripted]/errors": 1.0,
            "decomposer/subquestions": (2 + 0 + 1 + 1 + 1 + 1 + 1) / 7,
            "decomposer/truncated": 3 / 7,
        }
    )
    assert reward.last_error == "ScriptedError: scripted0 cannot answer says -"


@pytest.mark.parametrize("truncated", [0.0, -0.5, None])
def test_a_cut_completion_gets_the_truncated_setting_and_a_failed_solve_stays_skipped(truncated):
    reward = resolve("solver", tokenizer=Tok(), solver=SCRIPTED, truncated=truncated)
    columns = columns_for(["says 7", "says 7", "says -"], ["7"] * 3)
    assert reward(None, [ONE, TWO, ONE], [[5, 1], [5, 6], [5, 6]], **columns) == [1.0, truncated, None]


def test_without_completion_ids_or_an_eos_every_completion_counts_as_finished():
    columns = columns_for(["says 7"], ["7"])
    logged = {}
    out = resolve("solver", tokenizer=Tok(), solver=SCRIPTED, subquestion_cost=0.25)(
        None, [TWO], log_metric=logged.__setitem__, **columns
    )
    assert out == [0.5]
    assert logged == {  # a batch of one: means over one sample
        "solver[test_rewards:Scripted]/accuracy": 1.0,
        "solver[test_rewards:Scripted]/errors": 0.0,
        "decomposer/subquestions": 2.0,
        "decomposer/truncated": 0.0,
    }

    class NoEos:
        eos_token_id = None

    assert resolve("solver", tokenizer=NoEos(), solver=SCRIPTED)(None, [ONE], [[5, 6]], **columns) == [1.0]
    assert resolve("solver", solver=SCRIPTED)(None, [ONE], [[5, 6]], **columns) == [1.0]  # no tokenizer given


@pytest.mark.parametrize(
    ("cut", "total", "said"),
    [(3, 5, "60 %"), (5, 5, "100 %"), (1, 10, "10 %"), (1, 11, None)],  # 10 % is where the warning starts
)
def test_the_length_cap_warning_starts_at_a_tenth_of_the_batch_and_names_the_share(cut, total, said, caplog):
    ids = [[5, 6]] * cut + [[5, 1]] * (total - cut)
    reward = resolve("solver", tokenizer=Tok(), solver=SCRIPTED)
    reward(None, [ONE] * total, ids, **columns_for(["says 7"] * total, ["7"] * total))
    warned = [r.getMessage() for r in caplog.records if "completion-length limit" in r.getMessage()]
    expected = (
        f"solver[test_rewards:Scripted]: {said} of a batch was cut at the completion-length limit and scored 0.0: if "
        "decompositions need more tokens (deeper problems, more sub-questions), raise max_completion_length"
    )
    assert warned == ([] if said is None else [expected])


def test_no_length_cap_warning_when_cut_completions_are_skipped(caplog):
    reward = resolve("solver", tokenizer=Tok(), solver=SCRIPTED, truncated=None)
    assert reward(None, [ONE] * 2, [[5, 6]] * 2, **columns_for(["says 7"] * 2, ["7"] * 2)) == [None, None]
    assert not [r for r in caplog.records if "completion-length limit" in r.getMessage()]


@pytest.mark.parametrize(
    ("dropped", "message"),
    [
        (("context",), "solver rewards need dataset columns ['context']; have: ['answer', 'id', 'metric', 'question']"),
        (
            ("question", "answer"),
            "solver rewards need dataset columns ['question', 'answer']; have: ['context', 'id', 'metric']",
        ),
    ],
)
@pytest.mark.parametrize("name", ["solver", "partial"])
def test_solver_rewards_name_the_dataset_columns_they_miss(name, dropped, message):
    from rlrefine.core.protocols import UsageError

    columns = {k: v for k, v in columns_for(["says 7"], ["7"]).items() if k not in dropped}
    with pytest.raises(UsageError) as raised:
        resolve(name, solver=SCRIPTED)(None, [ONE], [[5, 1]], **columns)
    assert str(raised.value) == message


def test_a_string_solver_spec_names_the_reward_and_its_metrics_as_written(reward_batch):
    completions, ids, columns = reward_batch
    logged = {}
    reward = resolve("solver", solver="symbolic:hops=2")  # the solver itself is named "hops=2"
    assert reward.__name__ == "solver[symbolic:hops=2]"
    assert reward(None, completions, ids, log_metric=logged.__setitem__, **columns)[:2] == [1.0, 1.0]
    assert logged["solver[symbolic:hops=2]/accuracy"] == pytest.approx(4 / 5)
    assert resolve("partial", solver="symbolic:hops=2").__name__ == "partial[symbolic:hops=2]"
    assert resolve("solver", solver=SCRIPTED_1).__name__ == "solver[scripted1]"  # a mapping: the solver's name


def test_partial_credit_is_the_share_of_subquestions_answered_and_none_for_a_failed_solve():
    completions = [
        "Q1: How many has Ava ?\nQ2: How many has nobody ?",  # 1 of 2
        "Q1: How many has Ava ?\nQ2: How many has nobody ?\nQ3: How many has Ben ?",  # 2 of 3
        "Q1: How many has nobody ?",  # 0 of 1, whatever the final answer
        "No decomposition .",  # no sub-question, a final answer: 1
        ONE,  # the solve failed: skipped, not 0
    ]
    reward = resolve("partial", solver=SCRIPTED)
    columns = columns_for(["says 7", "says 7", "says 3", "says 7", "says -"], ["7"] * 5)
    assert reward(None, completions, None, **columns) == pytest.approx([0.5, 2 / 3, 0.0, 1.0, None])
    assert reward.last_error == "ScriptedError: scripted0 cannot answer says -"
    assert reward.__name__ == "partial[test_rewards:Scripted]"
    reward(None, [ONE], None, **columns_for(["says 7"], ["7"]))
    assert reward.last_error is None  # a batch without failures clears it


def test_multi_solver_averages_the_solvers_that_answered_and_skips_when_none_did():
    reward = resolve("multi_solver", solvers=[SCRIPTED, SCRIPTED_1])
    logged = {}
    columns = columns_for(["says 7 7", "says 7 3", "says 7 -", "says - -", "says 3 -"], ["7"] * 5)
    out = reward(None, [ONE] * 5, None, log_metric=logged.__setitem__, **columns)
    assert out == [1.0, 0.5, 1.0, None, 0.0]  # a failed solver is left out of the mean, not counted as wrong
    assert logged == pytest.approx(
        {"solver[test_rewards:Scripted]/accuracy": 3 / 4, "solver[scripted1]/accuracy": 1 / 2}
    )


def test_cost_and_token_cost_defaults_and_word_counts_without_ids():
    two, none = TWO, "No decomposition ."
    assert resolve("cost")(None, [two, none, ONE]) == pytest.approx([-0.1, 0.0, -0.05])  # 0.05 per sub-question
    tokens = resolve("token_cost")
    assert tokens(None, [two, none], [[5, 6, 1], [1]]) == pytest.approx([-0.006, -0.002])  # 0.002 per token id
    conversational = [{"role": "assistant", "content": ONE}]
    assert tokens(None, [two, none, conversational]) == pytest.approx([-0.024, -0.006, -0.012])  # no ids: words
    assert resolve("token_cost", per_token=1.0)(None, ["  a\tb\nc  ", ""]) == [-3.0, -0.0]


@given(
    cost=st.floats(0.0, 1.0),
    n=st.integers(0, 12),
    words=st.integers(1, 30),
)
def test_a_right_answer_never_scores_below_a_wrong_one_whatever_the_cost(cost, n, words):
    """Sub-question cost is a share of the score: any credit (numeric 1, or F1's partial credit against a gold of
    ``words`` words) stays at or above a wrong answer's 0, and more sub-questions never score more."""
    reward = resolve("solver", tokenizer=Tok(), solver=SCRIPTED, subquestion_cost=cost)
    subs = "\n".join(f"Q{i + 1}: How many has Ava ?" for i in range(n)) or "No decomposition ."
    fewer = "\n".join(f"Q{i + 1}: How many has Ava ?" for i in range(max(n - 1, 0))) or "No decomposition ."
    gold = " ".join(["red"] + [f"w{i}" for i in range(words - 1)])
    columns = columns_for(["says 7", "says red", "says 3", "says red"], ["7", gold, "7", gold], ["numeric", "f1"] * 2)
    right, partial, wrong, partial_fewer = reward(None, [subs, subs, subs, fewer], [[1]] * 4, **columns)
    assert wrong == 0.0 and right >= 0.0 and partial >= 0.0
    assert right == pytest.approx(max(1.0 - cost * n, 0.0)) and partial <= right and partial_fewer >= partial


@pytest.mark.parametrize(
    "spec", ["{name: mix, solvers: [hops=1, hops=2]}", "  {name: mix, solvers: [hops=1, hops=2]} "]
)
def test_a_solver_named_inline_as_a_mapping_is_named_by_the_solver_in_the_reward(spec):
    reward = build("reward", {"name": "solver", "solver": spec})
    assert reward.__name__ == "solver[mix[hops=1|hops=2]]"  # not the mapping's text, whatever its spacing
    assert build("reward", {"name": "solver", "solver": "hops=1,noise=0.1"}).__name__ == "solver[hops=1,noise=0.1]"
