"""Solvers behind one protocol, and the one function that turns a solver spec into a solver."""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Mapping

from rlrefine.solvers.base import Solver, SolveResult, solve_unique
from rlrefine.solvers.symbolic import SymbolicSolver

DEFAULT_SOLVERS = ["hops=1", "hops=2", "noise=0.1", "memory=1", "neural"]
SYMBOLIC_KEYS = {"hops": int, "noise": float, "memory": int, "seed": int}
SPEC_HELP = (
    "symbolic 'hops=K[,noise=P][,memory=M][,seed=S]' (also 'noise=P', 'memory=M' with hops=1), "
    "'neural' (the bundled one-hop solver), 'model:FOLDER' (a trained world solver), or a real model: "
    "'hf:PATH_OR_ID', 'vllm:MODEL', 'openai:MODEL[@BASE_URL]' or a mapping {backend: hf|vllm|openai, model: ...}"
)


def make_solver(spec: str | Mapping | Solver) -> Solver:
    """A solver from its spec string; a bad spec fails naming what is valid."""
    from rlrefine.backends import is_backend_spec, make_backend_solver

    if is_backend_spec(spec):  # hf:, vllm:, openai:, or a {backend: ...} mapping
        return make_backend_solver(spec)
    if not isinstance(spec, str):
        return spec
    if spec == "neural" or spec.startswith("model:"):
        from rlrefine.models import resolve
        from rlrefine.solvers.model import ModelSolver

        path = resolve("onehop-solver" if spec == "neural" else spec.removeprefix("model:"))
        if not os.path.isdir(path):
            raise ValueError(f"solver {spec!r}: no model folder at {path}")
        return ModelSolver(path, name=spec)
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


class MemoSolver:
    """A solver that remembers recent results: rewards that need the same solve share one solver call."""

    def __init__(self, solver: Solver, size: int = 8192) -> None:
        self.inner, self.size = solver, size
        self.name, self.price_key, self.version = solver.name, solver.price_key, getattr(solver, "version", "")
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
    """One frozen instance per spec per process (a neural solver is loaded once), with a memo."""
    key = spec if isinstance(spec, str) else json.dumps(spec, sort_keys=True, default=str)
    if key not in _SHARED:
        _SHARED[key] = MemoSolver(make_solver(spec))
    return _SHARED[key]


__all__ = [
    "DEFAULT_SOLVERS",
    "MemoSolver",
    "SolveResult",
    "Solver",
    "SymbolicSolver",
    "make_solver",
    "shared_solver",
    "solve_unique",
]
