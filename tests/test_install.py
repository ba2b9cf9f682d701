"""What README's install line installs is what was tested: the lock (``.ci/constraints.txt``) pins every package, the
install line uses it, this interpreter holds exactly those versions, and the GPU extra stays inside the window the
pinned TRL supports."""

import importlib.metadata as metadata
import re
import runpy

import pytest
from helpers import ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

LOCK = ROOT / ".ci" / "constraints.txt"


def _requires(extra: str | None = None) -> list[Requirement]:
    """rlrefine's requirements as installed (its metadata, from pyproject.toml): the package's own, or an extra's."""
    found = [Requirement(r) for r in metadata.requires("rlrefine")]
    env = {"extra": extra or ""}
    return [r for r in found if (r.marker is None) == (extra is None) and (r.marker is None or r.marker.evaluate(env))]


def _pins(path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    pins = {}
    for line in lines:
        requirement = Requirement(line)
        (spec,) = requirement.specifier  # one exact version each, nothing looser
        assert spec.operator == "==", line
        pins[canonicalize_name(requirement.name)] = spec.version
    return pins


def test_readme_installs_through_the_lock():
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    install = block.splitlines()[0]
    installs = [part for part in install.split("&&") if "pip install" in part]
    assert installs and all("-c .ci/constraints.txt" in part for part in installs), install
    assert '"torch==2.13.0"' in install  # torch is pinned by the line itself (the lock leaves it to GPU users)


@pytest.mark.lock
def test_this_environment_holds_the_locked_versions():
    """Every package of the lock is installed at its locked version: a fresh machine gets the set that was tested, and
    a stale dev venv says so here instead of in a number that moved."""
    pins = _pins(LOCK)
    wanted = _requires() + _requires("dev")
    missing = {canonicalize_name(r.name) for r in wanted} - set(pins) - {"torch"}
    assert not missing, f"not in the lock: {sorted(missing)}"
    drift = {}
    for name, version in pins.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            drift[name] = (version, installed)
    assert not drift, f"locked vs installed: {drift}; reinstall with README's first command"
    for requirement in wanted:  # and the lock satisfies the package's own ranges
        name = canonicalize_name(requirement.name)
        if name != "torch":
            assert requirement.specifier.contains(pins[name], prereleases=True), (requirement, pins[name])


@pytest.mark.lock
def test_gpu_lock_is_the_lock_of_rlrefines_own_dependencies():
    script = runpy.run_path(str(ROOT / ".ci" / "gpu_constraints.py"))
    assert (ROOT / ".ci" / "constraints-gpu.txt").read_text() == script["gpu_constraints"]()
    own = {canonicalize_name(r.name) for r in _requires()}
    assert set(_pins(ROOT / ".ci" / "constraints-gpu.txt")) == own - {"torch"}


def test_the_vllm_extra_stays_in_the_window_trl_supports():
    """TRL checks the vLLM version at import; the extra must not let pip pick one outside TRL's window."""
    (ours,) = [r for r in _requires("vllm") if r.name == "vllm"]
    (trls,) = [Requirement(r) for r in metadata.requires("trl") if r.startswith("vllm")]
    candidates = [Version(f"0.{minor}.{patch}") for minor in range(10, 60) for patch in range(3)]
    allowed = [v for v in candidates if v in ours.specifier]
    assert allowed and all(v in trls.specifier for v in allowed), (ours.specifier, trls.specifier)
    # 0.22-0.26 pin torch 2.11.0 and 0.31 caps transformers below 5.18: only 0.27-0.30 go with the locked stack
    assert Version("0.26.0") not in ours.specifier and Version("0.31.0") not in ours.specifier
