"""The package's shape: scripts run by path import it fine, and its modules import each other without a circle."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rlrefine"


@pytest.mark.slow  # starts train.py in a new interpreter
def test_no_module_shadows_the_standard_library():
    """`python rlrefine/train.py` puts rlrefine/ first on sys.path: a module named like a stdlib one (numbers.py,
    types.py) would be imported by torch in its place."""
    names = {p.stem for p in PACKAGE.rglob("*.py")}
    assert not names & set(sys.stdlib_module_names)
    done = subprocess.run([sys.executable, str(PACKAGE / "train.py"), "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--algorithm" in done.stdout, done.stderr[-2000:]


def _imports(path: Path, module: str) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            found.update([base, *(f"{base}.{a.name}" for a in node.names)])
    return found


def test_no_import_circle():
    """Types live apart from what builds things (rlrefine.core.protocols), so no module needs a factory for a type."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {m: {i for i in _imports(p, m) if i in modules and i != m} for m, p in modules.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != 1, f"import circle: {' -> '.join([*trail, node, nxt])}"
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_import_contracts_hold():
    """pyproject.toml's import-linter contracts: each layer imports only those below it, solvers and decomposers never
    each other, engines and data never each other, and the types plugins return nothing of rlrefine."""
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and "0 broken" in done.stdout, done.stdout[-3000:]


def test_rewards_import_only_the_core_and_the_solvers():
    """A reward is a plain TRL function over a frozen solver: it knows no trainer, evaluation or command (the rewards/
    folder is mapped into the package, outside what import-linter sees)."""
    for path in (ROOT / "rewards").glob("*.py"):
        ours = {i for i in _imports(path, f"rlrefine.rewards.{path.stem}") if i.startswith("rlrefine")}
        allowed = ("rlrefine.core", "rlrefine.solvers", "rlrefine.rewards")
        assert {i for i in ours if not i.startswith(allowed)} == set(), path.name


@pytest.mark.parametrize("name", ["protocols", "format", "registry", "grading"])
def test_moved_public_modules_still_import_with_a_warning_naming_the_new_path(name):
    """What plugin authors imported before the layers (rlrefine.protocols, rlrefine.format, rlrefine.registry's build,
    rlrefine.grading) still works, and says where it went."""
    import importlib

    sys.modules.pop(f"rlrefine.{name}", None)
    with pytest.warns(DeprecationWarning, match=rf"^rlrefine\.{name} moved to rlrefine\.core\.{name}; import it"):
        old = importlib.import_module(f"rlrefine.{name}")
    new = importlib.import_module(f"rlrefine.core.{name}")
    public = [n for n in dir(new) if not n.startswith("_") and getattr(new, n).__class__.__name__ != "module"]
    assert public and all(getattr(old, n) is getattr(new, n) for n in public)


def test_the_names_readme_tells_plugin_authors_to_import_exist():
    import re

    readme = (ROOT / "README.md").read_text()
    imports = set(re.findall(r"^from (rlrefine[\w.]*) import ([\w, ]+)$", readme, re.M))
    assert imports
    for module, names in imports:
        loaded = __import__(module, fromlist=["_"])
        assert all(hasattr(loaded, n.strip()) for n in names.split(",")), (module, names)
