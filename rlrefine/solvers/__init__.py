"""Solvers behind one protocol (``rlrefine.core.protocols.Solver``): symbolic, neural, and real models on any engine.

A solver is named by a spec (``rlrefine.core.registry``): ``hops=1,noise=0.1`` (symbolic), ``neural``, ``model:FOLDER``,
``hf:MODEL``, ``vllm:MODEL``, ``openai:MODEL[@URL]``, a mapping, ``file.py:attr``, ``package.module:attr`` or an
entry point in the group ``rlrefine.solvers``.
"""

from __future__ import annotations

from collections.abc import Mapping

from rlrefine.core.protocols import Solver, SolveResult
from rlrefine.core.registry import build
from rlrefine.solvers.base import MemoSolver, shared_solver, solve_and_grade, solve_unique

DEFAULT_SOLVERS = ["hops=1", "hops=2", "noise=0.1", "memory=1", "neural"]


def make_solver(spec: str | Mapping | Solver) -> Solver:
    """A solver from its spec; a bad spec fails naming what is valid."""
    return build("solver", spec)


__all__ = [
    "DEFAULT_SOLVERS", "MemoSolver", "SolveResult", "Solver", "make_solver", "shared_solver", "solve_and_grade",
    "solve_unique",
]  # fmt: skip
