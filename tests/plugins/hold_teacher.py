"""A teacher for kill tests: any decomposer (``inner``, a spec), but with ``RLREFINE_TEST_HOLD_AFTER=N`` set it blocks
once it has decomposed N problems in its process, so a command is still running when the test kills it, however fast
or slow the machine is. The rerun leaves the variable unset and goes through (a variable, not a setting: the rerun must
not differ). It keeps the inner decomposer's name, so the rerun resumes the same teacher's rows."""

import os
import time

from rlrefine.decomposers import make_decomposer


class HoldTeacher:
    def __init__(self, inner: dict) -> None:
        self.inner = make_decomposer(inner)
        self.name, self.price_key = self.inner.name, self.inner.price_key
        self.decomposed = 0

    def decompose(self, rows):
        at = os.environ.get("RLREFINE_TEST_HOLD_AFTER")
        while at and self.decomposed >= int(at):
            time.sleep(1)
        self.decomposed += len(rows)
        return self.inner.decompose(rows)
