"""Decompose -> solve -> grade: the two-stage pipeline of the paper, batched, shared by rewards and eval."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from rlrefine.atomic import append_jsonl, read_jsonl
from rlrefine.format import Decomposition
from rlrefine.grading import grade
from rlrefine.protocols import Decomposed, Decomposer, Solver, SolveResult
from rlrefine.solvers.base import solve_unique


def decompose(
    decomposer: Decomposer,
    rows: Sequence[Mapping],
    batch_size: int = 64,
    cache: str | Path | None = None,
    progress: bool = False,
) -> list[Decomposed]:
    """All decompositions for ``rows``, in batches; with ``cache`` (JSONL) finished rows survive a kill.

    A failed decomposition (``error`` set by a backend) is returned but never cached: a rerun retries it.
    """
    done = {r.pop("id"): Decomposed(**r) for r in read_jsonl(cache)} if cache else {}
    todo = [row for row in rows if row["id"] not in done]
    bar = tqdm(
        total=len(rows), initial=len(rows) - len(todo), desc=f"decompose {decomposer.name}", disable=not progress
    )
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        out = decomposer.decompose(chunk)
        for row, d in zip(chunk, out):
            done[row["id"]] = d
        if cache:
            append_jsonl(cache, [{"id": row["id"], **vars(d)} for row, d in zip(chunk, out) if d.error is None])
        bar.update(len(chunk))
    bar.close()
    return [done[row["id"]] for row in rows]


def solve_and_grade(
    rows: Sequence[Mapping], decompositions: Sequence[Decomposition], solver: Solver, failed: Sequence[str | None] = ()
) -> list[dict]:
    """One record per problem: the solver's answer, its grade and the token counts. A problem whose
    decomposition ``failed`` is an error (no score), not a direct solve."""
    results = solve_unique(solver, rows, [d.subquestions for d in decompositions])
    for i, reason in enumerate(failed):
        if reason:
            results[i] = SolveResult(answer=None, error=f"decomposer: {reason}")
    return records(rows, results)


def records(rows: Sequence[Mapping], results: Sequence[SolveResult]) -> list[dict]:
    """One graded record per problem from the solver's results (static or dynamic: grading is the same)."""
    return [
        {
            "id": row["id"],
            "answer": res.answer,
            "score": None if res.error else grade(res.answer, row["answer"], row.get("metric") or "numeric"),
            "error": res.error,
            "answered_share": res.answered_share,
            "solver_prompt_tokens": res.prompt_tokens,
            "solver_completion_tokens": res.completion_tokens,
        }
        for row, res in zip(rows, results)
    ]
