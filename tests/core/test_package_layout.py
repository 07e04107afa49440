"""The package's shape: no import circles, and a headless core that never imports napari or Qt.

Read from the source (``ast``), so it also covers modules no other test imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import napari_sam_keras

PACKAGE = Path(napari_sam_keras.__file__).parent
ROOT = "napari_sam_keras"
#: The front ends, which may use napari and Qt; everything else is the headless core.
FRONT_ENDS = (
    "napari_sam_keras.napari_adapter",
    "napari_sam_keras.cli",
    "napari_sam_keras.__main__",
)
GUI_MODULES = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "vispy")


def _modules(package: Path = PACKAGE) -> dict[str, Path]:
    found = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, path: Path, top_level_only: bool) -> set[str]:
    """Absolute names of what ``module`` imports (module level only, or everywhere)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    base = module.split(".") if is_package else module.split(".")[:-1]
    names: set[str] = set()

    def visit(nodes):
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node):
                continue
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parent = base[: len(base) - node.level + 1]
                    target = ".".join(parent + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                names.add(target)
                names.update(f"{target}.{alias.name}" for alias in node.names)
            if top_level_only and isinstance(
                node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
            ):
                continue
            visit(ast.iter_child_nodes(node))

    visit(tree.body)
    return names


def _graph(package: Path = PACKAGE, top_level_only: bool = True) -> dict[str, set[str]]:
    """Which module imports which (at module level, or anywhere, functions included).

    An import of a module's own package (``from . import x``) is no edge: a package is
    always imported before its modules, whatever they import from it.
    """
    modules = _modules(package)
    return {
        name: {
            t
            for t in _imports(name, path, top_level_only)
            if t in modules and t != name and not name.startswith(t + ".")
        }
        for name, path in modules.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_the_layout_has_the_documented_rooms():
    rooms = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert {"runtime", "model", "keras_layers", "processing", "segmentation", "files"} <= rooms
    assert {"cli", "napari_adapter"} <= rooms
    assert len(list(PACKAGE.glob("*.py"))) <= 4, "core modules belong in a sub-package"


def test_no_import_circles():
    assert _cycles(_graph()) == []


def test_no_import_circles_through_imports_inside_functions():
    """A lazy import inside a function still ties two modules together."""
    assert _cycles(_graph(top_level_only=False)) == []


def test_the_circle_detector_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_a_circle_through_a_function_level_import_is_found(tmp_path):
    """On a planted package: ``a`` imports ``b`` at module level, ``b`` imports ``a`` inside
    a function (as ``precompute`` once imported ``predictor``); a child importing its own
    package is no circle."""
    package = tmp_path / "planted"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("def f():\n    from . import c\n")
    (package / "sub" / "c.py").write_text("from . import d\n")
    (package / "sub" / "d.py").write_text("")
    (package / "a.py").write_text("from .b import g\n")
    (package / "b.py").write_text("def g():\n    from .a import h\n    return h\n")
    assert _cycles(_graph(package)) == []
    assert _cycles(_graph(package, top_level_only=False)) == [["planted.a", "planted.b"]]


def test_the_core_never_imports_napari_or_qt():
    offenders = {}
    for name, path in _modules().items():
        if name.startswith(FRONT_ENDS):
            continue
        bad = {
            t
            for t in _imports(name, path, top_level_only=False)
            if t.split(".")[0] in GUI_MODULES or t.startswith(FRONT_ENDS)
        }
        if bad:
            offenders[name] = sorted(bad)
    assert offenders == {}


def test_keras_is_imported_at_module_level_only_in_keras_layers():
    """Elsewhere Keras is imported after the backend is chosen (``runtime.backend``)."""
    offenders = []
    for name, path in _modules().items():
        if name.startswith(f"{ROOT}.keras_layers"):
            continue
        top = _imports(name, path, top_level_only=True)
        if any(t.split(".")[0] in ("keras", "keras_cv", "keras_hub", "tensorflow") for t in top):
            offenders.append(name)
    assert offenders == []
