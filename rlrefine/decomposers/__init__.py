"""Decomposers behind one protocol (``rlrefine.types.Decomposer``): they write sub-questions in ``rlrefine.format``.

A decomposer is named by a spec (``rlrefine.registry``): ``none``, ``oracle``, ``teacher[:merge=P,...]``, a model
folder, ``hf:MODEL``, ``vllm:MODEL``, ``openai:MODEL[@URL]``, a mapping, ``file.py:attr``, ``package.module:attr`` or
an entry point in the group ``rlrefine.decomposers``; ``LABEL=SPEC`` names it in tables.

A decomposer may also have ``check(rows)``: it refuses data it cannot decompose (``UsageError``, one line), and the
commands call it on the whole split before any work (``check_rows``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rlrefine.registry import build
from rlrefine.types import Decomposed, Decomposer


def make_decomposer(spec: str | Mapping | Decomposer) -> Decomposer:
    """A decomposer from its spec; a bad spec fails naming what is valid."""
    return build("decomposer", spec)


def check_rows(decomposer: Decomposer, rows: Sequence[Mapping]) -> None:
    """Let a decomposer refuse data it cannot decompose, on the whole split and before any work (the oracle on
    problems without gold sub-questions)."""
    check = getattr(decomposer, "check", None)
    if callable(check):
        check(rows)


__all__ = ["Decomposed", "Decomposer", "check_rows", "make_decomposer"]
