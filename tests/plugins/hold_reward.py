"""A reward for kill tests: always 0, but with ``RLREFINE_TEST_HOLD_AT=N`` set it blocks from step N on, so a run that
saves a checkpoint at step N is still running when the test kills it, however fast or slow the machine is. The
resumed run leaves the variable unset and goes through (a variable, not a setting: the resume must not differ)."""

import os
import time


def hold(prompts, completions, trainer_state=None, **kwargs):
    at = os.environ.get("RLREFINE_TEST_HOLD_AT")
    while at and trainer_state is not None and trainer_state.global_step >= int(at):
        time.sleep(1)
    return [0.0] * len(completions)
