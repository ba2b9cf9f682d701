"""Session-wide test setup: offline, one thread, small data built once."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

import pytest  # noqa: E402

from rlrefine.world import generate, world_config  # noqa: E402


@pytest.fixture(scope="session")
def world():
    """The default world at test size: 400 train / 100 validation / 200 test problems."""
    return generate(world_config("small"))


@pytest.fixture(scope="session")
def test_rows(world):
    return list(world["test"])
