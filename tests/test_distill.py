import json

import pytest
from helpers import ROOT

from rlrefine.core.format import parse, render
from rlrefine.core.grading import grade
from rlrefine.core.protocols import Decomposed
from rlrefine.core.registry import build
from rlrefine.data.world import stated_quantities
from rlrefine.solvers.program import run
from rlrefine.training.distill import decomposer_dataset, solver_dataset


def test_sdr_keeps_what_a_solver_reading_the_story_gets_right(world):
    """Each SD-T row, solved again by the calculator plugin (it reads the story's text, not the graph the symbolic
    filter reads): SD-R holds exactly the ones it gets right, and says so in ``correct``."""
    rows = list(world["train"])
    sdt = decomposer_dataset(rows, "sd-t")
    sdr = decomposer_dataset(rows, "sd-r", filter_solver="hops=1")
    assert sdt["id"] == [r["id"] for r in rows]
    calculator = build("solver", f"{ROOT / 'experiments' / 'plugins' / 'calculator_solver.py'}:StoryCalculator")
    answers = calculator.solve(rows, [parse(ex["completion"][0]["content"]).subquestions for ex in sdt])
    right = [grade(a.answer, r["answer"]) == 1.0 for a, r in zip(answers, rows, strict=True)]
    assert sdr["id"] == [r["id"] for r, ok in zip(rows, right) if ok] and sdt["correct"] == right
    assert all(sdr["correct"]) and 0.3 * len(rows) < sum(right) < 0.7 * len(rows)


class HandWritten:
    """A teacher whose decompositions are written by hand: the oracle's, one with merged hops, none at all."""

    name, price_key = "by-hand", "teacher"

    def decompose(self, rows):
        out = []
        for row, kind in zip(rows, ("oracle", "merged", "none")):
            graph = json.loads(row["graph"])
            asks = {"oracle": graph["chain"][1:-1], "merged": graph["chain"][2:-1], "none": []}[kind]
            out.append(Decomposed(render([f"How many {graph['unit']} does {e} have ?" for e in asks])))
        return out


def test_sdr_on_decompositions_whose_answers_are_known(test_rows):
    rows = [r for r in test_rows if r["depth"] == 3 and r["domain"] == "marbles"][:3]  # root -> a -> b -> asked
    sdt = decomposer_dataset(rows, "sd-t", teacher=HandWritten())
    assert sdt["correct"] == [True, False, False] and len(sdt) == 3
    assert decomposer_dataset(rows, "sd-r", teacher=HandWritten())["id"] == [rows[0]["id"]]
    two_hops = decomposer_dataset(rows, "sd-r", teacher=HandWritten(), filter_solver="hops=2")
    assert two_hops["id"] == [rows[0]["id"], rows[1]["id"]]  # merged hops are right for a two-hop solver


def test_decomposer_examples_are_prompt_completion_conversations(world):
    ex = decomposer_dataset(list(world["train"])[:5], "oracle")[0]
    assert [m["role"] for m in ex["prompt"]] == ["user"] and ex["completion"][0]["role"] == "assistant"
    assert "Question:" in ex["prompt"][0]["content"] and parse(ex["completion"][0]["content"]).valid


def test_solver_targets(world):
    rows = list(world["train"])[:50]
    onehop = solver_dataset(rows, "onehop")
    for ex, row in zip(onehop, rows):
        subs, answer = run(ex["completion"][0]["content"], len(row["subquestions"]), stated_quantities(row["context"]))
        assert answer == row["answer"] and None not in subs  # every step is one hop: always answerable
    sea = solver_dataset(rows, "se-a")
    assert [ex["completion"][0]["content"] for ex in sea] == [f"The answer is: {r['answer']}" for r in rows]
    set_ = solver_dataset(rows, "se-t")
    right = [
        run(e["completion"][0]["content"], 3, stated_quantities(r["context"]))[1] == r["answer"]
        for e, r in zip(set_, rows)
    ]
    assert sum(right) > 0.9 * len(rows)


def test_bad_variants_and_empty_data():
    with pytest.raises(ValueError, match="unknown decomposer data 'sdx'; valid: sd-t, sd-r, oracle"):
        decomposer_dataset([{"id": "x"}], "sdx")
    with pytest.raises(ValueError, match="training split is empty"):
        decomposer_dataset([], "sd-t")
    with pytest.raises(ValueError, match="^unknown solver data 'se-x'; valid: onehop, se-t, se-a$"):
        solver_dataset([{"id": "x"}], "se-x")


def test_program_targets_are_json_safe(world):
    assert json.dumps(solver_dataset(list(world["train"])[:3], "se-t").to_list())


class HalfDown:
    """A teacher behind an endpoint that fails every other request."""

    name, price_key = "half-down", "teacher"

    def decompose(self, rows):
        from rlrefine.decomposers import Decomposed, make_decomposer

        good = make_decomposer("oracle").decompose(rows)
        return [d if i % 2 else Decomposed("", error="HTTP 400") for i, d in enumerate(good)]


def test_failed_teacher_requests_are_never_trained_on(world):
    rows = list(world["train"])[:10]
    for data in (decomposer_dataset(rows, "sd-t", teacher=HalfDown()), solver_dataset(rows, "se-a", HalfDown())):
        assert data["id"] == [r["id"] for r in rows[1::2]]  # not as empty decompositions either
    with pytest.raises(ValueError, match="every teacher request failed, e.g. HTTP 400"):
        decomposer_dataset(rows[:1], "sd-t", teacher=HalfDown())
