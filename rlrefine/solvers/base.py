"""What every solver shares: one batched call with identical problems solved once; solve-and-grade, the one path
from sub-questions to a score (rewards, evaluation, RFT and SFT data all take it, with one error policy: a failed
solve has no score, ``None``, never a 0 that would read as a wrong answer); and the process-wide frozen solvers that
rewards share (a neural solver is loaded once; rewards naming one solver share its results)."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence

from rlrefine.core.grading import grade
from rlrefine.core.protocols import Solver, SolveResult
from rlrefine.core.registry import build


def solve_unique(solver: Solver, rows: Sequence[Mapping], subquestions: Sequence[Sequence[str]]) -> list[SolveResult]:
    """One batched solver call in which identical (problem, sub-questions) pairs are solved once.

    GRPO samples several completions per prompt and many are identical; the solver need not see them twice.
    A solver that raises turns into per-sample errors, never an exception for the caller.
    """
    keys = [(row.get("id"), row["context"], row["question"], tuple(sq)) for row, sq in zip(rows, subquestions)]
    first: dict[tuple, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    unique = list(first.values())
    try:
        solved = solver.solve([rows[i] for i in unique], [list(subquestions[i]) for i in unique])
        if len(solved) != len(unique):
            raise RuntimeError(f"solver {solver.name} returned {len(solved)} results for {len(unique)} problems")
    except Exception as exc:  # noqa: BLE001 - any solver failure becomes a skipped sample
        solved = [SolveResult(answer=None, error=f"{type(exc).__name__}: {exc}") for _ in unique]
    by_key = dict(zip((keys[i] for i in unique), solved))
    return [by_key[key] for key in keys]


def solve_and_grade(
    rows: Sequence[Mapping],
    subquestions: Sequence[Sequence[str]],
    solver: Solver,
    failed: Sequence[str | None] = (),
) -> list[dict]:
    """One graded record per problem (``records``) from one batched solver call. A problem whose decomposition
    ``failed`` is an error (no score), not a direct solve."""
    results = solve_unique(solver, rows, subquestions)
    for i, reason in enumerate(failed):
        if reason:
            results[i] = SolveResult(answer=None, error=f"decomposer: {reason}")
    return records(rows, results)


def records(rows: Sequence[Mapping], results: Sequence[SolveResult]) -> list[dict]:
    """One graded record per problem from the solver's results (static or dynamic: grading is the same); ``score`` is
    None where the solve failed."""
    return [
        {
            "id": row.get("id"),
            "answer": res.answer,
            "score": None if res.error else grade(res.answer, row["answer"], row.get("metric") or "numeric"),
            "error": res.error,
            "answered_share": res.answered_share,
            "solver_prompt_tokens": res.prompt_tokens,
            "solver_completion_tokens": res.completion_tokens,
        }
        for row, res in zip(rows, results)
    ]


class MemoSolver:
    """A solver that remembers recent results: rewards that need the same solve share one solver call."""

    def __init__(self, solver: Solver, size: int = 8192) -> None:
        self.inner, self.size = solver, size
        self.name, self.price_key, self.version = solver.name, solver.price_key, getattr(solver, "version", "")
        self.requires = getattr(solver, "requires", ())
        self.memo: OrderedDict[tuple, SolveResult] = OrderedDict()

    def solve(self, rows, subquestions) -> list[SolveResult]:
        keys = [
            (r.get("id"), r["context"], r["question"], r.get("graph"), tuple(sq)) for r, sq in zip(rows, subquestions)
        ]
        todo = [i for i, k in enumerate(keys) if k not in self.memo]
        fresh = (
            dict(
                zip((keys[i] for i in todo), self.inner.solve([rows[i] for i in todo], [subquestions[i] for i in todo]))
            )
            if todo
            else {}
        )
        out = [fresh[k] if k in fresh else self.memo[k] for k in keys]
        for key, res in fresh.items():
            if res.error is None:  # failures are retried next time, not remembered
                self.memo[key] = res
        for key in keys:
            if key in self.memo:
                self.memo.move_to_end(key)
        while len(self.memo) > self.size:
            self.memo.popitem(last=False)
        return out


_SHARED: dict[str, MemoSolver] = {}


def shared_solver(spec: str | Mapping) -> MemoSolver:
    """One frozen instance per spec per process, with a memo."""
    key = spec if isinstance(spec, str) else json.dumps(spec, sort_keys=True, default=str)
    if key not in _SHARED:
        _SHARED[key] = MemoSolver(build("solver", spec))
    return _SHARED[key]
