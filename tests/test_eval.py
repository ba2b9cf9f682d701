import json

import pytest

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
        (["eval", "--solvers", "nueral"], "unknown solver 'nueral'; did you mean 'neural'? valid: hf, model, neural,"),
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
