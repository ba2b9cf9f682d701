"""Print the GPU lock: the pins of .ci/constraints.txt for rlrefine's own dependencies (the stack README's numbers
depend on), the rest left to pip. vLLM pins torch and brings its own server stack (fastapi, ...), which the full CPU
lock would contradict; tests/test_install.py checks this file is what this script prints."""

import importlib.metadata
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def name(requirement: str) -> str:
    return re.split(r"[<>=!~\\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def gpu_constraints() -> str:
    own = {name(d) for d in importlib.metadata.requires("rlrefine") if "extra ==" not in d}  # as installed
    lines = (ROOT / ".ci" / "constraints.txt").read_text().splitlines()
    pins = [line for line in lines if line and not line.startswith("#") and name(line) in own]
    head = [
        "# The GPU lock: .ci/constraints.txt's pins of rlrefine's own dependencies; vLLM (the extra: >=0.27,<0.31)",
        "# and what it brings are left to pip. Written by .ci/gpu_constraints.py; resolved, not yet run on a GPU.",
    ]
    return "\n".join(head + pins) + "\n"


if __name__ == "__main__":
    print(gpu_constraints(), end="")
