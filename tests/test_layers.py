"""The import structure of ``callroom``: no package imports a package that imports it back, no module a
module that imports it back, and no import of ``callroom`` hides inside a function to dodge either.

Read from the source with ``ast`` (nothing is imported): every ``import`` counts, those under ``if
TYPE_CHECKING:`` too (a type-only loop is still a loop between the files). A package is a directory right
under ``callroom/`` (``callroom.media``); a module right under it (``callroom.node``) is a package of its own.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "callroom"

# Modules whose callroom imports may stay inside functions, and why. Each entry names the importing module
# and the module it imports there.
DEFERRED_ALLOWED: dict[tuple[str, str], str] = {
    # The command line loads only what a subcommand uses: `callroom keys list` starts without FastAPI,
    # uvicorn, numpy or the media process. No loop is dodged (cli imports, nothing imports cli).
    ("callroom.cli", "callroom.api.routes_cluster"): "per-subcommand loading",
    ("callroom.cli", "callroom.cluster.membership"): "per-subcommand loading",
    ("callroom.cli", "callroom.control.service"): "per-subcommand loading",
    ("callroom.cli", "callroom.identity"): "per-subcommand loading",
    ("callroom.cli", "callroom.startup"): "per-subcommand loading",
    ("callroom.cli", "callroom.store.engine"): "per-subcommand loading",
    ("callroom.cli", "callroom.store.nodes"): "per-subcommand loading",
    ("callroom.cli", "callroom.store.trunk_config"): "per-subcommand loading",
    ("callroom.cli", "callroom.webhooks.signing"): "per-subcommand loading",
}


@dataclass(frozen=True, slots=True)
class Import:
    importer: str
    imported: str
    line: int
    deferred: bool  # inside a function


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The module ``name`` refers to: itself, or the nearest enclosing module that exists."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(name: str, path: Path, known: dict[str, Path]) -> Iterator[Import]:
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"

    def visit(node: ast.AST, deferred: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            inner = deferred or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            targets: list[str] = []
            line = 0
            if isinstance(child, ast.Import):
                targets = [alias.name for alias in child.names]
                line = child.lineno
            elif isinstance(child, ast.ImportFrom):
                line = child.lineno
                base = child.module or ""
                if child.level:
                    anchor = name.split(".")
                    if not is_package:
                        anchor.pop()
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from callroom.media import topology` names the module callroom.media.topology
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                           for alias in child.names]
            for target in targets:
                if target == "callroom" or target.startswith("callroom."):
                    found = _resolve(target, known)
                    if found is not None and found != name:
                        yield Import(name, found, line, deferred)
            yield from visit(child, inner)

    yield from visit(tree, False)


def all_imports() -> list[Import]:
    known = modules()
    return [imp for name, path in known.items() for imp in imports_of(name, path, known)]


def package_of(module: str) -> str:
    return ".".join(module.split(".")[:2])


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def strongconnect(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strongconnect(w)
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

    for v in sorted(edges):
        if v not in index:
            strongconnect(v)
    return sorted(found)


def graph(imports: list[Import], *, packages: bool = False) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for imp in imports:
        a, b = (package_of(imp.importer), package_of(imp.imported)) if packages else (imp.importer, imp.imported)
        if a != b:
            edges.setdefault(a, set()).add(b)
    return edges


def test_no_package_imports_a_package_that_imports_it() -> None:
    loops = cycles(graph(all_imports(), packages=True))
    assert loops == [], "package loops: " + "; ".join(" <-> ".join(c) for c in loops)


def test_no_module_imports_a_module_that_imports_it() -> None:
    imports = all_imports()
    loops = cycles(graph(imports))
    assert loops == [], "module loops: " + "; ".join(" <-> ".join(c) for c in loops)


def test_no_import_of_callroom_hides_inside_a_function() -> None:
    imports = all_imports()
    deferred = {(i.importer, i.imported): i for i in imports if i.deferred}
    unexpected = [f"{i.importer}:{i.line} imports {i.imported}" for key, i in sorted(deferred.items())
                  if key not in DEFERRED_ALLOWED]
    assert unexpected == [], "imports inside functions: " + "; ".join(unexpected)
    stale = sorted(set(DEFERRED_ALLOWED) - set(deferred))
    assert stale == [], f"allow-list entries that match nothing (remove them): {stale}"


def test_the_model_imports_nothing_of_callroom_but_errors_and_time_formats() -> None:
    allowed = {"callroom.errors", "callroom.timefmt"}
    wrong = [f"{i.importer}:{i.line} imports {i.imported}" for i in all_imports()
             if package_of(i.importer) == "callroom.model" and package_of(i.imported) != "callroom.model"
             and i.imported not in allowed]
    assert wrong == [], wrong


def test_the_checker_sees_loops_and_hidden_imports(tmp_path: Path) -> None:
    """The checks above would catch what they look for: a made-up graph with a loop, and a module with an
    import under TYPE_CHECKING and one inside a function."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    source = tmp_path / "actions.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import ports\n"
        "if TYPE_CHECKING:\n"
        "    from callroom.media.engine import MediaEngine\n"
        "def later() -> None:\n"
        "    from callroom.media import mixer\n"
    )
    known = modules()
    found = [(i.imported, i.deferred) for i in imports_of("callroom.media.actions", source, known)]
    assert found == [("callroom.media.ports", False), ("callroom.media.engine", False),
                     ("callroom.media.mixer", True)]
