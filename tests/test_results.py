"""What a results table says: costs that are tokens x price exactly, per-domain and per-depth accuracies that add up
to the cell's, the domain filter, and ``results.md`` against a golden file."""

import json
from collections import defaultdict

import pytest
from helpers import ROOT

from rlrefine.commands.cli import main
from rlrefine.core.format import parse
from rlrefine.core.grading import grade
from rlrefine.core.protocols import SolveResult
from rlrefine.decomposers import make_decomposer
from rlrefine.evaluation.evaluate import evaluate, results_markdown
from rlrefine.solvers.symbolic import SymbolicSolver

PRICES = {"teacher": (2.0, 3.0), "solver": (5.0, 7.0), "student": (11.0, 13.0)}  # USD per 1M tokens (in, out)


def test_cost_is_tokens_times_price(test_rows):
    rows = test_rows[:30]
    results = evaluate(rows, ["teacher", "oracle"], ["hops=1"], prices=PRICES, progress=False)
    teacher, oracle = results["cells"]
    decomposed = make_decomposer("teacher").decompose(rows)  # the token counts, from the models themselves
    solved = SymbolicSolver(hops=1).solve(rows, [parse(d.text).subquestions for d in decomposed])
    tokens = {
        "decomposer_in": sum(d.prompt_tokens for d in decomposed),
        "decomposer_out": sum(d.completion_tokens for d in decomposed),
        "solver_in": sum(s.prompt_tokens for s in solved),
        "solver_out": sum(s.completion_tokens for s in solved),
    }
    assert teacher["tokens"] == tokens and min(tokens.values()) > 0
    dollars = (2 * tokens["decomposer_in"] + 3 * tokens["decomposer_out"]) / 1e6
    dollars += (5 * tokens["solver_in"] + 7 * tokens["solver_out"]) / 1e6
    assert teacher["cost_usd"] == pytest.approx(dollars, rel=1e-12)
    assert teacher["cost_usd_per_1k"] == pytest.approx(1000 * dollars / 30, rel=1e-12)
    t = oracle["tokens"]  # the oracle is free (default table): only its solver is paid
    assert t["decomposer_in"] > 0
    assert oracle["cost_usd"] == pytest.approx((5 * t["solver_in"] + 7 * t["solver_out"]) / 1e6, rel=1e-12)
    assert results["prices_usd_per_1M"]["teacher"] == (2.0, 3.0) and results["prices_usd_per_1M"]["none"] == (0, 0)


def test_a_local_folder_decomposer_is_priced_as_a_student(tiny_model_dir, test_rows):
    specs = [f"mine={tiny_model_dir}", f"hf:{tiny_model_dir}", {"name": "hf", "model": str(tiny_model_dir)}]
    specs.append({"name": "hf", "model": str(tiny_model_dir), "price_key": "teacher", "label": "as-teacher"})
    cells = evaluate(test_rows[:3], specs, ["hops=1"], prices=PRICES, progress=False)["cells"]
    for cell, price in zip(cells, [(11, 13), (11, 13), (11, 13), (2, 3)]):  # student, unless price_key says
        t = cell["tokens"]
        assert t["decomposer_in"] > 0 and t["decomposer_out"] > 0
        expected = (price[0] * t["decomposer_in"] + price[1] * t["decomposer_out"]) / 1e6
        expected += (5 * t["solver_in"] + 7 * t["solver_out"]) / 1e6
        assert cell["cost_usd"] == pytest.approx(expected, rel=1e-12), cell["decomposer"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("teacher: 0.5\n", "price of 'teacher' must be [USD per 1M input, USD per 1M output], got 0.5"),
        ("teacher: [1, 2, 3]\n", "price of 'teacher' must be [USD per 1M input, USD per 1M output], got [1, 2, 3]"),
        ("teacher: [cheap, dear]\n", "price of 'teacher' must be [USD per 1M input, USD per 1M output], got ['cheap'"),
        ("- [1, 2]\n", "expected a mapping of name to [USD per 1M input, USD per 1M output], got list"),
        ("teacher: [1, 2\n", "not valid YAML"),
    ],
)
def test_a_malformed_price_file_is_one_line_exit_2(tmp_path, capsys, content, message):
    prices = tmp_path / "prices.yaml"
    prices.write_text(content)
    argv = ["eval", "--limit", "3", "--decomposers", "oracle", "--solvers", "hops=1", "--out", str(tmp_path / "o")]
    assert main([*argv, "--prices", str(prices)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"rlrefine eval: error: {prices}: {message}"), err
    assert not (tmp_path / "o").exists()  # refused before any work


def test_eval_domain_filter_keeps_that_domains_problems(world_dir, world, tmp_path):
    out = tmp_path / "money"
    argv = ["eval", "--data", str(world_dir), "--domain", "money", "--decomposers", "oracle", "--solvers", "hops=1"]
    assert main([*argv, "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    money = [r for r in world["test"] if r["domain"] == "money"]
    assert 0 < results["n"] == len(money) < len(world["test"])
    (cell,) = results["cells"]
    assert cell["n"] == len(money) and cell["by_domain"] == {"money": 1.0}
    assert set(cell["by_depth"]) == {str(r["depth"]) for r in money}


class FailsOn:
    """The one-hop solver behind an endpoint that times out on some problems."""

    name, price_key = "flaky-hops=1", "solver"

    def __init__(self, ids: set) -> None:
        self.ids, self.inner = ids, SymbolicSolver(hops=1)

    def solve(self, rows, subquestions):
        solved = self.inner.solve(rows, subquestions)
        return [SolveResult(None, error="timed out") if r["id"] in self.ids else s for r, s in zip(rows, solved)]


def test_per_domain_and_per_depth_accuracy_are_their_problems_accuracy(test_rows):
    failing = {r["id"] for r in test_rows[::7]}  # wrong in the accuracy, and so in its breakdowns too
    (cell,) = evaluate(test_rows, ["teacher"], [FailsOn(failing)], progress=False)["cells"]
    subs = [parse(d.text).subquestions for d in make_decomposer("teacher").decompose(test_rows)]
    solved = SymbolicSolver(hops=1).solve(test_rows, subs)  # each problem's score, from a solver of the test's own
    scores = [
        0.0 if r["id"] in failing else grade(s.answer, r["answer"]) for s, r in zip(solved, test_rows, strict=True)
    ]
    assert cell["errors"] == len(failing) and cell["accuracy"] == pytest.approx(sum(scores) / len(test_rows))
    for key in ("domain", "depth"):
        groups = defaultdict(list)
        for row, score in zip(test_rows, scores):
            groups[str(row[key])].append(score)
        assert cell[f"by_{key}"] == pytest.approx({k: sum(v) / len(v) for k, v in groups.items()})
        assert len(groups) > 1 and len(set(cell[f"by_{key}"].values())) > 1  # the groups differ: a real breakdown
        weighted = sum(cell[f"by_{key}"][k] * len(v) for k, v in groups.items())
        assert weighted == pytest.approx(cell["accuracy"] * len(test_rows))  # they add up to the cell's accuracy


def _cell(dec, sol, acc, errors, subq, valid, tokens, per_1k, first_error=None) -> dict:
    keys = ("decomposer_in", "decomposer_out", "solver_in", "solver_out")
    return {
        "decomposer": dec,
        "solver": sol,
        "n": 4,
        "accuracy": acc,
        "errors": errors,
        "first_error": first_error,
        "mean_subquestions": subq,
        "valid_format": valid,
        "tokens": dict(zip(keys, tokens)),
        "cost_usd_per_1k": per_1k,
    }


def test_results_md_matches_the_golden_file():
    results = {
        "n": 4,
        "notes": ["teacher left out: it needs world problems"],
        "cells": [
            _cell("oracle", "hops=1", 1.0, 0, 2.0, 1.0, (40, 12, 60, 20), 0.0123),
            _cell("oracle", "neural", 0.75, 0, 2.0, 1.0, (40, 12, 80, 30), 0.0456),
            _cell("sft", "hops=1", 0.5, 1, 1.5, 0.75, (48, 16, 55, 18), 0.01, "TimeoutError: solver timed out"),
            _cell("sft", "neural", 0.25, 0, 1.5, 0.75, (48, 16, 70, 26), 0.0789),
        ],
        "pass_at_k": {
            "sft": {"k": 8, "solver": "hops=1", "pass_at_k": 0.75, "sampled_accuracy": 0.4, "mean_subquestions": 1.6}
        },
    }
    assert results_markdown(results) == (ROOT / "tests" / "data" / "results.md").read_text()
