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

from rlrefine.core.format import (
    NO_DECOMPOSITION,
    decomposer_messages,
    dynamic_messages,
    numbered,
    parse,
    render,
    solver_messages,
)
from rlrefine.core.protocols import BackendError, Decomposed, UsageError
from rlrefine.data import require
from rlrefine.decomposers import make_decomposer
from rlrefine.solvers import make_solver, solve_and_grade
from rlrefine.solvers.base import records

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


def _decompositions(rows, variant: str, teacher: str) -> tuple[list, list, list]:
    """The training rows, their teacher (or oracle) replies and the replies parsed; a reply that holds no
    decomposition is left out and counted in the log."""
    rows, decomposed = _decomposed(rows, "decomposer", variant, DECOMPOSER_VARIANTS, "oracle", teacher)
    parsed = [parse(d.text) for d in decomposed]
    if variant != "oracle" and not all(p.parseable for p in parsed):
        kept = [(row, d, p) for row, d, p in zip(rows, decomposed, parsed) if p.parseable]
        if not kept:
            raise UsageError(f"no teacher reply held a decomposition, e.g. {decomposed[0].text[:200]!r}")
        log.warning("%d of %d teacher replies held no decomposition; left out", len(rows) - len(kept), len(rows))
        rows, decomposed, parsed = (list(x) for x in zip(*kept))
    return rows, decomposed, parsed


def decomposer_dataset(
    rows: Sequence[Mapping],
    variant: str = "sd-t",
    teacher: str = "teacher",
    filter_solver: str = "hops=1",
    instruction: str | None = "",
    rollout: str = "static",
) -> Dataset:
    """Prompt = the decomposer's messages, completion = the teacher's (or oracle's) decomposition text; with
    ``rollout="dynamic"``, the same decompositions as dialogues (``dialogues``).

    Every row carries ``correct``: whether ``filter_solver`` answered right given that decomposition.
    """
    rows, decomposed, parsed = _decompositions(rows, variant, teacher)
    if rollout == "dynamic":
        return dialogues(rows, parsed, variant, filter_solver, instruction)
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


class Replay:
    """A decomposition written in advance, asked one sub-question per round: how a static teacher's (or the oracle's)
    decomposition becomes a dialogue with the solver's real answers."""

    name = "replay"

    def __init__(self, rows: Sequence[Mapping], subquestions: Sequence[Sequence[str]]) -> None:
        self.plan = {id(r): list(sq) for r, sq in zip(rows, subquestions)}

    def next_subquestion(self, rows, histories) -> list[Decomposed]:
        plans = [self.plan[id(r)] for r in rows]
        return [Decomposed(render(p[len(h) : len(h) + 1])) for p, h in zip(plans, histories)]


def dialogues(rows: list, parsed: list, variant: str, filter_solver: str, instruction: str | None) -> Dataset:
    """Decomposer data for ``--rollout dynamic``: each decomposition asked one sub-question per round of
    ``filter_solver`` (``evaluation.dynamic.converse``), one example per turn: the dialogue so far, with the solver's
    real answers, as the prompt; the next sub-question, or ``No decomposition .`` after the last, as the completion.
    SD-R keeps the dialogues whose final answer was right; a dialogue the solver failed in (no answers to show) is
    left out and counted in the log."""
    from rlrefine.evaluation.dynamic import ROUND_LIMIT, converse

    plans, solver = Replay(rows, [p.subquestions for p in parsed]), make_solver(filter_solver)
    _, results, histories = converse(plans, solver, rows, ROUND_LIMIT)
    examples, failed = [], 0
    for row, graded, history in zip(rows, records(rows, results), histories):
        failed += graded["score"] is None
        ok = graded["score"] == 1.0
        if graded["score"] is None or (variant == "sd-r" and not ok):
            continue
        closing = [NO_DECOMPOSITION] if len(history) < ROUND_LIMIT else []  # at the limit the loop ends anyway
        turns = [numbered(k, q) for k, (q, _) in enumerate(history, 1)] + closing
        for k, turn in enumerate(turns):
            examples.append(
                {
                    "prompt": dynamic_messages(row["context"], row["question"], history[:k], instruction),
                    "completion": [{"role": "assistant", "content": turn}],
                    "id": row["id"],
                    "correct": ok,
                }
            )
    if failed:
        log.warning("%d of %d dialogues failed at the solver (%s); left out", failed, len(rows), solver.name)
    if not examples:
        raise UsageError(f"{variant}: no teacher dialogue led {solver.name} to the gold answer")
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
