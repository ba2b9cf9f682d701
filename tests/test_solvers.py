import json

import pytest

from rlrefine.solvers import SolveResult, make_solver, solve_unique


def _row(test_rows, depth):
    return next(r for r in test_rows if r["depth"] == depth)


def _q(row, entity):
    unit = json.loads(row["graph"])["unit"]
    return (
        f"How many {unit} does {entity} have ?"
        if row["domain"] == "marbles"
        else f"How many {unit} did the {entity} earn ?"
    )


def test_oracle_decompositions_are_solvable_by_one_hop(test_rows):
    solver = make_solver("hops=1")
    results = solver.solve(test_rows, [r["subquestions"] for r in test_rows])
    assert all(res.answer == row["answer"] for res, row in zip(results, test_rows))
    assert all(res.answered_share == 1.0 for res in results)


def test_hops_profile(test_rows):
    row = _row(test_rows, 3)
    chain = json.loads(row["graph"])["chain"]  # root, a, b, target
    one, two = make_solver("hops=1"), make_solver("hops=2")
    assert one.solve([row], [[]])[0].answer is None  # direct: 3 hops away
    skip = [[_q(row, chain[2])]]  # asks b first: 2 hops from the root
    r1, r2 = one.solve([row], skip)[0], two.solve([row], skip)[0]
    assert r1.trace[0]["answer"] is None and r1.answer is None
    assert r2.answer == row["answer"]
    assert make_solver("hops=3").solve([row], [[]])[0].answer == row["answer"]


def test_misordered_steps_fail_one_hop(test_rows):
    row = _row(test_rows, 3)
    chain = json.loads(row["graph"])["chain"]
    res = make_solver("hops=1").solve([row], [[_q(row, chain[2]), _q(row, chain[1])]])[0]
    assert [t["answer"] is not None for t in res.trace] == [False, True] and res.answer is None


def test_memory_forgets_old_subanswers(test_rows):
    row = _row(test_rows, 3)
    graph = json.loads(row["graph"])
    chain, off = graph["chain"], sorted(set(graph["nodes"]) - set(graph["chain"]))[0]
    sub = [_q(row, chain[1]), _q(row, chain[2])]
    mem = make_solver("memory=1")
    assert mem.solve([row], [sub])[0].answer == row["answer"]
    assert mem.solve([row], [[*sub, _q(row, off)]])[0].answer is None  # the distractor pushed b out
    assert make_solver("hops=1").solve([row], [[*sub, _q(row, off)]])[0].answer == row["answer"]


def test_noise_is_deterministic_and_near_its_rate(test_rows):
    rows = [r for r in test_rows if r["depth"] == 2]
    noisy = make_solver("noise=0.3,seed=4")
    a = [r.answer for r in noisy.solve(rows, [r["subquestions"] for r in rows])]
    b = [r.answer for r in noisy.solve(rows[::-1], [r["subquestions"] for r in rows[::-1]])][::-1]
    assert a == b  # independent of batch order
    right = sum(x == r["answer"] for x, r in zip(a, rows)) / len(rows)
    assert 0.3 < right < 0.7  # two noisy answers (sub + final): 0.7 ** 2 = 0.49


def test_unknown_or_ambiguous_subquestions(test_rows):
    row = _row(test_rows, 2)
    chain = json.loads(row["graph"])["chain"]
    res = make_solver("hops=1").solve([row], [["What is the weather ?", f"{chain[0]} and {chain[1]} ?"]])[0]
    assert [t["answer"] for t in res.trace] == [None, None] and res.answered_share == 0.0


class _Counting:
    name, price_key = "counting", "solver"

    def __init__(self, fail=False):
        self.calls, self.fail = [], fail

    def solve(self, rows, subquestions):
        self.calls.append(len(rows))
        if self.fail:
            raise TimeoutError("solver timed out")
        return [SolveResult(answer=r["answer"]) for r in rows]


def test_solve_unique_dedups_and_absorbs_failures(test_rows):
    rows = [test_rows[0]] * 4 + [test_rows[1]] * 4
    subs = [["Q ?"]] * 4 + [[]] * 3 + [["other ?"]]
    counting = _Counting()
    out = solve_unique(counting, rows, subs)
    assert counting.calls == [3] and [r.answer for r in out] == [r["answer"] for r in rows]
    failing = solve_unique(_Counting(fail=True), rows, subs)
    assert all(r.answer is None and "TimeoutError" in r.error for r in failing)


@pytest.mark.parametrize("spec", ["hops=1", "hops=2", "noise=0.3", "memory=1"])
def test_written_work_reproduces_the_answers(test_rows, spec):
    """The program a symbolic solver writes, run by the calculator, gives exactly its answers."""
    from rlrefine.core.format import parse
    from rlrefine.data.world import stated_quantities
    from rlrefine.decomposers import make_decomposer
    from rlrefine.solvers.program import run

    subs = [parse(d.text).subquestions for d in make_decomposer("teacher").decompose(test_rows)]
    for res, sq, row in zip(make_solver(spec).solve(test_rows, subs), subs, test_rows):
        assert run(res.text, len(sq), stated_quantities(row["context"])) == (
            [t["answer"] for t in res.trace],
            res.answer,
        )


def test_free_text_replies_are_read_one_way():
    """Every free-text solver (hf, vllm, openai) reads replies through text_result: A<i> lines, then the answer."""
    from rlrefine.solvers.model import text_result

    read = text_result("A1: 5\nA3: oops\nSo 5 + 7.\n#### 1,200", ["q1", "q2"], 10, 4)
    assert read.answer == "1,200" and [t["answer"] for t in read.trace] == ["5", None]
    assert read.answered_share == 0.5 and (read.prompt_tokens, read.completion_tokens) == (10, 4)
    assert text_result("A1: 5\nA2: 7", ["q1", "q2"], 1, 1).answer is None  # never said its answer
    assert text_result("", [], 0, 0).answer is None


class _Tally:
    """A real solver with a count of the calls and problems that reach it."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.price_key = inner, inner.name, inner.price_key
        self.calls: list[int] = []

    def solve(self, rows, subquestions):
        self.calls.append(len(rows))
        return self.inner.solve(rows, subquestions)


def test_rewards_naming_one_solver_share_one_inner_call_per_batch(reward_batch):
    from rlrefine.solvers import shared_solver
    from rlrefine.training.rl import build_rewards

    completions, ids, columns = reward_batch
    funcs, _ = build_rewards([{"name": "solver"}, {"name": "partial"}, {"name": "solver", "label": "again"}], "hops=1")
    memo = shared_solver("hops=1")
    memo.inner = tally = _Tally(memo.inner)
    scores = [f(None, completions, ids, **columns) for f in funcs]
    assert tally.calls == [4]  # one call, for the 4 distinct decompositions of the batch's 5
    assert scores[0] == scores[2] == [1.0, 0.0, 0.0, 0.0, 1.0] and scores[1] == [1.0, 0.0, 0.5, 0.0, 1.0]
    [f(None, completions, ids, **columns) for f in funcs]  # the next step's batch, solved before: no call
    assert tally.calls == [4]


def test_memo_solves_failures_again_and_evicts_the_least_recent(test_rows):
    from rlrefine.solvers import MemoSolver

    rows = [dict(r) for r in test_rows[:4]]
    broken = {**rows[3], "graph": ""}  # the symbolic solver fails on this one (as a timed-out endpoint would)
    memo = MemoSolver(_Tally(make_solver("hops=1")), size=3)
    tally = memo.inner
    first = memo.solve([*rows[:2], broken], [r["subquestions"] for r in [*rows[:2], broken]])
    assert first[2].error and first[0].answer == rows[0]["answer"] and tally.calls == [3]
    memo.solve([broken], [broken["subquestions"]])
    assert tally.calls == [3, 1]  # a failure is not remembered: solved again
    memo.solve([rows[0]], [rows[0]["subquestions"]])  # a hit: rows[0] becomes the most recent
    assert tally.calls == [3, 1] and len(memo.memo) == 2
    memo.solve(rows[2:4], [r["subquestions"] for r in rows[2:4]])  # two new: over the size of 3
    assert tally.calls == [3, 1, 2] and len(memo.memo) == 3
    memo.solve([rows[0]], [rows[0]["subquestions"]])  # kept: it was used more recently than rows[1]
    assert tally.calls == [3, 1, 2]
    again = memo.solve([rows[1]], [rows[1]["subquestions"]])  # evicted: solved again, same answer
    assert tally.calls == [3, 1, 2, 1] and again[0].answer == rows[1]["answer"]
