"""Helpers shared by the test files (fixtures live in conftest.py)."""

from __future__ import annotations

import socket
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port nothing listens on now (another job may hold accelerate's default 29500)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def changed_tensors(before: Path, after: Path) -> set[str]:
    """Names of the weights that differ between two saved model folders (a name in only one of them counts)."""
    import torch
    from safetensors.torch import load_file

    a, b = load_file(Path(before) / "model.safetensors"), load_file(Path(after) / "model.safetensors")
    return {k for k in a.keys() | b.keys() if k not in a or k not in b or not torch.equal(a[k], b[k])}


HOLD_REWARD = f"{ROOT / 'tests' / 'plugins' / 'hold_reward.py'}:hold"  # see that file
