"""`imagepack convert SRC DST`: one image to another format, a .oci archive included."""

from __future__ import annotations

from pathlib import Path

import typer

from imagepack.cli.options import (
    ALLOW_BACKING,
    COMPRESS,
    DISK,
    FORCE,
    FORMAT_OPTION,
    FROM_FORMAT,
    JSON,
    LEVEL,
    MAX_SIZE,
    QUIET,
    SCRATCH,
    SYNC,
    THREADS,
    VERBOSE,
    VHD_SIZE,
    PackOptions,
    pack_options,
)
from imagepack.cli.output import progress_bar, report_build, reported, setup_logging

EXAMPLES = """\b
Examples:
  imagepack convert disk.vmdk disk.qcow2
  imagepack convert disk.raw disk.vmdk -o subformat=streamOptimized
  imagepack convert disk.qcow2.xz disk.vmdk --scratch /var/tmp"""


def register(app: typer.Typer) -> None:
    app.command("convert", epilog=EXAMPLES)(convert_command)


@pack_options
def convert_command(
    source: Path = typer.Argument(..., metavar="SRC", help="Image to read (never modified)."),
    target: Path = typer.Argument(
        ..., metavar="DST", help="Image to write; its suffix picks the format unless --to is given."
    ),
    to: str = typer.Option(
        None, "--to", metavar="FORMAT", help="Output format: raw, qcow2, vmdk, vdi, vhd, vhdx or oci."
    ),
    from_format: str = FROM_FORMAT,
    option: list[str] = FORMAT_OPTION,
    compress: bool = COMPRESS,
    level: int = LEVEL,
    threads: int = THREADS,
    force: bool = FORCE,
    sync: bool = SYNC,
    allow_backing: bool = ALLOW_BACKING,
    max_size: str = MAX_SIZE,
    vhd_size: str = VHD_SIZE,
    disk: int | None = DISK,
    scratch: Path | None = SCRATCH,
    json_output: bool = JSON,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
    *,
    pack: PackOptions,
) -> None:
    """Convert a disk image between raw, qcow2, vmdk, vdi, vhd, vhdx and .oci (a .oci source works too; a .oci
    target takes the pack options)."""
    setup_logging(quiet=quiet, verbose=verbose)
    with reported(verbose=verbose, json_output=json_output):
        from imagepack.build import ArchiveKind, Target, make, target_kind
        from imagepack.cli.parse import metadata_request, parse_disk_format, parse_policy, parse_scratch, parse_target
        from imagepack.compression import codec_named
        from imagepack.errors import InvalidValueError
        from imagepack.options import parse_option_pairs

        kind = target_kind(target, parse_target(to))
        if kind is not ArchiveKind.OCI and pack.given():
            raise InvalidValueError(f"{pack.given()[0]} applies only to a .oci target, not {kind.value}")
        with progress_bar(f"{source.name} → {target.name}", quiet=quiet) as on_progress:
            done = make(
                source,
                Target(
                    target,
                    kind,
                    options=parse_option_pairs(option),
                    compress=compress,
                    metadata=metadata_request(pack) if kind is ArchiveKind.OCI else None,
                    force=force,
                    sync=sync,
                    compression=codec_named(target),
                    level=level,
                    threads=threads,
                ),
                claimed=parse_disk_format(from_format),
                policy=parse_policy(max_size, allow_backing=allow_backing, vhd_size=vhd_size),
                on_progress=on_progress,
                disk=disk,
                scratch=parse_scratch(scratch),
            )
        report_build(done, json_output=json_output, quiet=quiet)
