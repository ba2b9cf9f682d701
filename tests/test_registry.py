"""The one registry: every kind (reward, solver, decomposer) is named, configured and plugged in the same way."""

import re
import subprocess
import sys

import pytest
from helpers import ROOT

from rlrefine.commands.cli import main
from rlrefine.core.registry import BUILTIN, build, parse_spec

SOLVER_FILE = str(ROOT / "experiments" / "plugins" / "calculator_solver.py")  # absolute: pytest runs from anywhere
DECOMPOSER_FILE = str(ROOT / "experiments" / "plugins" / "dedup_decomposer.py")


def refusal(call, *args, **kwargs) -> str:
    """The one-line message of the UsageError ``call(*args, **kwargs)`` raises."""
    with pytest.raises(UsageError) as refused:
        call(*args, **kwargs)
    return str(refused.value)


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
        ("solver", "nueral", "unknown solver 'nueral'; did you mean 'neural'? valid: hf, mix, model, neural, openai,"),
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
        ("solver", {"model": "x"}, "solver spec {'model': 'x'} needs a 'name'; valid names: hf, mix, model, neural,"),
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

    assert refusal(build, kind, spec).startswith(message)


def test_a_comma_inside_one_value_stays_in_it():
    assert parse_spec("solver", "hf:a,b") == ("hf", {"": "a,b"})  # a positional value is not split
    assert build("solver", "noise=1").noise == 1.0  # an int where a float is wanted


# --- the grammar, value by value ---------------------------------------------------------------------------------

from hypothesis import given  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from rlrefine.core import registry  # noqa: E402
from rlrefine.core.protocols import UsageError  # noqa: E402

_KEYS = st.from_regex(r"[a-z_][a-z0-9_]{0,7}", fullmatch=True)
_LABELS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,7}", fullmatch=True)


@hypothesis_settings(max_examples=25, deadline=None)
@given(st.dictionaries(_KEYS, st.integers(-1000, 1000) | st.booleans() | st.sampled_from(["abc", "x y"]), min_size=1,
                       max_size=4), st.sampled_from(["teacher", "oracle", "none"]))  # fmt: skip
def test_key_value_settings_parse_to_their_yaml_scalars_with_spaces_around_them_ignored(settings, name):
    text = ",".join(f" {k} = {str(v).lower() if isinstance(v, bool) else v} " for k, v in settings.items())
    assert registry.parse_spec("decomposer", f"{name}:{text}") == (name, settings)
    assert registry.parse_spec("decomposer", f"  {name}:{text}  ") == (name, settings)


@hypothesis_settings(max_examples=25, deadline=None)
@given(_LABELS, st.sampled_from(["teacher", "oracle", "teacher:seed=3", "./runs/x", "pkg.mod:Thing"]))
def test_a_label_before_any_name_rides_along_as_the_label_setting(label, spec):
    name, settings = registry.parse_spec("decomposer", spec)
    assert registry.parse_spec("decomposer", f"{label}={spec}") == (name, {"label": label, **settings})


@pytest.mark.parametrize(
    "kind, spec, expected",
    [
        ("solver", "  {name: symbolic, hops: 2}", ("symbolic", {"hops": 2})),  # YAML after leading spaces
        ("solver", {"name": "symbolic", "label": None, "hops": 1}, ("symbolic", {"hops": 1})),  # a None label: none
        ("solver", {"name": "symbolic", "label": "s"}, ("symbolic", {"label": "s"})),
        ("solver", {"name": "symbolic", "seed": None}, ("symbolic", {"seed": None})),  # only a label of None is none
        ("solver", {"backend": "hf", "label": "l", "name": "n"}, ("hf", {"label": "l"})),  # a label wins over name
        ("decomposer", "teacher:x=a=b", ("teacher", {"x": "a=b"})),  # the first "=" ends the key
        ("decomposer", "teacher:tag= [1 ,x=1", ("teacher", {"tag": "[1", "x": 1})),  # text as written, stripped
        ("decomposer", "teacher:tag= [1] ,x=1", ("teacher", {"tag": "[1]", "x": 1})),
        ("solver", {"backend": "hf", "model": "m"}, ("hf", {"model": "m"})),  # the older form without a label
        ("decomposer", "teacher:", ("teacher", {})),  # nothing after the colon: no settings
        ("decomposer", "teacher:seed=", ("teacher", {"seed": None})),  # an empty YAML value is null
        ("decomposer", "teacher:tag=[1", ("teacher", {"tag": "[1"})),  # not YAML: the text as written
        ("decomposer", "teacher:tag=[1]", ("teacher", {"tag": "[1]"})),  # a YAML list is no scalar: the text
        ("decomposer", "teacher:tag={a: 1}", ("teacher", {"tag": "{a: 1}"})),
        ("decomposer", "teacher:x= 0.5 ", ("teacher", {"x": 0.5})),
        ("decomposer", "pkg.mod:Thing:3", ("pkg.mod:Thing", {"": "3"})),  # a positional value after a target
        ("decomposer", "plug.py:Thing", ("plug.py:Thing", {})),  # a file target without settings
        ("decomposer", "dir/plug.py:Thing:a=1", ("dir/plug.py:Thing", {"a": 1})),
        ("solver", "hf:a=b:c", ("hf", {"a": "b:c"})),  # only the first colon ends the name
        ("solver", "hops=1", ("symbolic", {"hops": 1})),  # a solver's bare settings, not a label "hops"
        ("solver", ".", ("model", {"": "."})),  # paths by their text alone
        ("solver", "..", ("model", {"": ".."})),
        ("solver", "~", ("model", {"": "~"})),
        ("solver", "~/m", ("model", {"": "~/m"})),
        ("decomposer", "../m", ("model", {"": "../m"})),
        ("decomposer", "/abs/m", ("model", {"": "/abs/m"})),
        ("decomposer", "runs/x/sft", ("model", {"": "runs/x/sft"})),
        ("decomposer", "a=runs/x", ("model", {"label": "a", "": "runs/x"})),
    ],
)
def test_spec_texts_and_mappings_parse_to_name_and_settings(kind, spec, expected):
    assert registry.parse_spec(kind, spec) == expected


@pytest.mark.parametrize(
    "kind, spec, message",
    [
        ("decomposer", "merge=0.3", "unknown decomposer 'merge=0.3'; valid: hf, model, none, openai, oracle, "
         "teacher, vllm, 'package.module:attr' or 'file.py:attr' (or a model folder)"),  # bare settings: solvers only
        ("reward", "./x", "unknown reward './x'; valid: cap, cost, format, multi_solver, partial, solver, token_cost, "
         "'package.module:attr' or 'file.py:attr'"),  # a path is a model only where a model is one of the kind
        ("dataset", "wrld", "unknown dataset 'wrld'; did you mean 'world'? valid: bamboogle, drop, gsm8k, world, "
         f"'package.module:attr' or 'file.py:attr' (or {registry.ALSO['dataset']})"),
        ("solver", "symbolc", "unknown solver 'symbolc'; did you mean 'symbolic'? valid: hf, mix, model, neural, openai, "
         "symbolic, vllm, 'package.module:attr' or 'file.py:attr' (or a model folder)"),
        ("decomposer", "b=c", "unknown decomposer 'b=c'; valid: hf, model, none, openai, oracle, teacher, vllm, "
         "'package.module:attr' or 'file.py:attr' (or a model folder)"),  # "b=" is no label when "c" names nothing
        ("solver", 3, "solver spec must be a non-empty string or a mapping, got 3"),
        ("solver", {"name": ""}, "solver spec {'name': ''} needs a 'name'; valid names: hf, mix, model, neural, openai, "
         "symbolic, vllm"),
        ("solver", "hops=1,a,b", "solver spec 'hops=1,a,b': settings are key=value separated by commas; 'a' is not"),
        ("solver", "hops=1, noise ", "solver spec 'hops=1, noise ': settings are key=value separated by commas; "
         "'noise' is not"),
    ],
)  # fmt: skip
def test_parse_errors_are_exact(kind, spec, message):
    assert refusal(registry.parse_spec, kind, spec) == message


def test_a_bad_yaml_spec_quotes_the_first_line_of_the_yaml_error():
    import yaml

    with pytest.raises(yaml.YAMLError) as yaml_error:
        yaml.safe_load("{name: oracle")
    with pytest.raises(UsageError) as refused:
        registry.parse_spec("decomposer", " {name: oracle")
    first = str(yaml_error.value).splitlines()[0]
    assert str(refused.value) == f"decomposer spec is not a valid YAML/JSON mapping ({first})"


def test_known_names_are_the_kinds_builtins_and_for_a_solver_or_decomposer_the_engines():
    assert registry.known("solver") == ["hf", "mix", "model", "neural", "openai", "symbolic", "vllm"]
    assert registry.known("decomposer") == ["hf", "model", "none", "openai", "oracle", "teacher", "vllm"]
    assert registry.known("reward") == sorted(BUILTIN["reward"])  # no engine is a reward
    assert registry.known("dataset") == ["bamboogle", "drop", "gsm8k", "world"]


# --- plugins: files, modules, attributes ----------------------------------------------------------------------------


PLUGIN = """
from rlrefine.core.protocols import SolveResult, Decomposed

CONSTANT = 3


def _hidden():
    pass


class Answer:
    name, price_key = "answer", "solver"

    def __init__(self, value: int = 8, tag: str = "t"):
        self.value, self.tag = value, tag

    def solve(self, rows, subquestions):
        return [SolveResult(answer=str(self.value)) for _ in rows]


READY = Answer(5)


def callable_solver(value: int):  # a ready solver that is itself callable, with a parameter of its own
    return value


callable_solver.solve = READY.solve


def needs(first: int, second: float = 1.0, *, tokenizer=None):
    made = Answer(first)
    made.second, made.tokenizer = second, tokenizer
    return made


def anything(**settings):
    made = Answer()
    made.settings = settings
    return made


def only_args(*args):
    return Answer()


def pair(a, b):
    return Answer(a + b)


def wrong(**settings):
    return 7


def scaled(prompts, completions, completion_ids=None, scale: float = 1.0, *, shift: int = 0, **kwargs):
    return [scale * len(c) + shift for c in completions]


def plain(prompts, completions, **kwargs):
    return [0.0 for _ in completions]


def score_factory(scale: int, tokenizer=None):
    def score(prompts, completions, **kwargs):
        return [float(scale)] * len(completions)
    score.tokenizer = tokenizer
    return score


def numbers(n: "int | float" = 0, flag: bool = False, ratio: float = 0.0, plain=None):
    made = Answer(n)
    made.flag, made.ratio, made.plain = flag, ratio, plain
    return made


class Decomp:
    name, price_key = "d", "none"

    def decompose(self, rows):
        return [Decomposed("No decomposition .") for _ in rows]
"""


@pytest.fixture
def plugin(tmp_path):
    path = tmp_path / "plug.py"
    path.write_text(PLUGIN)
    return str(path)


def test_a_ready_object_is_returned_as_is_and_a_built_object_passes_through(plugin):
    ready = build("solver", f"{plugin}:READY")
    assert ready is build("solver", f"{plugin}:READY") and ready.value == 5  # one module, loaded once
    assert build("solver", ready) is ready  # not a spec: already built
    labelled = build("solver", f"five={plugin}:READY")
    assert labelled is ready and labelled.name == "five"


def test_a_plugin_file_is_one_module_under_any_spelling_of_its_path(plugin, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert registry.find("solver", "./plug.py:Answer") is registry.find("solver", f"{plugin}:Answer")


def test_factories_get_their_settings_typed_and_labels_name_the_result(plugin):
    made = build("solver", f"{plugin}:needs:3")  # one value: the first parameter, read as its type
    assert (made.value, made.second, made.tokenizer) == (3, 1.0, None) and type(made.value) is int
    made = build("solver", {"name": f"{plugin}:needs", "first": 2, "second": 4, "label": 7}, tokenizer="tok")
    assert (made.value, made.second, made.tokenizer, made.name) == (2, 4, "tok", "7")  # context only where asked
    made = build("solver", f"{plugin}:needs:first=1,tokenizer=mine", tokenizer="tok")
    assert made.tokenizer == "mine"  # a setting wins over the context
    assert build("solver", f"{plugin}:anything:x=1,y=two").settings == {"x": 1, "y": "two"}  # **settings: any
    assert build("solver", f"{plugin}:Answer:tag=9").tag == 9  # a str parameter takes what it is given
    assert build("solver", f"{plugin}:Answer:tag=abc").tag == "abc" and build("solver", f"{plugin}:Answer:tag=true").tag
    unlabelled = build("solver", f"{plugin}:Answer", tokenizer="tok")  # context a factory does not ask for: not given
    assert (unlabelled.name, unlabelled.value) == ("answer", 8)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("numbers:3", (3, int)),  # int | float: an int when the text is one
        ("numbers:2.5", (2.5, float)),  # else a float
        ("numbers:n=2.5", (2.5, float)),
        ("numbers:flag=true", (True, bool)),
        ("numbers:ratio=2", (2, int)),  # an int where a float is wanted is fine
        ("numbers:plain=true", (True, bool)),  # no annotation: as read
    ],
)
def test_settings_are_checked_against_the_annotation(plugin, spec, expected):
    made = build("solver", f"{plugin}:{spec}")
    key = spec.split(":")[1].split("=")[0] if "=" in spec else "n"
    value = {"n": made.value, "flag": made.flag, "ratio": made.ratio, "plain": made.plain}[key]
    assert (value, type(value)) == expected


@pytest.mark.parametrize(
    "spec, message",
    [
        ("numbers:n=x", "n must be float or int, got 'x'"),
        ("numbers:n=true", "n must be float or int, got True"),
        ("numbers:ratio=yes", "ratio must be float, got True"),
        ("numbers:ratio=abc", "ratio must be float, got 'abc'"),
        ("needs:2.5", "first must be int, got '2.5'"),
        ("needs:first=2.5", "first must be int, got 2.5"),
        ("needs:second=1", None),
        ("needs:bogus=1,other=2", "unknown setting(s) bogus, other; valid: first, second, tokenizer"),
        ("needs:second=1.5", "missing setting(s) first"),
        ("pair:b=1", "missing setting(s) a"),
        ("pair", "missing setting(s) a, b"),
        ("only_args:1", "unknown setting(s) ?; valid: none"),  # no parameter takes a first value
    ],
)
def test_bad_settings_name_the_setting_and_what_it_must_be(plugin, spec, message):
    target = f"{plugin}:{spec.split(':')[0]}"
    if message is None:
        with pytest.raises(UsageError, match=r"^solver '.*': missing setting\(s\) first$"):
            build("solver", f"{plugin}:{spec}")
        return
    assert refusal(build, "solver", f"{plugin}:{spec}") == f"solver {target!r}: {message}"


def test_the_context_is_not_a_valid_setting_to_list(plugin):
    assert (
        refusal(build, "reward", f"{plugin}:score_factory:bogus=1", tokenizer="tok")
        == f"reward '{plugin}:score_factory': unknown setting(s) bogus; valid: scale"
    )
    assert build("reward", f"{plugin}:score_factory:scale=2", tokenizer="tok").tokenizer == "tok"


def test_a_plain_reward_takes_its_own_keyword_parameters_typed(plugin):
    reward = build("reward", f"{plugin}:scaled:scale=2,shift=1")
    assert reward(None, ["ab", "abc"]) == [5.0, 7.0]
    assert build("reward", {"name": f"{plugin}:scaled", "label": "x"})(None, ["a"]) == [1.0]  # a label is no setting
    assert not hasattr(build("reward", f"lbl={plugin}:plain"), "name")  # a reward's label names its wrapper, not it
    assert not hasattr(build("reward", f"lbl={plugin}:scaled:scale=2"), "name")
    assert (
        refusal(build, "reward", f"{plugin}:scaled:shift=x") == f"reward '{plugin}:scaled': shift must be int, got 'x'"
    )
    assert refusal(build, "reward", f"{plugin}:scaled:kwargs=1,completions=2,zeta=3") == (
        f"reward '{plugin}:scaled' is a ready reward, not a factory: it takes settings its own keyword parameters "
        "(scale, shift), not completions, kwargs, zeta; to take settings write a factory, a function or class that "
        "takes them and returns the reward"
    )
    assert "it takes settings none, not a;" in refusal(build, "reward", f"{plugin}:plain:a=1")


def test_a_ready_solver_takes_no_settings(plugin):
    assert refusal(build, "solver", f"{plugin}:READY:value=1,b=2") == (
        f"solver '{plugin}:READY' is a ready solver, not a factory: it takes settings none, not b, value; to take "
        "settings write a factory, a function or class that takes them and returns the solver"
    )


def test_a_ready_solver_is_not_called_nor_checked_even_when_it_is_callable(plugin):
    assert build("solver", f"{plugin}:callable_solver").solve([{}], [[]])[0].answer == "5"
    assert registry.check("solver", f"{plugin}:callable_solver") == ()
    with pytest.raises(UsageError, match=r"is a ready solver, not a factory: it takes settings none, not value;"):
        build("solver", f"{plugin}:callable_solver:value=2")


def test_what_a_name_points_to_must_be_or_make_an_object_of_the_kind(plugin):
    assert (
        refusal(build, "solver", f"{plugin}:wrong")
        == f"solver '{plugin}:wrong' gave int, not an object with .solve(rows, subquestions)"
    )
    assert refusal(build, "solver", f"{plugin}:CONSTANT") == (
        f"solver '{plugin}:CONSTANT' is a int, not an object with .solve(rows, subquestions) nor a factory of one"
    )
    with pytest.raises(UsageError) as refused:
        build("decomposer", f"{plugin}:Answer")  # a solver is no decomposer
    assert str(refused.value) == f"decomposer '{plugin}:Answer' gave Answer, not an object with .decompose(rows)"
    for kind in ("reward", "dataset", "algorithm"):
        with pytest.raises(UsageError, match=f"gave Answer, not {re.escape(registry._NEEDS[kind])}$"):
            build(kind, f"{plugin}:Answer")
    assert build("decomposer", f"{plugin}:Decomp").name == "d"


def test_a_plugin_attribute_that_is_missing_lists_the_public_callables(plugin):
    assert refusal(build, "solver", f"{plugin}:Missing") == (
        f"{plugin} has no 'Missing'; it defines: Answer, Decomp, Decomposed, SolveResult, anything, callable_solver, "
        "needs, numbers, only_args, pair, plain, scaled, score_factory, wrong"
    )  # READY and CONSTANT are no callables, _hidden is private
    assert refusal(build, "solver", "rlrefine.core.atomic:nothing_here").startswith(
        "rlrefine.core.atomic has no 'nothing_here'; it defines: "
    )


def test_a_missing_plugin_file_or_a_broken_one_is_one_line_and_a_fixed_one_loads(tmp_path):
    assert refusal(build, "solver", f"{tmp_path}/absent.py:Solver") == f"plugin file '{tmp_path}/absent.py' not found"
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('not yet')\n")
    assert refusal(build, "solver", f"{broken}:READY") == f"plugin file {broken}: RuntimeError: not yet"
    broken.write_text(PLUGIN)
    assert build("solver", f"{broken}:READY").value == 5


def test_an_import_error_names_the_module_and_the_error():
    assert refusal(registry.find, "solver", "no_such_module_here:Solver") == (
        "solver 'no_such_module_here:Solver': cannot import 'no_such_module_here': ModuleNotFoundError: "
        "No module named 'no_such_module_here'"
    )


def test_find_looks_names_up_in_the_kind_then_the_engines_and_refuses_the_rest():
    from rlrefine.engines.openai import OpenAIEngine
    from rlrefine.solvers.symbolic import SymbolicSolver

    assert registry.find("solver", "symbolic") is SymbolicSolver
    assert registry.find("solver", "openai") is OpenAIEngine and registry.find("decomposer", "openai") is OpenAIEngine
    for name in ("nonesuch", ":attr"):
        assert refusal(registry.find, "reward", name).startswith(f"unknown reward {name!r}; valid: cap, cost,")
    with pytest.raises(UsageError, match="^unknown reward 'openai'"):
        registry.find("reward", "openai")  # an engine is a solver or decomposer, not a reward


def test_an_engine_class_named_as_a_solver_or_decomposer_is_prompted_by_the_model_one(test_rows):
    engine = f"{ROOT / 'tests' / 'plugins' / 'echo_engine.py'}:EchoEngine"
    solver = build("solver", f"{engine}:m")
    assert type(solver).__name__ == "ModelSolver" and solver.engine.model == "m"
    decomposer = build("decomposer", f"{engine}:m")
    assert type(decomposer).__name__ != "ModelSolver" and decomposer.engine.model == "m"
    assert registry._resolve("reward", engine) is registry.find("reward", engine)  # not an engine's kind: as found


def test_check_resolves_and_checks_settings_without_building(plugin):
    assert registry.check("solver", "hops=1") == ("graph",)
    assert registry.check("solver", f"lab={plugin}:needs:first=1") == ()  # a label is no setting
    assert registry.check("solver", f"{plugin}:READY") == ()  # a ready one: nothing to check
    assert registry.check("reward", "builtins:max") == ()  # no signature to read: nothing required
    assert (
        refusal(registry.check, "solver", f"{plugin}:needs:second=2")
        == f"solver '{plugin}:needs': missing setting(s) first"
    )
    assert (
        refusal(registry.check, "reward", "builtins:max:a=1")
        == "reward 'builtins:max': unknown setting(s) a; valid: none"
    )


def test_a_folder_named_like_an_unknown_reward_gets_no_folder_hint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "formatt").mkdir()
    assert refusal(registry.parse_spec, "reward", "formatt").startswith(
        "unknown reward 'formatt'; did you mean 'format'? valid: cap,"
    )


def test_a_plugin_file_in_a_folder_with_a_colon_loads_by_the_last_colon(tmp_path):
    folder = tmp_path / "a:b"
    folder.mkdir()
    (folder / "plug.py").write_text(PLUGIN)
    assert build("solver", {"name": f"{folder}/plug.py:READY"}).value == 5


def test_entry_points_are_found_by_name_within_their_kinds_group(tmp_path, monkeypatch):
    package = tmp_path / "site"
    (package / "twopkg").mkdir(parents=True)
    (package / "twopkg" / "__init__.py").write_text(PLUGIN)
    dist = package / "twopkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: twopkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[rlrefine.solvers]\nfirst_solver = twopkg:READY\nsecond_solver = twopkg:callable_solver\n"
    )
    monkeypatch.syspath_prepend(str(package))
    assert registry.find("solver", "second_solver").__name__ == "callable_solver"
    assert registry.find("solver", "first_solver").value == 5
    with pytest.raises(UsageError, match="^unknown decomposer 'first_solver'; valid: "):
        registry.find("decomposer", "first_solver")  # a solver's entry point is no decomposer
