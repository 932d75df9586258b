"""`imagepack pack`, `unpack`, `verify` and `meta`: the .oci archive commands."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from imagepack.cli.output import (
    ALLOW_BACKING,
    FORCE,
    FROM_FORMAT,
    JSON,
    MAX_SIZE,
    QUIET,
    SYNC,
    VERBOSE,
    VHD_SIZE,
    describe_problem,
    human_size,
    print_json,
    progress_bar,
    reported,
    setup_logging,
)
from imagepack.errors import EXIT_PROBLEMS

if TYPE_CHECKING:
    from imagepack.build import BuildResult
    from imagepack.oci.metadata import ImageMetadata

OS_NAME = typer.Option(None, "--os", metavar="NAME", help="Operating system, e.g. 'Oracle Linux', 'Ubuntu', 'Windows'.")
OS_VERSION = typer.Option(
    None, "--os-version", metavar="VERSION", help="Its version, e.g. 8, 22.04, 'Server 2022 Datacenter'."
)
LAUNCH_MODE = typer.Option(
    None, "--launch-mode", metavar="MODE", help="NATIVE, PARAVIRTUALIZED (default), EMULATED or CUSTOM."
)
FIRMWARE = typer.Option(
    None, "--firmware", metavar="BIOS|UEFI_64", help="BIOS or UEFI_64 (default: from the disk's partition table)."
)
LAUNCH_OPTION = typer.Option(
    [], "--launch-option", metavar="KEY=VALUE", help="Override one launch option, e.g. networkType=VFIO."
)
SHAPE = typer.Option(
    [], "--shape", metavar="SHAPE", help="Compatible shape NAME[:OCPU_MIN-OCPU_MAX[:MEM_MIN-MEM_MAX]] (repeatable)."
)
METADATA = typer.Option(
    None, "--metadata", metavar="FILE", help="Start from this image_metadata.json (unknown keys are kept)."
)
STRICT = typer.Option(False, "--strict", help="Treat an operating system missing from OCI's list as an error.")


def pack_command(
    source: Path = typer.Argument(..., help="Disk image in any supported format (never modified)."),
    output: Path = typer.Option(..., "--output", "-o", metavar="OUT.oci", help="The .oci archive to write."),
    os_name: str = OS_NAME,
    os_version: str = OS_VERSION,
    launch_mode: str = LAUNCH_MODE,
    firmware: str = FIRMWARE,
    launch_option: list[str] = LAUNCH_OPTION,
    shape: list[str] = SHAPE,
    metadata: Path = METADATA,
    compress: bool = typer.Option(False, "--compress", "-c", help="Compress the qcow2 clusters."),
    from_format: str = FROM_FORMAT,
    allow_backing: bool = ALLOW_BACKING,
    strict: bool = STRICT,
    force: bool = FORCE,
    sync: bool = SYNC,
    max_size: str = MAX_SIZE,
    vhd_size: str = VHD_SIZE,
    json_output: bool = JSON,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
) -> None:
    """Build a .oci archive (output.QCOW2 + image_metadata.json) from a disk image, in one pass."""
    setup_logging(quiet=quiet, verbose=verbose)
    with reported(verbose=verbose):
        run_pack(
            source,
            output,
            os_name=os_name,
            os_version=os_version,
            launch_mode=launch_mode,
            firmware=firmware,
            launch_options=launch_option,
            shapes=shape,
            metadata=metadata,
            options=[],
            compress=compress,
            from_format=from_format,
            allow_backing=allow_backing,
            strict=strict,
            force=force,
            sync=sync,
            max_size=max_size,
            vhd_size=vhd_size,
            json_output=json_output,
            quiet=quiet,
        )


def run_pack(
    source: Path,
    output: Path,
    *,
    os_name: str | None,
    os_version: str | None,
    launch_mode: str | None,
    firmware: str | None,
    launch_options: list[str],
    shapes: list[str],
    metadata: Path | None,
    options: list[str],
    compress: bool,
    from_format: str | None,
    allow_backing: bool,
    strict: bool,
    force: bool,
    sync: bool,
    max_size: str | None,
    vhd_size: str | None = None,
    json_output: bool,
    quiet: bool,
) -> None:
    """`pack`: the pack options as given on its command line."""
    from imagepack.build import ArchiveKind, Target, make
    from imagepack.cli.common import metadata_request, parse_policy, parse_source_format
    from imagepack.options import parse_option_pairs

    request = metadata_request(
        os_name=os_name,
        os_version=os_version,
        launch_mode=launch_mode,
        firmware=firmware,
        launch_options=launch_options,
        shapes=shapes,
        metadata=metadata,
        strict=strict,
    )
    target = Target(
        output,
        ArchiveKind.OCI,
        options=parse_option_pairs(options),
        compress=compress,
        metadata=request,
        force=force,
        sync=sync,
    )
    with progress_bar(f"{source.name} → {output.name}", quiet=quiet) as on_progress:
        done = make(
            source,
            target,
            claimed=parse_source_format(from_format),
            policy=parse_policy(max_size, allow_backing=allow_backing, vhd_size=vhd_size),
            on_progress=on_progress,
        )
    report_build(done, json_output=json_output, quiet=quiet)


def report_build(done: BuildResult, *, json_output: bool, quiet: bool) -> None:
    if json_output:
        print_json(done.to_json())
        return
    for warning in done.warnings:
        print(f"imagepack: {warning.severity.value}: {warning.message}", file=sys.stderr)
    if quiet:
        return
    how = "copied" if done.copied else "converted"
    if done.metadata is not None:
        print(
            f"packed {done.source} ({done.source_format}, {how}) into {done.target} "
            f"({human_size(done.size)}; {done.metadata.launch_mode.value}, "
            f"{done.metadata.launch.firmware.value}) in {done.seconds:.1f} s"
        )
    else:
        print(
            f"converted {done.source} ({done.source_format}) to {done.target} "
            f"({done.format}, {human_size(done.size)}) in {done.seconds:.1f} s"
        )


def unpack_command(
    archive: Path = typer.Argument(..., help="The .oci archive (never modified)."),
    directory: Path = typer.Option(
        Path("."), "--directory", "-d", metavar="DIR", help="Where to write (created if missing)."
    ),
    to: str = typer.Option(
        None, "--to", metavar="FORMAT", help="Convert the disk to this format instead of writing output.QCOW2."
    ),
    option: list[str] = typer.Option(
        [], "-o", "--option", metavar="KEY=VALUE", help="Format option KEY=VALUE for --to (repeatable)."
    ),
    name: str = typer.Option(
        None, "--name", metavar="NAME", help="Name the outputs NAME.qcow2 and NAME.json (default: the archive's name)."
    ),
    force: bool = FORCE,
    sync: bool = SYNC,
    max_size: str = MAX_SIZE,
    json_output: bool = JSON,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
) -> None:
    """Write an archive's disk and image_metadata.json into a directory."""
    setup_logging(quiet=quiet, verbose=verbose)
    with reported(verbose=verbose):
        from imagepack.cli.common import parse_policy
        from imagepack.formats import parse_format
        from imagepack.oci.unpack import unpack_archive
        from imagepack.options import parse_option_pairs

        with progress_bar(archive.name, quiet=quiet) as on_progress:
            done = unpack_archive(
                archive,
                directory,
                to=parse_format(to) if to else None,
                name=name,
                options=parse_option_pairs(option),
                force=force,
                sync=sync,
                policy=parse_policy(max_size),
                on_progress=on_progress,
            )
        if json_output:
            print_json(done.to_json())
        elif not quiet:
            print(f"unpacked {done.archive} into {done.disk} ({done.disk_format.value}) and {done.metadata}")


def verify_command(
    path: Path = typer.Argument(..., help="A .oci archive, or a qcow2/vmdk to be imported."),
    strict: bool = STRICT,
    max_size: str = MAX_SIZE,
    vhd_size: str = VHD_SIZE,
    json_output: bool = JSON,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
) -> None:
    """Check that OCI's image import would take this file. Exit 0 ready, 3 problems found, 1 unreadable."""
    setup_logging(quiet=quiet, verbose=verbose)
    with reported(verbose=verbose):
        from imagepack.cli.common import parse_policy
        from imagepack.oci.verify import verify_path

        report = verify_path(path, strict=strict, policy=parse_policy(max_size, vhd_size=vhd_size))
        if json_output:
            print_json(report.to_json())
        else:
            for problem in report.problems:
                print(f"{problem.severity.value}: {describe_problem(problem)}")
            if not quiet:
                verdict = "ready for import" if report.ready else "NOT ready for import"
                print(f"{path}: {verdict} ({report.kind})")
        if not report.ready:
            raise typer.Exit(EXIT_PROBLEMS)


meta_app = typer.Typer(help="Show or change the metadata of a .oci archive in place.", no_args_is_help=True)
shapes_app = typer.Typer(help="List, add or remove compatible shapes.", no_args_is_help=True)
meta_app.add_typer(shapes_app, name="shapes")


@meta_app.command("show")
def meta_show(
    archive: Path = typer.Argument(...),
    json_output: bool = typer.Option(False, "--json", help="Accepted for symmetry: the output is JSON anyway."),
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
) -> None:
    """Print image_metadata.json (as JSON, without the padding our archives carry)."""
    setup_logging(quiet=quiet, verbose=verbose)
    with reported(verbose=verbose):
        from imagepack.oci.edit import show_metadata

        print_json(show_metadata(archive).to_json())


def _edit(
    archive: Path,
    change: Callable[[ImageMetadata], ImageMetadata],
    *,
    strict: bool,
    quiet: bool,
    json_output: bool,
    verbose: bool,
) -> None:
    setup_logging(quiet=quiet, verbose=verbose)
    with reported(verbose=verbose):
        from imagepack.oci.edit import edit_metadata

        done = edit_metadata(archive, change, strict=strict)
        for warning in done.warnings:
            print(f"imagepack: {warning.severity.value}: {warning.message}", file=sys.stderr)
        if json_output:
            print_json(
                {
                    "archive": str(done.archive),
                    "in_place": done.in_place,
                    "how": done.how,
                    "metadata": done.metadata.to_json(),
                    "seconds": round(done.seconds, 3),
                }
            )
        elif not quiet:
            print(f"updated the metadata of {done.archive} {done.how}")


@meta_app.command("set")
def meta_set(
    archive: Path = typer.Argument(...),
    assignments: list[str] = typer.Argument(..., help="KEY=VALUE, e.g. firmware=BIOS operatingSystemVersion=9"),
    strict: bool = STRICT,
    json_output: bool = JSON,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
) -> None:
    """Change metadata values without touching the disk member."""
    with reported(verbose=verbose):
        from imagepack.oci.metadata import parse_assignments, set_values

        values = parse_assignments(assignments)
    _edit(
        archive,
        lambda meta: set_values(meta, values),
        strict=strict,
        quiet=quiet,
        json_output=json_output,
        verbose=verbose,
    )


@shapes_app.command("list")
def shapes_list(
    archive: Path = typer.Argument(...), json_output: bool = JSON, quiet: bool = QUIET, verbose: bool = VERBOSE
) -> None:
    """List the compatible shapes."""
    setup_logging(quiet=quiet, verbose=verbose)
    with reported(verbose=verbose):
        from imagepack.oci.edit import show_metadata

        shapes = show_metadata(archive).shapes
        if json_output:
            print_json([shape.to_json() for shape in shapes])
        for shape in [] if json_output else shapes:
            print(shape.describe())


@shapes_app.command("add")
def shapes_add(
    archive: Path = typer.Argument(...),
    shapes: list[str] = typer.Argument(..., help="NAME[:OCPU_MIN-OCPU_MAX[:MEM_MIN-MEM_MAX]]"),
    json_output: bool = JSON,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
) -> None:
    """Add (or replace, by name) compatible shapes."""
    with reported(verbose=verbose):
        from imagepack.oci.metadata import parse_shape

        added = [parse_shape(text) for text in shapes]

    def change(meta: ImageMetadata) -> ImageMetadata:
        names = {shape.name for shape in added}
        meta.shapes = [s for s in meta.shapes if s.name not in names] + added
        return meta

    _edit(archive, change, strict=False, quiet=quiet, json_output=json_output, verbose=verbose)


@shapes_app.command("remove")
def shapes_remove(
    archive: Path = typer.Argument(...),
    names: list[str] = typer.Argument(..., help="Shape names to remove."),
    json_output: bool = JSON,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
) -> None:
    """Remove compatible shapes by name."""

    def change(meta: ImageMetadata) -> ImageMetadata:
        missing = set(names) - {shape.name for shape in meta.shapes}
        if missing:
            from imagepack.errors import InvalidValueError

            raise InvalidValueError(f"no shape named {', '.join(sorted(missing))} in the metadata")
        meta.shapes = [s for s in meta.shapes if s.name not in names]
        return meta

    _edit(archive, change, strict=False, quiet=quiet, json_output=json_output, verbose=verbose)
