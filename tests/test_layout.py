"""The architecture the file list promises: data flows one way, from the command line down to qemu-img and the
tar bytes. Each library module imports only modules of a lower layer (or its own package's), never the CLI,
and never inside a function, where an import can hide a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "imagepack"

# Lowest first. A module's layer is that of the longest prefix listed.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__init__", "errors", "problems", "progress"),
    ("signals", "stdfds", "sizes", "checksums", "writes", "renames", "reproducible"),
    ("process", "partitions", "leftovers", "oci.tarsparse", "inspect.fsid", "inspect.blockio"),
    ("openfile",),
    ("formats", "sample", "gpt"),
    ("qemu", "atomic", "sparse", "options"),
    ("seed",),
    ("image", "nbd", "inspect.guestfs", "inspect.exits"),
    ("inspect.volumes", "inspect.storage", "inspect.osinfo", "inspect.linux"),
    ("inspect.tree", "inspect.firmware"),
    ("inspect.assemble",),
    ("oci", "oci.tarscan", "oci.metadata", "ova", "ova.descriptor"),
    ("inspect.windows",),
    ("inspect.analyse",),
    ("inspect.child",),
    ("inspect.reader",),
    ("oci.guest",),
    ("oci.choose",),
    ("tarmembers", "oci.objectstorage", "vmdkstream"),
    ("oci.archive", "ova.archive", "qcow2write"),
    ("oci.reader", "compression", "ova.reader", "gce"),
    ("convert", "oci.edit"),
    ("oci.pack", "inputs", "gcetar"),
    ("onepass",),
    ("boot", "inspect"),
    ("oci.unpack", "build", "info", "oci.verify", "oci.importrequest"),
    ("presets",),
    ("batch",),
    ("_demo", "cli", "__main__"),
)


def layer_of(module: str) -> tuple[int, str]:
    best = (-1, "")
    for rank, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > len(best[1]):
                best = (rank, name)
    assert best[0] >= 0, f"imagepack.{module} is in no layer: add it to LAYERS"
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
            else:  # `from imagepack import qemu`
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


def test_every_library_module_imports_only_lower_layers_or_its_own_package() -> None:
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


def test_the_layer_test_sees_an_upward_import() -> None:
    """The check itself can fail: an archive reader importing the info verb is caught."""
    tree = ast.parse("from imagepack.info import describe\n")
    ((imported, _),) = imports(tree)
    assert layer_of(imported)[0] > layer_of("oci.reader")[0]
