import json

import pytest

from rlrefine.distill import decomposer_dataset, solver_dataset
from rlrefine.format import parse
from rlrefine.grading import grade
from rlrefine.solvers import make_solver
from rlrefine.solvers.program import run
from rlrefine.world import stated_quantities


def test_sdr_keeps_exactly_the_solver_correct_rows(world):
    rows = list(world["train"])
    sdt = decomposer_dataset(rows, "sd-t")
    sdr = decomposer_dataset(rows, "sd-r", filter_solver="hops=1")
    assert len(sdt) == len(rows)
    solver = make_solver("hops=1")
    by_id = {r["id"]: r for r in rows}
    correct_ids = []
    for ex in sdt:
        row = by_id[ex["id"]]
        res = solver.solve([row], [parse(ex["completion"][0]["content"]).subquestions])[0]
        if grade(res.answer, row["answer"]) == 1.0:
            correct_ids.append(ex["id"])
    assert sdr["id"] == correct_ids and 0.3 * len(rows) < len(correct_ids) < 0.7 * len(rows)
    assert all(sdr["correct"]) and sdt["correct"].count(True) == len(correct_ids)


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
    with pytest.raises(ValueError, match="unknown solver data"):
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
