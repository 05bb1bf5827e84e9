"""The layers: dependencies point one way (generator -> inverse -> dashboards), with no import cycles."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"generator": 0, "inverse": 1, "dashboards": 2, "microdesign": 3}


def _modules() -> dict[str, Path]:
    found = {}
    for package in LAYERS:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


def _imports(path: Path, *, top_level: bool) -> set[str]:
    """Modules of ours that ``path`` imports, at module level only (``top_level``) or anywhere."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level else list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n for n in names if n.split(".")[0] in LAYERS}


def test_dependencies_point_one_way() -> None:
    upward = []
    for name, path in _modules().items():
        if name.startswith("microdesign"):
            continue
        for dep in _imports(path, top_level=False):
            if LAYERS[dep.split(".")[0]] > LAYERS[name.split(".")[0]]:
                upward.append(f"{name} imports {dep}")
    assert not upward, upward


def test_no_import_cycles_at_module_level() -> None:
    modules = _modules()
    graph = {name: {d for d in _imports(path, top_level=True) if d in modules and d != name} for name, path in modules.items()}
    # a package's own submodules importing it (``from generator.descriptors import core``) is not a cycle
    graph = {name: {d for d in deps if not name.startswith(d + ".")} for name, deps in graph.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(name: str, stack: list[str]) -> None:
        state[name] = 1
        stack.append(name)
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack)
        stack.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert not cycles, [" -> ".join(c) for c in cycles]


def test_the_library_imports_our_modules_at_module_level() -> None:
    """Function-level imports of our modules are kept to the command line (quick start-up) and the public API."""
    late = []
    for name, path in _modules().items():
        if name.startswith(("inverse.cli", "microdesign")):
            continue
        inner = _imports(path, top_level=False) - _imports(path, top_level=True)
        tree = ast.parse(path.read_text())
        checking = {n for node in tree.body if isinstance(node, ast.If) for n in _imports_in(node)}
        late += [f"{name}: {dep}" for dep in sorted(inner - checking)]
    assert not late, late


def _imports_in(node: ast.AST) -> set[str]:
    names = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.ImportFrom) and sub.module:
            names.add(sub.module)
            names.update(f"{sub.module}.{a.name}" for a in sub.names)
    return names


def test_the_cli_does_not_import_the_dashboards() -> None:
    code = "import sys, inverse.cli; print('dashboards' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout.split()
    assert out == ["False"]
