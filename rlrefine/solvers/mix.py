"""A mix of frozen solvers, one per problem: training against it gives a decomposer a reason to listen to the
solver (in a dialogue, the answers show which solver it is talking to) and to write what several solvers can use."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from rlrefine.core.protocols import SolveResult, UsageError


class SolverMix:
    """Each problem is solved by one of ``solvers``, always the same one (by a hash of its ``id``, or of its question
    when it has none): the rollouts of one GRPO group talk to one solver, and a reward that names this mix grades
    each problem with the solver its rollouts talked to. Priced as its first solver.

    ``{name: mix, solvers: [hops=1, hops=2]}`` as ``--train_solver``, or as any reward's ``solver``."""

    def __init__(self, solvers: Sequence[str | Mapping] = ("hops=1", "hops=2")) -> None:
        from rlrefine.solvers.base import shared_solver

        if isinstance(solvers, (str, Mapping)) or len(solvers) < 1:
            raise UsageError(f"solver mix: solvers must be a list of solver specs, got {solvers!r}")
        self.solvers = [shared_solver(s) for s in solvers]  # each remembers its results, and has version and requires
        self.name = f"mix[{'|'.join(s.name for s in self.solvers)}]"
        self.price_key = self.solvers[0].price_key
        self.version = "|".join(str(s.version) for s in self.solvers)
        self.requires = tuple(dict.fromkeys(r for s in self.solvers for r in s.requires))

    def of(self, row: Mapping):
        """The solver that answers this problem."""
        key = str(row.get("id") if row.get("id") is not None else row["question"])
        return self.solvers[int(hashlib.sha256(key.encode()).hexdigest(), 16) % len(self.solvers)]

    def solve(self, rows: Sequence[Mapping], subquestions: Sequence[Sequence[str]]) -> list[SolveResult]:
        """One batched call per solver of the mix, on the problems that are its."""
        out: list[SolveResult | None] = [None] * len(rows)
        for solver in self.solvers:
            mine = [i for i, row in enumerate(rows) if self.of(row) is solver]
            if mine:
                for i, result in zip(mine, solver.solve([rows[i] for i in mine], [subquestions[i] for i in mine])):
                    out[i] = result
        return out  # type: ignore[return-value]
