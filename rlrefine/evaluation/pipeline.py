"""Decompose: the first stage of the paper's two-stage pipeline, batched and cached. Solving and grading are one
function, ``rlrefine.solvers.solve_and_grade``, which rewards, evaluation, RFT and SFT data share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from rlrefine.core.atomic import append_jsonl, read_jsonl
from rlrefine.core.protocols import Decomposed, Decomposer


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
