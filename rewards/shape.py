"""Shape rewards that need no solver: format, cost (the paper's cost analysis), and the sub-question cap.

>>> format_validity(None, ["Q1: How many cards does Pia have ?", "Pia Pia"])
[1.0, 0.0]
>>> four = "Q1: a ?\\nQ2: b ?\\nQ3: c ?\\nQ4: d ?"
>>> format_validity(None, [four]), format_validity(None, [four], cap=4), format_validity(None, [four], cap=None)
([0.0], [1.0], [1.0])
>>> SubquestionCost(0.1)(None, ["Q1: a ?\\nQ2: b ?", "No decomposition ."])
[-0.2, 0.0]
>>> SubquestionCap(3)(None, ["Q1: a ?\\nQ2: b ?\\nQ3: c ?\\nQ4: d ?"])
[-1.0]
"""

from __future__ import annotations

from rlrefine.core.format import MAX_SUBQUESTIONS, completion_text, parse


def format_validity(
    prompts, completions, completion_ids=None, cap: int | None = MAX_SUBQUESTIONS, **kwargs
) -> list[float]:
    """1 when the completion follows the sub-question format exactly (numbered questions, no repeats, at most ``cap``
    of them; ``cap: null`` for none)."""
    return [float(parse(completion_text(c), cap).valid) for c in completions]


class SubquestionCost:
    """Minus ``per_subquestion`` for each sub-question: every one is a solver call that costs tokens."""

    __name__ = "cost"

    def __init__(self, per_subquestion: float = 0.05) -> None:
        self.per_subquestion = per_subquestion

    def __call__(self, prompts, completions, completion_ids=None, **kwargs) -> list[float]:
        return [-self.per_subquestion * parse(completion_text(c)).count or 0.0 for c in completions]


class TokenCost:
    """Minus ``per_token`` for each generated token (the decomposer's own share of the bill)."""

    __name__ = "token_cost"

    def __init__(self, per_token: float = 0.002) -> None:
        self.per_token = per_token

    def __call__(self, prompts, completions, completion_ids=None, **kwargs) -> list[float]:
        ids = completion_ids or [completion_text(c).split() for c in completions]
        return [-self.per_token * len(i) for i in ids]


class SubquestionCap:
    """-1 for a decomposition with more than ``cap`` sub-questions (the paper's cap of three was best)."""

    def __init__(self, cap: int = MAX_SUBQUESTIONS) -> None:
        self.cap, self.__name__ = cap, f"cap[{cap}]"

    def __call__(self, prompts, completions, completion_ids=None, **kwargs) -> list[float]:
        return [-float(parse(completion_text(c)).count > self.cap) for c in completions]
