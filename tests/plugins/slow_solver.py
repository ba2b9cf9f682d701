"""A solver for barrier and kill tests: the symbolic ``hops=1`` solver, ``seconds`` slower per call (a served 7B solver
on a large test split), so an evaluation outlasts a short process-group timeout. With ``RLREFINE_TEST_HOLD_SOLVER`` set
it blocks, so a run is still evaluating when a test kills it; the rerun leaves the variable unset."""

import os
import time

from rlrefine.solvers.symbolic import SymbolicSolver


class Slow(SymbolicSolver):
    def __init__(self, seconds: float = 1.0) -> None:
        super().__init__(hops=1)
        self.seconds, self.name = seconds, "slow"

    def solve(self, rows, subquestions):
        while os.environ.get("RLREFINE_TEST_HOLD_SOLVER"):
            time.sleep(1)
        time.sleep(self.seconds)
        return super().solve(rows, subquestions)
