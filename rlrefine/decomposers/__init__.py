"""Decomposers behind one protocol (``rlrefine.core.protocols.Decomposer``): they write sub-questions in ``rlrefine.core.format``.

A decomposer is named by a spec (``rlrefine.core.registry``): ``none``, ``oracle``, ``teacher[:merge=P,...]``, a model
folder, ``hf:MODEL``, ``vllm:MODEL``, ``openai:MODEL[@URL]``, a mapping, ``file.py:attr``, ``package.module:attr`` or
an entry point in the group ``rlrefine.decomposers``; ``LABEL=SPEC`` names it in tables. A decomposer that can only
work on some data names the columns it reads in ``requires`` (the oracle: gold ``subquestions``; the flawed teacher:
the world's ``graph``), and is refused on data without them before any work (``rlrefine.data.require``).
"""

from __future__ import annotations

from collections.abc import Mapping

from rlrefine.core.protocols import Decomposed, Decomposer
from rlrefine.core.registry import build


def make_decomposer(spec: str | Mapping | Decomposer) -> Decomposer:
    """A decomposer from its spec; a bad spec fails naming what is valid."""
    return build("decomposer", spec)


__all__ = ["Decomposed", "Decomposer", "make_decomposer"]
