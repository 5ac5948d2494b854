"""The package is layered and has no import cycles; test files share helpers only through conftest.

Layers, low to high (a module may import its own layer-group and any lower layer, never a higher one)::

    errors, version, assets -> utils -> config -> data | models -> io -> engine -> cli -> yolo_asff, __main__

``data`` and ``models`` share a layer and import neither each other. Imports are read from the source with
``ast`` (nothing is imported), relative ones resolved, and every import counts, the ones inside functions
too: an import moved into a function to dodge a cycle is still a cycle.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "yolo_asff"
ROOT = "yolo_asff"

# Low to high. Each entry is one layer; the groups of one layer (data and models; the leaves at the bottom)
# import none of each other.
LAYERS: List[Tuple[str, ...]] = [
    ("errors", "version", "assets"),
    ("utils",),
    ("config",),
    ("data", "models"),
    ("io",),
    ("engine",),
    ("cli",),
    ("", "__main__"),  # the root package's __init__ and ``python -m yolo_asff``
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> Dict[str, Path]:
    """``{dotted name: file}`` of every module under yolo_asff, packages by their ``__init__``."""
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_modules(name: str, path: Path, modules: Dict[str, Path]) -> Iterator[Tuple[str, int]]:
    """``(module, line)`` for each package module that ``name`` imports, wherever the import statement is.

    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module, else ``pkg``.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, is_package, node)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import yolo_asff.x.y` of a name inside a module
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target, node.lineno


def import_graph() -> Dict[str, Dict[str, int]]:
    """``{importer: {imported: first line}}`` over the package's modules."""
    modules = package_modules()
    graph: Dict[str, Dict[str, int]] = {}
    for name, path in modules.items():
        edges = graph.setdefault(name, {})
        for target, line in imported_modules(name, path, modules):
            edges.setdefault(target, line)
    return graph


def group_of(module: str) -> str:
    """The layer group of a module: its first component under yolo_asff (``""`` for the root package)."""
    return module.split(".")[1] if "." in module else ""


def layer_of(module: str) -> int:
    group = group_of(module)
    for rank, groups in enumerate(LAYERS):
        if group in groups:
            return rank
    raise AssertionError(f"{module} is in no layer: add its group {group!r} to LAYERS in {__file__}")


def strongly_connected(graph: Dict[str, Dict[str, int]]) -> List[List[str]]:
    """Tarjan's strongly connected components with more than one module (the cycles), iteratively."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(graph[nxt])))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def _where(graph: Dict[str, Dict[str, int]], importer: str, imported: str) -> str:
    path = package_modules()[importer].relative_to(REPO)
    return f"{importer} imports {imported} ({path}:{graph[importer][imported]})"


def test_every_module_is_in_a_layer():
    for module in package_modules():
        layer_of(module)


def test_no_module_imports_from_a_higher_layer_or_a_sibling_group():
    graph = import_graph()
    wrong = []
    for importer, edges in graph.items():
        for imported in edges:
            if layer_of(imported) > layer_of(importer):
                wrong.append(f"upward: {_where(graph, importer, imported)}")
            elif layer_of(imported) == layer_of(importer) and group_of(imported) != group_of(importer):
                wrong.append(f"sideways: {_where(graph, importer, imported)}")
    assert not wrong, "imports against the layers " + " < ".join("|".join(g or ROOT for g in layer) for layer in
                                                                   LAYERS) + ":\n" + "\n".join(sorted(wrong))


def test_no_import_cycles_between_modules():
    graph = import_graph()
    cycles = []
    for component in strongly_connected(graph):
        members = set(component)
        pairs = [(a, b) for a in component for b in graph[a] if b in members]
        cycles.append("cycle among " + ", ".join(component) + ":\n    " +
                      "\n    ".join(_where(graph, a, b) for a, b in pairs))
    assert not cycles, "\n".join(cycles)


def test_the_checks_see_an_upward_import_and_a_cycle():
    """The walker itself: relative imports resolved, a local import counted, a cycle found."""
    modules = package_modules()
    edges = dict(imported_modules("yolo_asff.cli.demo", modules["yolo_asff.cli.demo"], modules))
    assert any(group_of(m) == "engine" for m in edges)  # cli's `from ..engine.x import y`, resolved
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}
    assert strongly_connected(graph) == [["a", "b", "c"]]
    source = "def f():\n    from ..engine import trainer\n"
    node = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom))
    assert _resolve("yolo_asff.models.loss", False, node) == "yolo_asff.engine"
    assert _resolve("yolo_asff.models", True, node) == "yolo_asff.engine"  # from models/__init__.py: `..` is the root


def _test_file_imports(path: Path) -> Iterator[Tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module_name(path).split(".")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[: len(here) - node.level] + ([node.module] if node.module else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            yield name, node.lineno


def test_test_files_share_helpers_through_conftest_not_through_each_other():
    wrong = []
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        for name, line in _test_file_imports(path):
            if name.startswith("tests.") and name.rpartition(".")[2].startswith("test_"):
                wrong.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    assert not wrong, "move shared helpers into a conftest.py:\n" + "\n".join(wrong)
