"""Distillation data, as TRL prompt-completion conversations.

Decomposer data (the paper's SD-*): ``sd-t`` all teacher decompositions, flaws included (a teacher reply that holds
no decomposition at all, ``format.parse(...).parseable`` false, is left out and counted in the log, as in
``rlrefine teach``); ``sd-r`` only those that led the filter solver to the gold answer (rejection sampling);
``oracle`` gold decompositions (the learnability check). Solver data (SE-*): ``onehop`` gold decompositions answered one hop at a time (the neural solver of
the default solver set); ``se-t`` the teacher's decompositions with the teacher solver's worked sub-answers
and answer; ``se-a`` the teacher's decompositions with the gold final answer only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from datasets import Dataset

from rlrefine.core.format import decomposer_messages, parse, solver_messages
from rlrefine.core.protocols import BackendError, Decomposed, UsageError
from rlrefine.data import require
from rlrefine.decomposers import make_decomposer
from rlrefine.solvers import make_solver, solve_and_grade

DECOMPOSER_VARIANTS = ("sd-t", "sd-r", "oracle")
SOLVER_VARIANTS = ("onehop", "se-t", "se-a")
log = logging.getLogger(__name__)
TEACHER_SOLVER = "hops=2"  # the solver the flawed teacher writes for: its worked answers are SE-T's targets


def _answered(rows: Sequence[Mapping], decomposed: Sequence[Decomposed]) -> tuple[list, list]:
    """The rows whose teacher request succeeded: a failed one (``error``) is never trained on, not even as an
    empty decomposition. Use ``rlrefine teach`` to retry failures and resume."""
    kept = [(row, d) for row, d in zip(rows, decomposed) if not d.error]
    if not kept:
        raise BackendError(f"every teacher request failed, e.g. {decomposed[0].error}")
    if len(kept) < len(rows):
        log.warning("%d of %d teacher requests failed; those problems are left out", len(rows) - len(kept), len(rows))
    return [r for r, _ in kept], [d for _, d in kept]


def _decomposed(rows, role: str, variant: str, valid: tuple, oracle_variant: str, teacher: str) -> tuple[list, list]:
    """The training rows and their decompositions, by the oracle (``oracle_variant``) or the teacher."""
    if variant not in valid:
        raise UsageError(f"unknown {role} data {variant!r}; valid: {', '.join(valid)}")
    if not rows:
        raise UsageError("no training problems: the training split is empty")
    source = make_decomposer("oracle" if variant == oracle_variant else teacher)
    require(f"decomposer {source.name!r}", getattr(source, "requires", ()), rows, "the training data")
    return _answered(rows, source.decompose(rows))


def decomposer_dataset(
    rows: Sequence[Mapping],
    variant: str = "sd-t",
    teacher: str = "teacher",
    filter_solver: str = "hops=1",
    instruction: str | None = "",
) -> Dataset:
    """Prompt = the decomposer's messages, completion = the teacher's (or oracle's) decomposition text.

    Every row carries ``correct``: whether ``filter_solver`` answered right given that decomposition.
    """
    rows, decomposed = _decomposed(rows, "decomposer", variant, DECOMPOSER_VARIANTS, "oracle", teacher)
    parsed = [parse(d.text) for d in decomposed]
    if variant != "oracle" and not all(p.parseable for p in parsed):
        kept = [(row, d, p) for row, d, p in zip(rows, decomposed, parsed) if p.parseable]
        if not kept:
            raise UsageError(f"no teacher reply held a decomposition, e.g. {decomposed[0].text[:200]!r}")
        log.warning("%d of %d teacher replies held no decomposition; left out", len(rows) - len(kept), len(rows))
        rows, decomposed, parsed = (list(x) for x in zip(*kept))
    texts = [d.text for d in decomposed]
    graded = solve_and_grade(rows, [p.subquestions for p in parsed], make_solver(filter_solver))
    correct = [None if g["score"] is None else g["score"] == 1.0 for g in graded]  # None: the solve failed
    examples = [
        {
            "prompt": decomposer_messages(row["context"], row["question"], instruction),
            "completion": [{"role": "assistant", "content": text}],
            "id": row["id"],
            "correct": ok,
        }
        for row, text, ok in zip(rows, texts, correct)
        if variant != "sd-r" or ok is True
    ]
    if not examples:
        raise UsageError(f"{variant}: no teacher decomposition led {filter_solver} to the gold answer")
    return Dataset.from_list(examples)


def solver_dataset(
    rows: Sequence[Mapping], variant: str = "onehop", teacher: str = "teacher", instruction: str | None = ""
) -> Dataset:
    """Prompt = the solver's messages (question + sub-questions), completion = worked answers or the answer."""
    rows, decomposed = _decomposed(rows, "solver", variant, SOLVER_VARIANTS, "onehop", teacher)
    subs = [parse(d.text).subquestions for d in decomposed]
    if variant == "se-a":
        targets = [f"The answer is: {row['answer']}" for row in rows]
    else:
        worked = make_solver("hops=1" if variant == "onehop" else TEACHER_SOLVER).solve(rows, subs)
        targets = [w.text for w in worked]
    return Dataset.from_list(
        [
            {
                "prompt": solver_messages(row["context"], row["question"], list(sq), instruction),
                "completion": [{"role": "assistant", "content": target}],
                "id": row["id"],
            }
            for row, sq, target in zip(rows, subs, targets)
        ]
    )
