"""The one registry: every kind (reward, solver, decomposer) is named, configured and plugged in the same way."""

import subprocess
import sys

import pytest
from helpers import ROOT

from rlrefine.commands.cli import main
from rlrefine.core.registry import BUILTIN, build, parse_spec

SOLVER_FILE = str(ROOT / "experiments" / "plugins" / "calculator_solver.py")  # absolute: pytest runs from anywhere
DECOMPOSER_FILE = str(ROOT / "experiments" / "plugins" / "dedup_decomposer.py")


@pytest.mark.parametrize(
    "kind, spec, expected",
    [
        ("solver", "hops=2,noise=0.1", ("symbolic", {"hops": 2, "noise": 0.1})),  # a solver's bare settings
        ("solver", "symbolic:hops=2", ("symbolic", {"hops": 2})),
        ("solver", "s1=memory=1", ("symbolic", {"label": "s1", "memory": 1})),
        ("solver", "neural", ("neural", {})),
        ("solver", "hf:Qwen/Qwen2.5-7B-Instruct", ("hf", {"": "Qwen/Qwen2.5-7B-Instruct"})),  # the first parameter
        ("solver", "openai:m@http://127.0.0.1:8000/v1", ("openai", {"": "m@http://127.0.0.1:8000/v1"})),
        ("solver", "{name: openai, model: m, concurrency: 4}", ("openai", {"model": "m", "concurrency": 4})),
        ("solver", {"backend": "hf", "model": "m", "name": "big"}, ("hf", {"model": "m", "label": "big"})),
        ("decomposer", "teacher:merge=0.3,seed=1", ("teacher", {"merge": 0.3, "seed": 1})),
        ("decomposer", "gpt=openai:gpt-4o-mini", ("openai", {"label": "gpt", "": "gpt-4o-mini"})),
        ("decomposer", f"{DECOMPOSER_FILE}:Deduplicated:cap=2", (f"{DECOMPOSER_FILE}:Deduplicated", {"cap": 2})),
        ("decomposer", "pkg.module:Thing", ("pkg.module:Thing", {})),
        ("reward", {"name": "solver", "solver": "hops=2", "weight": 2}, ("solver", {"solver": "hops=2", "weight": 2})),
        ("reward", "cost:per_subquestion=0.1", ("cost", {"per_subquestion": 0.1})),
    ],
)
def test_one_spec_grammar_for_every_kind(kind, spec, expected):
    assert parse_spec(kind, spec) == expected


def test_a_folder_is_a_trained_model_and_a_label_names_it(tiny_decomposer):
    assert parse_spec("decomposer", str(tiny_decomposer)) == ("model", {"": str(tiny_decomposer)})
    student = build("decomposer", f"sft={tiny_decomposer}")
    assert (student.name, student.price_key, student.instruction) == ("sft", "student", "")


def test_builtins_are_imported_only_when_used():
    code = (
        "import sys; from rlrefine.core.registry import build; build('solver', 'hops=1'); "
        "print(sorted(m for m in sys.modules if m.startswith('rlrefine')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "rlrefine.solvers.symbolic" in loaded
    for heavy in ("rlrefine.solvers.model", "rlrefine.engines", "rlrefine.rewards", "rlrefine.decomposers"):
        assert f"'{heavy}" not in loaded


@pytest.mark.parametrize(
    "kind, spec, message",
    [
        ("solver", "nueral", "unknown solver 'nueral'; did you mean 'neural'? valid: hf, model, neural, openai,"),
        ("decomposer", "techer", "unknown decomposer 'techer'; did you mean 'teacher'? valid: hf, model, none,"),
        ("reward", "formatt", "unknown reward 'formatt'; did you mean 'format'? valid: cap, cost, format,"),
        ("solver", "hop=1", "solver 'symbolic': unknown setting(s) hop; valid: hops, noise, memory, seed"),
        ("solver", "hops=x", "solver 'symbolic': hops must be int, got 'x'"),
        ("decomposer", "teacher:mrge=0.1", "decomposer 'teacher': unknown setting(s) mrge; valid: merge, misorder,"),
        ("reward", {"name": "cost", "per_sub": 1}, "reward 'cost': unknown setting(s) per_sub; valid: per_subquestion"),
        ("reward", {"name": "format", "strict": True}, "reward 'format' is a ready reward, not a factory"),
        ("solver", f"{SOLVER_FILE}:Calculator", f"{SOLVER_FILE} has no 'Calculator'; it defines: SolveResult, Story"),
        (
            "solver",
            {"name": "rlrefine.core.format:parse", "text": "Q1: a ?"},
            "solver 'rlrefine.core.format:parse' gave Decomposition, not an object with .solve(rows, subquestions)",
        ),
        ("decomposer", "{name: oracle", "decomposer spec is not a valid YAML/JSON mapping"),
        ("decomposer", {"cap": 2}, "decomposer spec {'cap': 2} needs a 'name'; valid names: hf, model, none"),
        ("solver", "no.such.module:Solver", "solver 'no.such.module:Solver': cannot import 'no.such.module': Module"),
    ],
)
def test_bad_specs_say_what_is_valid(kind, spec, message):
    with pytest.raises(ValueError) as error:
        build(kind, spec)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_a_plugin_file_with_an_error_is_one_line_through_the_cli(tmp_path, capsys):
    plugin = tmp_path / "broken_solver.py"
    plugin.write_text("import not_a_real_module\n")
    assert main(["eval", "--limit", "2", "--solvers", f"{plugin}:Solver", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"rlrefine eval: error: plugin file {plugin}: ModuleNotFoundError: No module named 'not_a_real_module'"
    )


def test_solver_and_decomposer_plugins_end_to_end_through_eval(tmp_path, capsys):
    """The example plugins, loaded by path: the calculator reads the story's text and agrees with the symbolic
    solver of the same reach on every problem; the wrapper decomposer runs the teacher and cleans its output."""
    out = tmp_path / "eval"
    argv = ["eval", "--data", "world:small", "--limit", "60", "--out", str(out), "--decomposers", "oracle", "teacher"]
    argv += [f"{DECOMPOSER_FILE}:Deduplicated:inner=teacher,cap=2", "--solvers", "hops=1", "hops=2"]
    argv += [f"{SOLVER_FILE}:StoryCalculator", f"calc2={SOLVER_FILE}:StoryCalculator:hops=2"]
    assert main(argv) == 0
    import json

    cells = {(c["decomposer"], c["solver"]): c for c in json.loads((out / "results.json").read_text())["cells"]}
    for dec in ("oracle", "teacher", "dedup(teacher)"):
        assert cells[dec, "calculator:hops=1"]["accuracy"] == cells[dec, "hops=1"]["accuracy"]
        assert cells[dec, "calc2"]["accuracy"] == cells[dec, "hops=2"]["accuracy"]
    assert cells["oracle", "calculator:hops=1"]["accuracy"] == 1.0 and cells["teacher", "hops=1"]["accuracy"] < 0.8
    assert cells["dedup(teacher)", "hops=2"]["mean_subquestions"] <= 2.0
    assert cells["dedup(teacher)", "hops=2"]["valid_format"] >= cells["teacher", "hops=2"]["valid_format"]


def test_entry_points_for_every_kind(tmp_path, monkeypatch, test_rows):
    """An installed package plugs in a solver, a decomposer and a reward without editing rlrefine."""
    package = tmp_path / "site"
    (package / "mypkg").mkdir(parents=True)
    (package / "mypkg" / "__init__.py").write_text(
        "from rlrefine.core.protocols import Decomposed, SolveResult\n"
        "class Echo:\n"
        "    name, price_key = 'echo', 'solver'\n"
        "    def solve(self, rows, subquestions):\n"
        "        return [SolveResult(answer=r['answer']) for r in rows]\n"
        "class Silent:\n"
        "    name, price_key = 'silent', 'none'\n"
        "    def decompose(self, rows):\n"
        "        return [Decomposed('No decomposition .') for _ in rows]\n"
        "def brevity(prompts, completions, **kwargs):\n"
        "    return [-len(c) / 100 for c in completions]\n"
    )
    dist = package / "mypkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mypkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[rlrefine.solvers]\necho = mypkg:Echo\n[rlrefine.decomposers]\nsilent = mypkg:Silent\n"
        "[rlrefine.rewards]\nbrevity = mypkg:brevity\n"
    )
    monkeypatch.syspath_prepend(str(package))
    assert build("solver", "echo").solve(test_rows[:1], [[]])[0].answer == test_rows[0]["answer"]
    assert build("decomposer", "quiet=silent").name == "quiet"
    assert build("reward", "brevity")(None, ["ab"]) == [-0.02]
    assert "unknown solver 'ech'; did you mean 'echo'? valid: echo, hf," in str(
        pytest.raises(ValueError, build, "solver", "ech").value
    )


def test_every_builtin_resolves_to_what_its_kind_is(test_rows, reward_batch):
    """Each built-in of every kind builds into a working object of its kind (those that need a model or a server
    named are built in the backend tests)."""
    from rlrefine.core.registry import _IS

    completions, ids, columns = reward_batch
    for name in BUILTIN["reward"]:
        reward = build("reward", name)
        scores = reward(None, completions, ids, **columns)
        assert _IS["reward"](reward) and len(scores) == len(completions)
        assert all(s is None or isinstance(s, float) for s in scores), (name, scores)
    for name in set(BUILTIN["decomposer"]) - {"model"}:
        decomposer = build("decomposer", name)
        assert _IS["decomposer"](decomposer) and decomposer.name == name
        assert len(decomposer.decompose(test_rows[:3])) == 3
    for name in set(BUILTIN["solver"]) - {"model", "neural"}:
        assert build("solver", name).solve(test_rows[:1], [test_rows[0]["subquestions"]])[0].answer is not None
    # the world builds here; the real datasets need their files (tests/test_datasets.py)
    assert set(build("dataset", "world:small")) == {"train", "validation", "test"}
    for name in BUILTIN["algorithm"]:
        algorithm = build("algorithm", name)
        assert _IS["algorithm"](algorithm) and algorithm.config.__name__.lower() == f"{name}config"


@pytest.mark.parametrize(
    "kind, spec, message",
    [
        ("solver", "", "solver spec must be a non-empty string or a mapping, got ''"),
        ("solver", "   ", "solver spec must be a non-empty string or a mapping"),
        ("solver", {"model": "x"}, "solver spec {'model': 'x'} needs a 'name'; valid names: hf, model, neural,"),
        ("solver", {"name": 3}, "solver spec {'name': 3} needs a 'name'"),
        ("solver", "hops=1.5", "solver 'symbolic': hops must be int, got 1.5"),  # not a 1.5-hop solver
        ("solver", "hops=true", "solver 'symbolic': hops must be int, got True"),
        ("solver", "noise=abc", "solver 'symbolic': noise must be float, got 'abc'"),
        (
            "solver",
            "hops=1,noise",
            "solver spec 'hops=1,noise': settings are key=value separated by commas; 'noise' is not",
        ),
        ("decomposer", "teacher:merge=0.3,seed=x", "decomposer 'teacher': seed must be int, got 'x'"),
    ],
)
def test_bad_settings_are_one_line_naming_the_setting(kind, spec, message):
    from rlrefine.core.protocols import UsageError

    with pytest.raises(UsageError) as refused:
        build(kind, spec)
    assert str(refused.value).startswith(message)


def test_a_comma_inside_one_value_stays_in_it():
    assert parse_spec("solver", "hf:a,b") == ("hf", {"": "a,b"})  # a positional value is not split
    assert build("solver", "noise=1").noise == 1.0  # an int where a float is wanted
