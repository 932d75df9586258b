"""`imagepack meta show|set|shapes`: read or change the image_metadata.json of a .oci archive in place."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from typer.core import TyperCommand

from imagepack.cli.output import print_checksums, print_json
from imagepack.cli.run import Run, reporting
from imagepack.cli.shared_options import CHECKSUM, OS_UNLISTED, PART_SIZE, SCRATCH, STRICT

if TYPE_CHECKING:
    from typer import _click as click

    from imagepack.oci.metadata import ImageMetadata, OsName, ShapeCompatibility
    from imagepack.verbs.meta import EditResult

meta_app = typer.Typer(
    help="Show or change the metadata of a .oci archive in place.",
    no_args_is_help=True,
    epilog="\b\nExamples:\n  imagepack meta show disk.oci\n  imagepack meta set disk.oci launchMode=NATIVE",
)
shapes_app = typer.Typer(
    help="List, add or remove compatible shapes.",
    no_args_is_help=True,
    epilog="\b\nExamples:\n  imagepack meta shapes list disk.oci\n"
    "  imagepack meta shapes add disk.oci VM.Standard.E4.Flex",
)
meta_app.add_typer(shapes_app, name="shapes")


def register(app: typer.Typer) -> None:
    app.add_typer(meta_app, name="meta")


class _SetCommand(TyperCommand):
    """`meta set`, whose help lists the keys the library takes; read only when help is asked for, so that the
    metadata module stays out of every start-up."""

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from imagepack.oci.metadata import SET_KEYS

        self.help = f"{self.help}\n\nKEY is one of: {', '.join(SET_KEYS)}."
        super().format_help(ctx, formatter)


@meta_app.command(
    "show",
    epilog="\b\nExamples:\n  imagepack meta show disk.oci\n"
    "  imagepack meta show disk.oci | jq .externalLaunchOptions.firmware",
)
@reporting(json_option=typer.Option(False, "--json", help="The output is JSON anyway; with --json a failure is too."))
def meta_show(
    archive: Path = typer.Argument(..., metavar="ARCHIVE", help="The .oci archive."),
    scratch: Path | None = SCRATCH,
    *,
    run: Run,
) -> None:
    """Print image_metadata.json (as JSON, without the padding our archives carry)."""
    from imagepack.cli.parse import parse_scratch
    from imagepack.verbs.meta import show_metadata

    print_json(show_metadata(archive, scratch=parse_scratch(scratch)).to_json())


@meta_app.command(
    "set",
    cls=_SetCommand,
    epilog="\b\nExamples:\n  imagepack meta set disk.oci firmware=UEFI_64\n"
    "  imagepack meta set disk.oci operatingSystem='Oracle Linux' operatingSystemVersion=9",
)
@reporting
def meta_set(
    archive: Path = typer.Argument(..., metavar="ARCHIVE", help="The .oci archive (changed in place)."),
    assignments: list[str] = typer.Argument(..., metavar="KEY=VALUE...", help="Values to set, names in any case."),
    strict: bool = STRICT,
    os_unlisted: bool = OS_UNLISTED,
    checksum: bool = CHECKSUM,
    part_size: str = PART_SIZE,
    *,
    run: Run,
) -> None:
    """Change metadata values without touching the disk member."""
    from imagepack.cli.parse import typed_values
    from imagepack.oci.metadata import OsName, parse_assignments, set_values

    values = parse_assignments(assignments)
    # A name being set is refused when one typo from a listed one; the archive's own name is only reported.
    sets_name = any(key.casefold() == "operatingsystem" for key in values)
    os_name = OsName.REPORTED if not sets_name else OsName.AS_TYPED if os_unlisted else OsName.GIVEN

    def change(meta: ImageMetadata) -> ImageMetadata:
        with typed_values():
            return set_values(meta, values)

    _edit(run, archive, change, checksum, part_size, strict=strict, os_name=os_name)


@shapes_app.command(
    "list", epilog="\b\nExamples:\n  imagepack meta shapes list disk.oci\n  imagepack meta shapes list --json disk.oci"
)
@reporting
def shapes_list(
    archive: Path = typer.Argument(..., metavar="ARCHIVE", help="The .oci archive."),
    *,
    run: Run,
) -> None:
    """List the compatible shapes."""
    from imagepack.verbs.meta import show_metadata

    shapes = show_metadata(archive).shapes
    run.show([shape.to_json() for shape in shapes], lambda: _print_shapes(shapes), even_quiet=True)


def _print_shapes(shapes: Sequence[ShapeCompatibility]) -> None:
    for shape in shapes:
        print(shape.describe())


@shapes_app.command(
    "add",
    epilog="\b\nExamples:\n  imagepack meta shapes add disk.oci VM.Standard.E4.Flex:1-64:1-1024\n"
    "  imagepack meta shapes add disk.oci VM.Standard2.1 VM.Standard2.2",
)
@reporting
def shapes_add(
    archive: Path = typer.Argument(..., metavar="ARCHIVE", help="The .oci archive (changed in place)."),
    shapes: list[str] = typer.Argument(..., metavar="SHAPE...", help="NAME[:OCPU_MIN-OCPU_MAX[:MEM_MIN-MEM_MAX]]"),
    checksum: bool = CHECKSUM,
    part_size: str = PART_SIZE,
    *,
    run: Run,
) -> None:
    """Add (or replace, by name) compatible shapes."""
    from imagepack.oci.metadata import parse_shape
    from imagepack.verbs.meta import add_shapes

    added = [parse_shape(text) for text in shapes]
    _edit(run, archive, lambda meta: add_shapes(meta, added), checksum, part_size)


@shapes_app.command("remove", epilog="\b\nExample:\n  imagepack meta shapes remove disk.oci VM.Standard2.1")
@reporting
def shapes_remove(
    archive: Path = typer.Argument(..., metavar="ARCHIVE", help="The .oci archive (changed in place)."),
    names: list[str] = typer.Argument(..., metavar="NAME...", help="Shape names to remove."),
    checksum: bool = CHECKSUM,
    part_size: str = PART_SIZE,
    *,
    run: Run,
) -> None:
    """Remove compatible shapes by name."""
    from imagepack.verbs.meta import remove_shapes

    _edit(run, archive, lambda meta: remove_shapes(meta, names), checksum, part_size)


def _edit(
    run: Run,
    archive: Path,
    change: Callable[[ImageMetadata], ImageMetadata],
    checksum: bool,
    part_size: str | None,
    *,
    strict: bool = False,
    os_name: OsName | None = None,
) -> None:
    """Change the archive's metadata in place (--checksum and --part-size as typed) and say what was done."""
    from imagepack.cli.parse import parse_part_size
    from imagepack.oci.metadata import OsName
    from imagepack.verbs.meta import edit_metadata

    size = parse_part_size(part_size, checksum=checksum)
    typo = os_name if os_name is not None else OsName.REPORTED
    done = edit_metadata(archive, change, strict=strict, os_name=typo, checksum=checksum, part_size=size)
    run.show(done, lambda: _print_edit(done), warnings=done.warnings)


def _print_edit(done: EditResult) -> None:
    print(f"updated the metadata of {done.archive} {done.how}")
    print_checksums(done.checksum)
