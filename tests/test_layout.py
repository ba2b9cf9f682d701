"""The package's shape: scripts run by path import it fine, and its modules import each other without a circle."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rlrefine"


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
    """Types live apart from what builds things (rlrefine.protocols), so no module needs a factory for a type."""
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
