import json

import pytest
from helpers import ROOT

from rlrefine.commands.cli import main


@pytest.mark.slow  # the default matrix, the neural solver included, on 200 problems
def test_eval_end_to_end(world_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", "--data", str(world_dir), "--split", "test", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    acc = {(c["decomposer"], c["solver"]): c["accuracy"] for c in results["cells"]}
    assert len(acc) == 15 and results["n"] == 200  # none, oracle, teacher x 4 symbolic solvers + the neural one
    assert acc["oracle", "neural"] >= 0.9
    # the calibration ordering that leaves room for learning (#2)
    assert acc["oracle", "hops=1"] >= 0.98
    assert acc["none", "hops=1"] <= 0.30
    assert 0.35 <= acc["teacher", "hops=1"] <= 0.70
    assert acc["teacher", "hops=2"] >= 0.90
    cell = results["cells"][0]
    assert {"accuracy", "n", "mean_subquestions", "tokens", "cost_usd", "by_domain", "by_depth"} <= set(cell)
    md = (out / "results.md").read_text()
    assert "| oracle |" in md and "hops=1" in md and "$ / 1k" in md
    assert "| teacher |" in capsys.readouterr().out


def test_eval_resumes_from_its_cache(world_dir, tmp_path):
    out = tmp_path / "eval"
    args = [
        "eval",
        "--data",
        str(world_dir),
        "--limit",
        "50",
        "--decomposers",
        "teacher",
        "--solvers",
        "hops=1",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    cached = sorted((p.suffix, p) for p in (out / "cache").rglob("*") if p.is_file())
    assert [suffix for suffix, _ in cached] == [".json", ".jsonl"]
    cell = json.loads(cached[0][1].read_text())
    cell["accuracy"] = -1.0  # a marker: a resumed run must read the cell, not recompute it
    cached[0][1].write_text(json.dumps(cell))
    (out / "results.json").unlink()
    assert main(args) == 0
    assert json.loads((out / "results.json").read_text())["cells"][0]["accuracy"] == -1.0
    assert main([*args[:-2], "--limit", "40", "--out", str(out)]) == 0  # other rows: a new cache key
    assert json.loads((out / "results.json").read_text())["cells"][0]["accuracy"] >= 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["eval", "--solvers", "nueral"],
            "unknown solver 'nueral'; did you mean 'neural'? valid: hf, mix, model, neural,",
        ),
        (
            ["eval", "--decomposers", "gpt9"],
            "unknown decomposer 'gpt9'; valid: hf, model, none, openai, oracle, teacher",
        ),
        (["eval", "--solvers", "hops=one"], "solver 'symbolic': hops must be int, got 'one'"),
        (["eval", "--decomposers", "teacher:mrge=0.1"], "decomposer 'teacher': unknown setting(s) mrge; valid: merge,"),
        (["eval", "--data", "nowhere"], "unknown dataset 'nowhere'; valid: bamboogle, drop, gsm8k, world"),
        (["eval", "--split", "dev"], "no split 'dev'; valid: train, validation, test"),
        (["world", "--preset", "huge"], "unknown world preset 'huge'; valid: default"),
        (["frobnicate"], "unknown command 'frobnicate'; valid: world, eval"),
    ],
)
def test_bad_names_exit_2_listing_valid_ones(argv, message, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path / "x")] if argv[0] != "frobnicate" else argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_config_typo_names_the_key(tmp_path, capsys):
    cfg = tmp_path / "eval.yaml"
    cfg.write_text("data: world\nsolvrs: [hops=1]\n")
    assert main(["eval", "--config", str(cfg)]) == 2
    assert "unknown config key(s): solvrs" in capsys.readouterr().err


def test_dataset_missing_a_column_names_file_and_column(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "How many ?", "context": "x"}) + "\n")
    assert main(["eval", "--data", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"rlrefine eval: error: {bad} line 1: missing field 'answer'"


class FlakySolver:
    """A frozen solver that fails every sample while ``down`` (an endpoint that timed out)."""

    name, price_key, down = "flaky", "solver", True

    def solve(self, rows, subquestions):
        from rlrefine.solvers import SolveResult, make_solver

        if self.down:
            return [SolveResult(answer=None, error="timed out") for _ in rows]
        return make_solver("hops=1").solve(rows, subquestions)


def test_eval_cache_keys_on_gold_solver_identity_and_failures(world_dir, tmp_path):
    from rlrefine.data import load_split
    from rlrefine.evaluation.evaluate import evaluate

    rows, out = list(load_split(str(world_dir), "test", 30)), tmp_path / "eval"
    flaky = FlakySolver()
    assert evaluate(rows, ["oracle"], [flaky], out=out, progress=False)["cells"][0]["errors"] == 30
    flaky.down = False  # the endpoint is back: failures were not cached, the cell is redone
    assert evaluate(rows, ["oracle"], [flaky], out=out, progress=False)["cells"][0]["accuracy"] == 1.0
    noisy = ["hops=2,noise=0.5", "hops=2,noise=0.5,seed=1"]  # same settings, other seed: other answers
    cells = evaluate(rows, ["oracle"], noisy, out=out, progress=False)["cells"]
    fresh = [evaluate(rows, ["oracle"], [s], progress=False)["cells"][0]["accuracy"] for s in noisy]
    assert [c["solver"] for c in cells] == noisy and [c["accuracy"] for c in cells] == fresh
    dearer = evaluate(rows, ["oracle"], ["hops=1"], out=out, prices={"solver": (20.0, 60.0)}, progress=False)
    cheap = evaluate(rows, ["oracle"], ["hops=1"], out=out, progress=False)  # cached cell, priced afresh
    assert dearer["cells"][0]["cost_usd"] > 10 * cheap["cells"][0]["cost_usd"] > 0
    wrong_gold = [{**r, "answer": str(int(r["answer"]) + 1)} for r in rows]
    assert evaluate(wrong_gold, ["oracle"], ["hops=1"], out=out, progress=False)["cells"][0]["accuracy"] == 0.0


class Versioned:
    """A solver known by one name whose model changed (another ``version``): right on every problem, or wrong on all."""

    name, price_key = "served-solver", "solver"

    def __init__(self, version: str, right: bool) -> None:
        self.version, self.right = version, right

    def solve(self, rows, subquestions):
        from rlrefine.solvers import SolveResult

        return [SolveResult(answer=r["answer"] if self.right else "-1") for r in rows]


class Counting:
    """The oracle, counting the problems it is asked to decompose; it fails on those in ``broken`` while they are."""

    name, price_key, version = "counting", "teacher", "1"

    def __init__(self) -> None:
        self.asked, self.broken = 0, set()

    def decompose(self, rows):
        from rlrefine.core.protocols import Decomposed
        from rlrefine.decomposers import make_decomposer

        self.asked += len(rows)
        done = make_decomposer("oracle").decompose(rows)
        return [Decomposed("", error="timed out") if r["id"] in self.broken else d for r, d in zip(rows, done)]


def test_eval_cache_keys_on_the_solvers_version_and_reuses_decompositions(world_dir, tmp_path):
    from rlrefine.data import load_split
    from rlrefine.evaluation.evaluate import evaluate

    rows, out = list(load_split(str(world_dir), "test", 20)), tmp_path / "eval"
    before = evaluate(rows, ["oracle"], [Versioned("v1", right=True)], out=out, progress=False)["cells"][0]
    after = evaluate(rows, ["oracle"], [Versioned("v2", right=False)], out=out, progress=False)["cells"][0]
    assert (before["accuracy"], after["accuracy"]) == (1.0, 0.0)  # same name, new model: not the old cell
    teacher = Counting()
    teacher.broken = {rows[0]["id"], rows[1]["id"]}
    first = evaluate(rows, [teacher], ["hops=1"], out=out, progress=False)["cells"][0]
    assert teacher.asked == 20 and first["errors"] == 2
    teacher.broken = set()
    again = evaluate(rows, [teacher], ["hops=2"], out=out, progress=False)["cells"][0]  # a new cell, same decomposer
    assert teacher.asked == 22 and again["errors"] == 0  # only the two failed ones asked again: the rest from cache
    assert evaluate(rows, [teacher], ["hops=1"], out=out, progress=False)["cells"][0]["errors"] == 0  # redone too


def test_world_preset_from_a_config_file(tmp_path):
    from datasets import load_from_disk

    config = tmp_path / "world.yaml"
    config.write_text("preset: hard\n")
    assert main(["world", "--config", str(config), "--out", str(tmp_path / "from-file")]) == 0
    assert main(["world", "--preset", "hard", "--out", str(tmp_path / "from-flag")]) == 0
    from_file, from_flag = (load_from_disk(str(tmp_path / d))["test"] for d in ("from-file", "from-flag"))
    assert from_file["context"] == from_flag["context"]
    assert set(from_file["depth"]) == {4, 5, 6}  # the preset's depths (the default's are 2-4): it was not ignored


class _Echo:
    """A solver for any data: it answers with the gold (what the test needs is a solver that reads no world)."""

    name, price_key = "echo", "solver"

    def solve(self, rows, subquestions):
        from rlrefine.core.protocols import SolveResult

        return [SolveResult(answer=r["answer"]) for r in rows]


def test_oracle_without_gold_subquestions_is_refused_or_left_out_with_a_note(tmp_path, capsys):
    """On data without gold sub-questions the oracle would be `none` under another name: asked for, it is refused in
    one line; in a default matrix (the training pipeline's) it is left out and the report says why."""
    from rlrefine.evaluation.evaluate import evaluate, results_markdown

    data = tmp_path / "plain.jsonl"
    data.write_text(
        "".join(json.dumps({"question": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n" for i in range(3))
    )
    argv = ["eval", "--data", str(data), "--decomposers", "none", "oracle", "--solvers", "hops=1"]
    assert main([*argv, "--out", str(tmp_path / "eval")]) == 2 and not (tmp_path / "eval").exists()
    assert (
        capsys.readouterr().err.strip()
        == "rlrefine eval: error: decomposer 'oracle' needs gold sub-questions (a 'subquestions' column); the evaluated "
        "data has none: use data that has them (world, gsm8k:socratic, a JSONL with 'subquestions')"
    )
    rows = [{"id": str(i), "context": "", "question": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(3)]
    results = evaluate(rows, ["none", "oracle"], [_Echo()], progress=False, skip_unfit=True)
    assert [c["decomposer"] for c in results["cells"]] == ["none"]
    assert results["notes"][0].startswith("oracle left out: decomposer 'oracle' needs gold sub-questions")
    assert "\nNote: oracle left out: " in results_markdown(results)
    shallow = [r for r in _rows("world:shallow") if r["depth"] == 1][:3]  # gold is "no decomposition" here
    cell = evaluate(shallow, ["oracle"], ["hops=1"], progress=False)["cells"][0]
    assert cell["accuracy"] == 1.0 and cell["mean_subquestions"] == 0


def _rows(data: str) -> list:
    from rlrefine.data import load_split

    return list(load_split(data, "test", 200))


# --- the matrix on hand-made problems: exact values --------------------------------------------------------------

import hashlib  # noqa: E402

from hypothesis import given  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from rlrefine.core.protocols import Completion, Decomposed, SolveResult, UsageError  # noqa: E402
from rlrefine.evaluation import evaluate as ev  # noqa: E402
from rlrefine.evaluation.dynamic import version  # noqa: E402

ROWS = [
    {
        "id": "a",
        "question": "qa ?",
        "context": "ca",
        "answer": "1",
        "domain": "x",
        "depth": 2,
        "subquestions": ["s ?"],
        "metric": "numeric",
    },
    {
        "id": "b",
        "question": "qb ?",
        "context": "cb",
        "answer": "2",
        "domain": "y",
        "depth": 2,
        "subquestions": [],
        "metric": "numeric",
    },
    {
        "id": "c",
        "question": "qc ?",
        "context": "cc",
        "answer": "3",
        "domain": "x",
        "depth": 0,
        "subquestions": [],
        "metric": "numeric",
    },
    {
        "id": "d",
        "question": "qd ?",
        "context": "cd",
        "answer": "4",
        "domain": "",
        "depth": 3,
        "subquestions": [],
        "metric": "numeric",
    },
]


class Scripted:
    """A decomposer whose text per problem is given; 5 prompt and 3 completion tokens per problem. It records the
    batches it is asked for; ``fail`` holds the ids it fails on."""

    price_key, version = "teacher", "1"

    def __init__(self, texts: dict, name: str = "scripted", fail=()) -> None:
        self.name, self.texts, self.fail, self.batches = name, texts, set(fail), []

    def decompose(self, rows):
        self.batches.append([r["id"] for r in rows])
        return [
            Decomposed("", error="down") if r["id"] in self.fail else Decomposed(self.texts[r["id"]], 5, 3)
            for r in rows
        ]


class Graded:
    """A solver that answers each problem as told (``None``: fails on it), 10 + the number of sub-questions prompt
    tokens and 2 completion tokens each; counts its calls."""

    name, price_key, version = "graded", "solver", "1"

    def __init__(self, answers: dict, name: str = "graded") -> None:
        self.answers, self.name, self.calls = answers, name, 0

    def solve(self, rows, subquestions):
        self.calls += 1
        out = []
        for row, subs in zip(rows, subquestions):
            answer = self.answers[row["id"]]
            error = None if answer is not None else f"no answer to {row['id']}"
            out.append(SolveResult(answer=answer, prompt_tokens=10 + len(subs), completion_tokens=2, error=error))
        return out


TEXTS = {"a": "Q1: s ?", "b": "No decomposition .", "c": "Q1: u ?\nQ2: v ?", "d": "not the format"}


def test_summarize_counts_every_column_by_hand():
    from rlrefine.core.format import parse

    decomposed = [Decomposed(TEXTS[r["id"]], 5 + i, 3) for i, r in enumerate(ROWS)]
    parsed = [parse(d.text) for d in decomposed]
    records = [
        {"score": 1.0, "error": None, "solver_prompt_tokens": 11, "solver_completion_tokens": 2},
        {"score": None, "error": "first failure", "solver_prompt_tokens": 10, "solver_completion_tokens": 0},
        {"score": 0.5, "error": None, "solver_prompt_tokens": 12, "solver_completion_tokens": 4},
        {"score": None, "error": "second failure", "solver_prompt_tokens": 1, "solver_completion_tokens": 1},
    ]
    cell = ev.summarize(ROWS, decomposed, parsed, records, Scripted({}), Graded({}))
    assert cell == {
        "decomposer": "scripted",
        "solver": "graded",
        "n": 4,
        "accuracy": 1.5 / 4,  # a failed problem counts as wrong
        "errors": 2,
        "first_error": "first failure",
        "mean_subquestions": (1 + 0 + 2 + 1) / 4,
        "valid_format": 3 / 4,
        "oracle_match": 2 / 4,  # a and b match their gold sub-questions
        "by_domain": {"x": (1.0 + 0.5) / 2, "y": 0.0},  # an empty domain is no domain
        "by_depth": {"2": 0.5, "3": 0.0},  # depth 0 is no depth
        "tokens": {"decomposer_in": 5 + 6 + 7 + 8, "decomposer_out": 12, "solver_in": 34, "solver_out": 7},
    }
    no_gold = [{**r, "subquestions": []} for r in ROWS]
    assert ev.summarize(no_gold, decomposed, parsed, records, Scripted({}), Graded({}))["oracle_match"] is None
    one = ev.summarize(ROWS[:1], decomposed[:1], parsed[:1], records[:1], Scripted({}), Graded({}))
    assert (one["accuracy"], one["mean_subquestions"], one["valid_format"], one["oracle_match"]) == (1.0, 1.0, 1.0, 1.0)
    plain = [{"id": "a", "domain": None}]  # no domain, no depth
    assert ev.summarize(plain, decomposed[:1], parsed[:1], records[:1], Scripted({}), Graded({}))["by_domain"] == {}
    empty = ev.summarize([], [], [], [], Scripted({}), Graded({}))
    assert (empty["accuracy"], empty["mean_subquestions"], empty["valid_format"], empty["oracle_match"]) == (
        0.0, 0.0, 0.0, None,
    )  # fmt: skip
    assert empty["first_error"] is None and empty["by_domain"] == {} and empty["errors"] == 0


def test_cost_is_tokens_times_the_price_per_million_and_an_unpriced_key_is_free():
    prices = {"teacher": (2.0, 6.0), "solver": (0.5, 1.5)}
    assert ev.cost(prices, "teacher", 1_000_000, 500_000) == 5.0
    assert ev.cost(prices, "solver", 2_000_000, 0) == 1.0
    assert ev.cost(prices, "nobody", 1_000_000, 1_000_000) == 0.0
    cell = {
        "n": 4,
        "tokens": {"decomposer_in": 1_000_000, "decomposer_out": 0, "solver_in": 0, "solver_out": 2_000_000},
    }
    priced = ev.priced(cell, Scripted({}), Graded({}), prices)
    assert (priced["cost_usd"], priced["cost_usd_per_1k"]) == (2.0 + 3.0, 1000 * 5.0 / 4)
    assert priced["tokens"] is cell["tokens"] and "cost_usd" not in cell  # the cached cell is left as it was
    assert ev.priced({**cell, "n": 0}, Scripted({}), Graded({}), prices)["cost_usd_per_1k"] == 5000.0


def test_default_prices_are_the_papers():
    assert ev.DEFAULT_PRICES == {
        "teacher": (0.5, 1.5), "solver": (0.5, 1.5), "student": (0.05, 0.1), "oracle": (0.0, 0.0), "none": (0.0, 0.0),
    }  # fmt: skip


@pytest.mark.parametrize(
    "name, stem",
    [("plain", "plain"), ("a b/c:d", "a_b_c_d"), ("__x__", "x"), ("///", "x"), ("k=v.1-2", "k=v.1-2"), ("X-Model/Q", "X-Model_Q"),
     ("y" * 90 + "z", "y" * 79 + "z")],
)  # fmt: skip
def test_cache_name_is_a_safe_stem_of_the_name_and_a_hash_of_kind_name_and_version(name, stem):
    solver = Graded({}, name=name)
    digest = hashlib.sha256(f"Graded|{name}|1".encode()).hexdigest()[:8]
    assert ev.cache_name(solver) == f"{stem}-{digest}"


def test_cache_name_changes_with_the_kind_the_name_or_the_version_and_sees_through_a_memo():
    from rlrefine.solvers.base import MemoSolver

    one, renamed, other_version = Graded({}), Graded({}, name="other"), Graded({})
    other_version.version = "2"
    names = {ev.cache_name(s) for s in (one, renamed, other_version, Scripted({}, name="graded"))}
    assert len(names) == 4
    assert ev.cache_name(Graded({"a": "1"})) == ev.cache_name(one)  # what it holds is not its identity
    assert ev.cache_name(MemoSolver(one)) == ev.cache_name(one)
    unversioned = type("Graded", (), {"name": "graded"})()  # the same kind and name, no version
    digest = hashlib.sha256(b"Graded|graded|").hexdigest()[:8]
    assert ev.cache_name(unversioned) == f"graded-{digest}" != ev.cache_name(one)


_ROW = st.fixed_dictionaries(
    {"id": st.sampled_from(["1", "2"]), "question": st.sampled_from(["q ?", "r ?"]),
     "context": st.sampled_from(["", "c"]), "answer": st.sampled_from(["1", "2"]),
     "metric": st.sampled_from(["numeric", "f1"]), "subquestions": st.sampled_from([[], ["s ?"]]),
     "domain": st.sampled_from(["x", "y"])}
)  # fmt: skip


@hypothesis_settings(max_examples=50, deadline=None)
@given(st.lists(_ROW, min_size=1, max_size=3), st.lists(_ROW, min_size=1, max_size=3))
def test_rows_key_is_equal_exactly_when_the_graded_columns_are(a, b):
    graded = ("id", "question", "context", "answer", "metric", "subquestions")
    same = [[{c: r[c] for c in graded} for r in rows] for rows in (a, b)]
    assert (ev.rows_key(a) == ev.rows_key(b)) == (same[0] == same[1])
    assert len(ev.rows_key(a)) == 16 and int(ev.rows_key(a), 16) >= 0


_GRADED = ("id", "question", "context", "answer", "metric", "subquestions")


@hypothesis_settings(max_examples=50, deadline=None)
@given(st.lists(_ROW, min_size=1, max_size=3), st.data())
def test_rows_key_changes_with_any_graded_column_of_any_row_and_only_with_those(rows, data):
    i = data.draw(st.integers(0, len(rows) - 1))
    column = data.draw(st.sampled_from([*_GRADED, "domain"]))
    value = data.draw(st.sampled_from(["1", "z ?", "acc"]) | st.just(["t ?"]) | st.just(["s ?", "t ?"]))
    changed = [dict(r) for r in rows]
    changed[i][column] = value
    differs = column != "domain" and value != rows[i][column]
    assert (ev.rows_key(changed) != ev.rows_key(rows)) == differs


def test_rows_key_reads_missing_gold_columns_as_none():
    row = {"id": "1", "question": "q", "context": ""}
    assert ev.rows_key([row]) == ev.rows_key([{**row, "answer": None, "metric": None, "subquestions": None}])
    assert ev.rows_key([row]) != ev.rows_key([{**row, "answer": ""}])


def _evaluate(tmp_path, decomposers, solvers, **options):
    return ev.evaluate(ROWS, decomposers, solvers, out=tmp_path / "eval", progress=False, **options)


def test_evaluate_writes_results_and_its_cache_where_the_keys_say(tmp_path):
    dec, solver = Scripted(TEXTS), Graded({"a": "1", "b": "2", "c": "0", "d": "4"})
    results = _evaluate(tmp_path, [dec], [solver], prices={"teacher": (1.0, 2.0)}, batch_size=3)
    assert dec.batches == [["a", "b", "c"], ["d"]]  # in batches of batch_size
    out = tmp_path / "eval"
    key = ev.rows_key(ROWS)
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == {
        "results.json", "results.md", f"cache/{key}/{ev.cache_name(dec)}.jsonl",
        f"cache/{key}/{ev.cache_name(dec)}__{ev.cache_name(solver)}.json",
    }  # fmt: skip
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    assert (out / "results.md").read_text() == ev.results_markdown(results)
    assert results["schema"] == 2 and results["n"] == 4 and results["rows_key"] == key and "notes" not in results
    assert results["prices_usd_per_1M"] == {**ev.DEFAULT_PRICES, "teacher": (1.0, 2.0)}
    assert list(results["decompose_seconds"]) == ["scripted"]
    (cell,) = results["cells"]
    assert (cell["accuracy"], cell["errors"], cell["tokens"]) == (
        0.75, 0, {"decomposer_in": 20, "decomposer_out": 12, "solver_in": 44, "solver_out": 8},
    )  # fmt: skip
    assert cell["cost_usd"] == (20 * 1.0 + 12 * 2.0 + 44 * 0.5 + 8 * 1.5) / 1e6
    cached = json.loads((out / "cache" / key / f"{ev.cache_name(dec)}__{ev.cache_name(solver)}.json").read_text())
    assert cached == {k: v for k, v in cell.items() if not k.startswith("cost_usd")}  # priced when reported


def test_a_cached_cell_is_read_back_and_a_shared_cache_serves_another_out(tmp_path):
    dec, solver = Scripted(TEXTS), Graded({"a": "1", "b": "2", "c": "3", "d": "4"})
    shared = tmp_path / "shared"
    first = ev.evaluate(ROWS, [dec], [solver], out=tmp_path / "one", cache=shared, progress=False)
    assert not (tmp_path / "one" / "cache").exists()
    cell_file = shared / ev.rows_key(ROWS) / f"{ev.cache_name(dec)}__{ev.cache_name(solver)}.json"
    marked = {**json.loads(cell_file.read_text()), "accuracy": -1.0}
    cell_file.write_text(json.dumps(marked))
    again = ev.evaluate(ROWS, [dec], [solver], out=tmp_path / "two", cache=shared, progress=False)
    assert (again["cells"][0]["accuracy"], first["cells"][0]["accuracy"]) == (-1.0, 1.0)
    assert (solver.calls, dec.batches) == (1, [["a", "b", "c", "d"]])  # neither asked again
    assert ev.evaluate(ROWS, [dec], [solver], progress=False)["cells"][0]["accuracy"] == 1.0  # no out: no cache
    assert solver.calls == 2


def test_a_cell_with_a_failure_is_not_cached_and_is_redone(tmp_path):
    dec, solver = Scripted(TEXTS, fail={"b"}), Graded({"a": "1", "b": "2", "c": "3", "d": None})
    cell = _evaluate(tmp_path, [dec], [solver])["cells"][0]
    assert (cell["errors"], cell["first_error"]) == (2, "decomposer: down")
    assert not list((tmp_path / "eval" / "cache").rglob("*.json"))
    dec.fail, solver.answers["d"] = set(), "4"
    assert _evaluate(tmp_path, [dec], [solver])["cells"][0]["errors"] == 0
    assert dec.batches == [["a", "b", "c", "d"], ["b"]] and solver.calls == 2


def test_dynamic_cells_are_their_own_rows_cached_under_their_own_key(tmp_path):
    solver = Graded({"a": "1", "b": "2", "c": "3", "d": "4"})
    results = _evaluate(tmp_path, ["none"], [solver], modes=("static", "dynamic"))
    assert [(c["decomposer"], c.get("mode")) for c in results["cells"]] == [
        ("none", None),
        ("none (dynamic)", "dynamic"),
    ]
    assert list(results["decompose_seconds"]) == ["none", "none (dynamic)"]
    dynamic = results["cells"][1]
    assert (dynamic["accuracy"], dynamic["mean_subquestions"], dynamic["valid_format"]) == (1.0, 0.0, 1.0)
    from rlrefine.decomposers import make_decomposer
    from rlrefine.evaluation.dynamic import version

    name = f"{ev.cache_name(make_decomposer('none'))}__{ev.cache_name(solver)}__dynamic-{version(3)}.json"
    cell_file = tmp_path / "eval" / "cache" / ev.rows_key(ROWS) / name
    assert json.loads(cell_file.read_text()) == {
        k: v for k, v in results["cells"][1].items() if not k.startswith("cost_usd")
    }
    cell_file.write_text(json.dumps({**json.loads(cell_file.read_text()), "accuracy": -1.0}))
    again = _evaluate(tmp_path, ["none"], [solver], modes=("dynamic",))
    assert [(c["decomposer"], c["accuracy"]) for c in again["cells"]] == [("none (dynamic)", -1.0)]
    assert ev.dynamic_label("x") == "x (dynamic)"
    assert version(3) != version(4)  # another round limit is another cell: a dialogue may have gone further


def test_a_dynamic_cell_with_a_failure_is_not_cached(tmp_path):
    solver = Graded({"a": "1", "b": None, "c": "3", "d": "4"})
    cell = _evaluate(tmp_path, ["none"], [solver], modes=("dynamic",))["cells"][0]
    assert cell["errors"] == 1 and not list((tmp_path / "eval").rglob("*dynamic*"))
    fresh = ev.dynamic_cell(ROWS, __import__("rlrefine.decomposers").decomposers.make_decomposer("none"), solver, None)
    assert {k: v for k, v in fresh.items()} == {k: v for k, v in cell.items() if not k.startswith("cost_usd")}


def test_a_decomposer_without_a_dynamic_mode_is_refused_or_left_out_of_that_mode(tmp_path):
    dec, solver = Scripted(TEXTS), Graded({"a": "1", "b": "2", "c": "3", "d": "4"})
    with pytest.raises(UsageError, match="^decomposer 'scripted' has no dynamic mode"):
        _evaluate(tmp_path, [dec], [solver], modes=("dynamic",))
    results = _evaluate(tmp_path, [dec], [solver], modes=("static", "dynamic"), skip_unfit=True)
    assert [c["decomposer"] for c in results["cells"]] == ["scripted"]
    assert results["notes"] == ["scripted left out of dynamic mode: it has no next_subquestion"]


def test_an_unfit_solver_is_refused_even_in_a_default_matrix(tmp_path):
    needy = Graded({})
    needy.requires = ("graph",)
    with pytest.raises(UsageError, match="^solver 'graded' needs"):
        _evaluate(tmp_path, ["none"], [needy], skip_unfit=True)
    unfit = Scripted(TEXTS, name="unfit")
    unfit.requires = ("graph",)
    fit = Scripted(TEXTS, name="fit")
    results = _evaluate(tmp_path, [unfit, fit], [Graded({"a": "1", "b": "2", "c": "3", "d": "4"})], skip_unfit=True)
    assert [c["decomposer"] for c in results["cells"]] == ["fit"] and unfit.batches == []
    assert results["notes"][0].startswith("unfit left out: decomposer 'unfit' needs")
    with pytest.raises(UsageError, match="^decomposer 'unfit' needs"):
        _evaluate(tmp_path, [unfit, fit], [Graded({})])


class Sampler:
    """A model decomposer that samples the given texts, k per problem in row order."""

    name, price_key = "sampler", "student"

    def __init__(self, texts: list[list[str]]) -> None:
        self.texts, self.asked = texts, []

    def sample(self, rows, n, temperature, seed):
        self.asked.append((len(rows), n, temperature, seed))
        return [[Completion(texts[i % len(texts)]) for i in range(n)] for texts in self.texts]


SAMPLED_SOLVER = '''
from rlrefine.core.protocols import SolveResult


class BySubquestion:
    """Right when the first sub-question says so, failing when it says fail, else wrong."""

    name, price_key = "by-subquestion", "solver"

    def solve(self, rows, subquestions):
        said = [s[0] if s else "" for s in subquestions]
        return [SolveResult(answer=None, error="fail") if s.startswith("fail") else
                SolveResult(answer=r["answer"] if s.startswith("right") else "-1") for r, s in zip(rows, said)]
'''


def test_pass_at_k_is_the_share_of_problems_with_one_right_sample(tmp_path):
    plugin = tmp_path / "sampled_solver.py"
    plugin.write_text(SAMPLED_SOLVER)
    solver = f"{plugin}:BySubquestion"
    model = Sampler(
        [
            ["Q1: right ?\nQ2: b ?", "Q1: wrong ?"],  # one right of two: passes
            ["Q1: wrong ?", "Q1: fail ?"],  # none right: a failure is no pass
            ["No decomposition .", "Q1: right ?"],
        ]
    )
    result = ev.pass_at_k(model, ROWS[:3], solver, k=2, temperature=0.7, seed=5)
    assert model.asked == [(3, 2, 0.7, 5)]
    assert result == {
        "k": 2,
        "solver": solver,
        "pass_at_k": 2 / 3,
        "sampled_accuracy": 2 / 5,  # the failed sample is counted apart
        "mean_subquestions": (2 + 1 + 1 + 1 + 0 + 1) / 6,
        "errors": 1,
    }
    solved = ev.sample_and_solve(model, ROWS[:3], solver, 2, 4)
    assert model.asked[-1] == (3, 2, 1.0, 4)  # temperature 1 unless told
    assert [(r["id"], g.text, p.count, rec["score"]) for r, g, p, rec in solved] == [
        ("a", "Q1: right ?\nQ2: b ?", 2, 1.0), ("a", "Q1: wrong ?", 1, 0.0), ("b", "Q1: wrong ?", 1, 0.0),
        ("b", "Q1: fail ?", 1, None), ("c", "No decomposition .", 0, 0.0), ("c", "Q1: right ?", 1, 1.0),
    ]  # fmt: skip
    one = ev.pass_at_k(Sampler([["Q1: right ?"]]), ROWS[:1], solver, k=1)
    assert (one["pass_at_k"], one["sampled_accuracy"], one["mean_subquestions"], one["errors"]) == (1.0, 1.0, 1.0, 0)
    none_right = ev.pass_at_k(Sampler([["Q1: fail ?"]]), ROWS[:1], solver, k=1)
    assert (none_right["pass_at_k"], none_right["sampled_accuracy"], none_right["errors"]) == (0.0, 0.0, 1)
    defaults = Sampler([["Q1: right ?"]])
    assert ev.pass_at_k(defaults, ROWS[:1], solver)["k"] == 8 and defaults.asked == [(1, 8, 1.0, 0)]
    empty = ev.pass_at_k(Sampler([]), [], solver, k=3)
    assert (empty["pass_at_k"], empty["sampled_accuracy"], empty["mean_subquestions"]) == (0.0, 0.0, 0.0)
    with pytest.raises(UsageError, match="^pass@k needs a model decomposer that samples, got 'scripted'$"):
        ev.pass_at_k(Scripted(TEXTS), ROWS, solver)


def test_results_markdown_by_hand():
    cell = {
        "decomposer": "d1", "solver": "s1", "accuracy": 0.5, "n": 4, "errors": 0, "mean_subquestions": 1.25,
        "valid_format": 0.75, "tokens": {"decomposer_in": 1, "decomposer_out": 2, "solver_in": 3, "solver_out": 4},
        "cost_usd_per_1k": 0.12345, "first_error": None,
    }  # fmt: skip
    cells = [cell, {**cell, "solver": "s2", "accuracy": 1.0}, {**cell, "decomposer": "d2", "accuracy": 0.25,
             "errors": 1, "first_error": "timed out"}]  # fmt: skip
    results = {"n": 4, "cells": cells, "notes": ["x left out: why"],
               "pass_at_k": {"d1": {"solver": "s1", "k": 8, "pass_at_k": 0.5, "sampled_accuracy": 0.25,
                                    "mean_subquestions": 1.5}}}  # fmt: skip
    assert ev.results_markdown(results) == (
        "# Evaluation (4 problems)\n\nNote: x left out: why\n\nAccuracy\n\n"
        "| decomposer | s1 | s2 | mean |\n|---|---|---|---|\n| d1 | 0.500 | 1.000 | 0.750 |\n| d2 | 0.250 | 0.250 |\n"
        "\nHeadroom: pass@k of sampled decompositions\n\n"
        "| decomposer | solver | k | pass@k | sampled acc | sub-q |\n|---|---|---|---|---|---|\n"
        "| d1 | s1 | 8 | 0.500 | 0.250 | 1.50 |\n\n"
        "| decomposer | solver | acc | n | errors | sub-q | valid | dec tok in/out | solver tok in/out | $ / 1k |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
        "| d1 | s1 | 0.500 | 4 | 0 | 1.25 | 0.75 | 1/2 | 3/4 | 0.1235 |\n"
        "| d1 | s2 | 1.000 | 4 | 0 | 1.25 | 0.75 | 1/2 | 3/4 | 0.1235 |\n"
        "| d2 | s1 | 0.250 | 4 | 1 | 1.25 | 0.75 | 1/2 | 3/4 | 0.1235 |\n"
        "\nFailures (counted as wrong in accuracy):\n\n- d2 x s1: 1 of 4, first: timed out\n"
    )
    plain = ev.results_markdown({"n": 4, "cells": cells[:1]})
    assert plain.startswith("# Evaluation (4 problems)\n\nAccuracy\n\n") and "Headroom" not in plain
    assert "Failures" not in plain and "Note" not in plain


@pytest.mark.parametrize(
    "text, message",
    [
        ("teacher: [1, 2\n", "not valid YAML ({})"),
        ("- 1\n- 2\n", "expected a mapping of name to [USD per 1M input, USD per 1M output], got list"),
        ("teacher: [1, -2]\n", "price of 'teacher' must be [USD per 1M input, USD per 1M output], got [1, -2]"),
        ("teacher: [1, true]\n", "price of 'teacher' must be [USD per 1M input, USD per 1M output], got [1, True]"),
        ("teacher: [1, 2, 3]\n", "price of 'teacher' must be [USD per 1M input, USD per 1M output], got [1, 2, 3]"),
        ("teacher: [1]\n", "price of 'teacher' must be [USD per 1M input, USD per 1M output], got [1]"),
        ("teacher: 3\n", "price of 'teacher' must be [USD per 1M input, USD per 1M output], got 3"),
        ("teacher: ['1', 2]\n", "price of 'teacher' must be [USD per 1M input, USD per 1M output], got ['1', 2]"),
    ],
)
def test_a_bad_price_table_is_one_line_naming_the_file(tmp_path, text, message):
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    with pytest.raises(UsageError) as refused:
        ev.load_prices(str(path))
    if "{}" in message:  # the YAML error's first line, whatever the YAML library's wording
        import yaml

        with pytest.raises(yaml.YAMLError) as yaml_error:
            yaml.safe_load(text)
        message = message.format(str(yaml_error.value).splitlines()[0])
    assert str(refused.value) == f"{path}: {message}"


def test_a_price_table_is_read_as_written(tmp_path):
    path = tmp_path / "prices.yaml"
    path.write_text("teacher: [0, 2.5]\nmine: [1, 0]\n")
    assert ev.load_prices(str(path)) == {"teacher": [0, 2.5], "mine": [1, 0]}
    path.write_text("")
    assert ev.load_prices(str(path)) == {} and ev.load_prices(None) == {} and ev.load_prices("") == {}


def test_the_eval_command_prices_and_prints_its_matrix(tmp_path, capsys):
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    prices = tmp_path / "prices.yaml"
    prices.write_text("solver: [1000000, 0]\n")  # a dollar per solver prompt token
    argv = ["--data", str(data), "--decomposers", "none", "--solvers", "echo.py", "--out", str(tmp_path / "o")]
    argv[5] = f"{ROOT / 'tests' / 'plugins' / 'echo_solver.py'}:Echo"
    plugin = tmp_path / "batches.py"
    plugin.write_text(BATCHES)
    argv[3] = f"{plugin}:Batches"
    results = ev.main([*argv, "--prices", str(prices), "--batch-size", "1", "--domain", "x"])
    assert capsys.readouterr().out == ev.results_markdown(results)
    assert results["prices_usd_per_1M"]["solver"] == [1000000, 0] and results["cells"][0]["cost_usd"] == 20.0
    from rlrefine.core.registry import find

    assert find("decomposer", f"{plugin}:Batches").seen == [["a"], ["c"]]  # the domain's rows, one per batch
    assert ev.main([*argv, "--limit", "3", "--split", "test"])["n"] == 3
    dynamic = ev.main([*argv[:3], "none", *argv[4:], "--modes", "dynamic"])
    assert [c["decomposer"] for c in dynamic["cells"]] == ["none (dynamic)"]
    with pytest.raises(UsageError) as refused:
        ev.main(["--bogus"])
    assert str(refused.value) == "unknown flag(s) or stray value(s): --bogus; see rlrefine eval --help"


BATCHES = """
from rlrefine.core.protocols import Decomposed


class Batches:
    name, price_key, seen = "batches", "none", []

    def decompose(self, rows):
        Batches.seen.append([r["id"] for r in rows])
        return [Decomposed("No decomposition .") for _ in rows]
"""


LATE_NEEDS = """
from rlrefine.core.protocols import SolveResult


class LateNeeds:
    name, price_key = "late", "solver"

    def __init__(self):
        self.requires = ("graph",)  # known only once built

    def solve(self, rows, subquestions):
        return [SolveResult(answer="1") for _ in rows]
"""


def test_what_only_the_built_solver_requires_is_checked_too(tmp_path):
    plugin = tmp_path / "late.py"
    plugin.write_text(LATE_NEEDS)
    with pytest.raises(
        UsageError, match=r"^solver 'late' needs world problems \(a 'graph' column\); the evaluated data has none"
    ):
        _evaluate(tmp_path, ["none"], [f"{plugin}:LateNeeds"])


def test_the_decomposer_progress_bar_is_shown_only_when_asked(tmp_path, capsys):
    solver = Graded({"a": "1", "b": "2", "c": "3", "d": "4"})
    ev.evaluate(ROWS, [Scripted(TEXTS)], [solver])
    assert "decompose scripted" in capsys.readouterr().err  # shown unless told not to
    ev.evaluate(ROWS, [Scripted(TEXTS)], [solver], progress=False)
    assert "decompose scripted" not in capsys.readouterr().err


def test_decompositions_are_asked_for_in_batches_of_64_unless_told(tmp_path):
    rows = [{**ROWS[1], "id": str(i)} for i in range(66)]
    dec = Scripted({r["id"]: "No decomposition ." for r in rows})
    ev.evaluate(rows, [dec], [Graded({r["id"]: "2" for r in rows})], progress=False)
    assert [len(b) for b in dec.batches] == [64, 2]


def test_decompose_seconds_are_each_decomposers_share_of_the_call():
    """Not a speed: whatever the machine, each entry lies between 0 and the whole call's wall time."""
    import time

    solver = Graded({"a": "1", "b": "2", "c": "3", "d": "4"})
    start = time.perf_counter()
    results = ev.evaluate(
        ROWS, [Scripted(TEXTS), "none"], [solver], progress=False, modes=("static", "dynamic"), skip_unfit=True
    )
    whole = time.perf_counter() - start
    seconds = results["decompose_seconds"]
    assert list(seconds) == ["scripted", "none", "none (dynamic)"]
    assert all(0 <= s <= whole for s in seconds.values()), (seconds, whole)
    assert [c["decomposer"] for c in results["cells"]] == ["scripted", "none", "none (dynamic)"]  # no out: no cache


class Asking(Scripted):
    """Four sub-questions at once; in dynamic mode a new one every round, never done: only the cap ends it."""

    def __init__(self) -> None:
        super().__init__({r["id"]: "\n".join(f"Q{k}: step {k} ?" for k in range(1, 5)) for r in ROWS}, "asking")

    def next_subquestion(self, rows, histories):
        return [Decomposed(f"Q{len(h) + 1}: step {len(h) + 1} ?", 1, 1) for h in histories]


@pytest.mark.parametrize("cap, valid, rounds", [(3, 0.0, 3), (4, 1.0, 4), (None, 1.0, 8)])
def test_the_cap_is_what_the_format_allows_and_how_long_a_dialogue_runs(tmp_path, cap, valid, rounds):
    solver = Graded({"a": "1", "b": "2", "c": "3", "d": "4"})
    results = _evaluate(tmp_path, [Asking()], [solver], modes=("static", "dynamic"), cap=cap)
    static, dynamic = results["cells"]
    assert (static["valid_format"], static["mean_subquestions"]) == (valid, 4.0)
    assert (dynamic["valid_format"], dynamic["mean_subquestions"]) == (1.0, rounds)
    names = sorted(p.name for p in (tmp_path / "eval" / "cache").rglob("*.json"))
    cell = f"{ev.cache_name(Asking())}__{ev.cache_name(solver)}"
    suffix = "" if cap == 3 else f"__cap-{cap}"  # a cell of another cap is another cell; three keeps its old names
    assert names == sorted([f"{cell}{suffix}.json", f"{cell}{suffix}__dynamic-{version(rounds)}.json"])
