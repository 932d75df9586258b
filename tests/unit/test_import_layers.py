"""The architecture the tree promises: data flows one way, from the command line down to qemu-img and the tar
bytes. Each folder imports only folders of a lower layer (or itself), never the CLI, and never inside a function,
where an import can hide a cycle; inside every folder, its entries import each other without a cycle."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "imagepack"

# Lowest first, one row per folder. A module's layer is that of the longest prefix listed.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__init__",),
    ("core",),
    ("files",),
    ("formats",),
    ("tar",),
    ("tools",),
    ("oci",),
    ("compression",),
    ("sources",),
    ("writers",),
    ("verbs",),
    ("cli", "__main__"),
)


def layer_of(module: str) -> tuple[int, str]:
    best = (-1, "")
    for rank, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > len(best[1]):
                best = (rank, name)
    assert best[0] >= 0, f"imagepack.{module} is in no layer: add its folder to LAYERS"
    return best


def library_modules() -> dict[str, ast.Module]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)
        modules[name or "__init__"] = ast.parse(path.read_text(), str(path))
    return modules


def imports(tree: ast.Module) -> list[tuple[str, bool]]:
    """(imported imagepack module, whether the import is inside a function), leaving out TYPE_CHECKING blocks."""
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("imagepack"):
            base = node.module.removeprefix("imagepack").lstrip(".")
            if base:
                found.append((base, in_function))
            else:  # `from imagepack import core`
                found.extend((alias.name, in_function) for alias in node.names)
        if isinstance(node, ast.Import):
            found.extend(
                (a.name.removeprefix("imagepack."), in_function) for a in node.names if a.name.startswith("imagepack.")
            )
        inside = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(tree, False)
    return found


def test_every_library_module_imports_only_lower_layers_or_its_own_folder() -> None:
    wrong = []
    for module, tree in library_modules().items():
        rank, group = layer_of(module)
        if group == "cli" or module == "__main__":
            continue
        for imported, _ in imports(tree):
            if imported == "__init__" or imported == "":
                continue
            their_rank, their_group = layer_of(imported)
            if their_rank > rank or (their_rank == rank and their_group != group):
                wrong.append(f"imagepack.{module} imports imagepack.{imported}")
    assert wrong == []


def test_no_library_module_imports_inside_a_function() -> None:
    lazy = [
        f"imagepack.{module} imports imagepack.{imported} inside a function"
        for module, tree in library_modules().items()
        if not (module == "cli" or module.startswith("cli.") or module == "__main__")
        for imported, in_function in imports(tree)
        if in_function
    ]
    assert lazy == []


def cycles_inside_folders(modules: dict[str, list[str]]) -> list[str]:
    """At every level of the tree, the edges between a folder's entries (its modules and sub-folders), each
    one cycle found named by the entries on it."""
    edges: dict[str, set[str]] = defaultdict(set)
    for module, imported in modules.items():
        for other in imported:
            a, b = module.split("."), other.split(".")
            depth = 0
            while depth < min(len(a), len(b)) - 1 and a[depth] == b[depth]:
                depth += 1
            if depth < len(a) and depth < len(b) and a[depth] != b[depth]:
                edges[".".join(a[: depth + 1])].add(".".join(b[: depth + 1]))
    found: list[str] = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                found.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(list(edges)):
        if node not in state:
            visit(node, [node])
    return found


def test_no_import_cycle_between_folders() -> None:
    modules = {
        module: [imported for imported, _ in imports(tree) if imported not in ("", "__init__")]
        for module, tree in library_modules().items()
    }
    assert cycles_inside_folders(modules) == []


def test_the_cycle_check_sees_a_cycle() -> None:
    """The check itself can fail: two folders importing each other through one module each are caught."""
    assert cycles_inside_folders({"sources.disk": ["writers.disk"], "writers.gce": ["sources.gce"]}) == [
        "sources -> writers -> sources"
    ]


def test_the_layer_test_sees_an_upward_import() -> None:
    """The check itself can fail: an archive reader importing the info verb is caught."""
    tree = ast.parse("from imagepack.verbs.info import describe\n")
    ((imported, _),) = imports(tree)
    assert layer_of(imported)[0] > layer_of("sources.oci")[0]
