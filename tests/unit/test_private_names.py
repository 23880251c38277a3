"""No private name of faust, aiokafka, mode or rocksdict is used outside
:mod:`fraudapp.engine` (the one package that may, each use documented and
contract-tested there).

A private name is one that starts with a single underscore and occurs in those
libraries' sources. Flagged outside the engine: ``x._name`` attribute uses,
``getattr``/``setattr``/``hasattr``/``delattr`` with such a name, importing such a name
or a private module of those libraries, and defining a method of such a name in a
class that extends one of their classes (an override of their internals). Names
fraudapp defines itself outside the engine are fraudapp's, whoever else uses them.
"""

from __future__ import annotations

import ast
import importlib
import re
from functools import cache
from pathlib import Path

LIBRARIES = ("faust", "aiokafka", "mode", "rocksdict")
PACKAGE = Path(__file__).resolve().parents[2] / "fraudapp"
ACCESSORS = {"getattr", "setattr", "hasattr", "delattr"}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


@cache
def library_private_names() -> frozenset[str]:
    names: set[str] = set()
    for library in LIBRARIES:
        module = importlib.import_module(library)
        # faust's package object is lazy (no __spec__ once imported): use its path.
        roots = list(getattr(module, "__path__", [])) or [str(Path(module.__file__).parent)]
        for root in roots:
            for path in Path(root).rglob("*.py*"):
                if path.suffix in (".py", ".pyi"):
                    text = path.read_text(errors="ignore")
                    names.update(re.findall(r"(?<![\w])(_[A-Za-z]\w*)", text))
    return frozenset(n for n in names if _private(n))


def _library_bases(tree: ast.Module) -> dict[str, str]:
    """Local names bound to a library module or a name imported from one, with the
    dotted path they stand for."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in LIBRARIES:
                    local = alias.asname or alias.name.split(".")[0]
                    out[local] = alias.name if alias.asname else local
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.split(".")[0] in LIBRARIES
        ):
            for alias in node.names:
                out[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return out


def _resolve(dotted: str) -> object | None:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            found = getattr(found, part, None)
        return found
    return None


def _library_classes(cls: ast.ClassDef, bases: dict[str, str]) -> list[object | None]:
    """The library classes ``cls`` extends directly (None where one cannot be found)."""
    out: list[object | None] = []
    for base in cls.bases:
        names: list[str] = []
        node: ast.expr = base
        while isinstance(node, ast.Attribute):
            names.insert(0, node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in bases:
            out.append(_resolve(".".join([bases[node.id], *names])))
    return out


def _overrides(
    cls: ast.ClassDef, bases: dict[str, str]
) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Methods of ``cls`` that a library class it extends also has."""
    library = _library_classes(cls, bases)
    return [
        item
        for item in cls.body
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
        and any(base is None or hasattr(base, item.name) for base in library)
        and library
    ]


def defined_names(tree: ast.Module) -> set[str]:
    """Names a module defines: functions, classes, assigned names and attributes,
    arguments, import aliases; not methods overriding a library class's."""
    bases = _library_bases(tree)
    overrides = {
        id(item)
        for cls in ast.walk(tree)
        if isinstance(cls, ast.ClassDef)
        for item in _overrides(cls, bases)
    }
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if id(node) not in overrides:
                out.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            out.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
        elif isinstance(node, ast.alias) and node.asname:
            out.add(node.asname)
    return out


def reach_ins(tree: ast.Module, ours: set[str]) -> list[tuple[int, str]]:
    """(line, what) for each use of a library's private name in ``tree``."""
    private = library_private_names()
    bases = _library_bases(tree)
    found: list[tuple[int, str]] = []

    def check(node: ast.AST, name: str, what: str) -> None:
        if _private(name) and name in private and name not in ours:
            found.append((node.lineno, f"{what} {name}"))

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            check(node, node.attr, "attribute")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ACCESSORS
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            check(node, node.args[1].value, node.func.id)
        elif isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            if parts[0] in LIBRARIES:
                if any(_private(part) for part in parts):
                    found.append((node.lineno, f"private module {node.module}"))
                for alias in node.names:
                    if _private(alias.name):
                        found.append((node.lineno, f"import {node.module}.{alias.name}"))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] in LIBRARIES and any(_private(part) for part in parts):
                    found.append((node.lineno, f"private module {alias.name}"))
        elif isinstance(node, ast.ClassDef):
            for item in _overrides(node, bases):
                if _private(item.name) and item.name in private:
                    found.append((item.lineno, f"override {item.name}"))
    return found


def _modules() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text()) for path in sorted(PACKAGE.rglob("*.py"))}


def _outside_engine(path: Path) -> bool:
    return path.relative_to(PACKAGE).parts[0] != "engine"


def test_no_private_name_of_faust_aiokafka_mode_or_rocksdict_outside_the_engine() -> None:
    modules = _modules()
    ours: set[str] = set()
    for path, tree in modules.items():
        if _outside_engine(path):
            ours |= defined_names(tree)
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {what}"
        for path, tree in modules.items()
        if _outside_engine(path)
        for line, what in reach_ins(tree, ours)
    ]
    assert found == [], "move these into fraudapp/engine/:\n" + "\n".join(found)


def test_the_engine_does_reach_in_so_the_check_sees_what_it_looks_for() -> None:
    """The same check on the engine finds its documented reach-ins, and on a module
    written like the ones that were moved there it finds each kind."""
    engine = [
        what
        for path, tree in _modules().items()
        if not _outside_engine(path)
        for _, what in reach_ins(tree, set())
    ]
    for expected in (
        "attribute _read_offset",
        "attribute _committed_offset",
        "attribute _acked_index",
        "import faust.streams._current_event",
        "override _new_consumer",
        "attribute _db_for_partition",
    ):
        assert expected in engine, expected
    sample = ast.parse(
        "import faust\n"
        "from faust.streams import _current_event\n"
        "class App(faust.App):\n"
        "    def _new_consumer(self): ...\n"
        "def lag(consumer):\n"
        "    return consumer._read_offset, getattr(consumer, '_thread', None)\n"
    )
    assert sorted(what for _, what in reach_ins(sample, set())) == [
        "attribute _read_offset",
        "getattr _thread",
        "import faust.streams._current_event",
        "override _new_consumer",
    ]
