"""Solvers behind one protocol, and the one function that turns a solver spec into a solver."""

from __future__ import annotations

from rlrefine.solvers.base import Solver, SolveResult, solve_unique
from rlrefine.solvers.symbolic import SymbolicSolver

DEFAULT_SOLVERS = ["hops=1", "hops=2", "noise=0.1", "memory=1"]
SYMBOLIC_KEYS = {"hops": int, "noise": float, "memory": int, "seed": int}
SPEC_HELP = "symbolic 'hops=K[,noise=P][,memory=M][,seed=S]' (also 'noise=P', 'memory=M' with hops=1)"


def make_solver(spec: str | Solver) -> Solver:
    """A solver from its spec string; a bad spec fails naming what is valid."""
    if not isinstance(spec, str):
        return spec
    kwargs = {}
    for part in filter(None, spec.replace(" ", "").split(",")):
        key, sep, value = part.partition("=")
        if not sep or key not in SYMBOLIC_KEYS:
            raise ValueError(f"unknown solver {spec!r}; valid: {SPEC_HELP}; defaults: {', '.join(DEFAULT_SOLVERS)}")
        try:
            kwargs[key] = SYMBOLIC_KEYS[key](value)
        except ValueError:
            raise ValueError(f"solver {spec!r}: {key} must be {SYMBOLIC_KEYS[key].__name__}, got {value!r}") from None
    if not kwargs:
        raise ValueError(f"unknown solver {spec!r}; valid: {SPEC_HELP}")
    return SymbolicSolver(**kwargs)


__all__ = ["DEFAULT_SOLVERS", "SolveResult", "Solver", "SymbolicSolver", "make_solver", "solve_unique"]
