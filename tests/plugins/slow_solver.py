"""A solver for barrier tests: the symbolic ``hops=1`` solver, ``seconds`` slower per call (a served 7B solver on a
large test split), so an evaluation outlasts a short process-group timeout."""

import time

from rlrefine.solvers.symbolic import SymbolicSolver


class Slow(SymbolicSolver):
    def __init__(self, seconds: float = 1.0) -> None:
        super().__init__(hops=1)
        self.seconds, self.name = seconds, "slow"

    def solve(self, rows, subquestions):
        time.sleep(self.seconds)
        return super().solve(rows, subquestions)
