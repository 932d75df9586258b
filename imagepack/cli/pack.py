"""`imagepack pack SRC DST.oci`: a .oci archive (output.QCOW2 + image_metadata.json) from a disk image."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer

from imagepack.cli.output import print_build
from imagepack.cli.run import running
from imagepack.cli.shared_options import (
    ALLOW_BACKING,
    CHECKSUM,
    COMPRESS,
    DISK,
    FORCE,
    FORMAT_OPTION,
    FROM_FORMAT,
    JSON,
    LEVEL,
    MAX_SIZE,
    PART_SIZE,
    QUIET,
    SCRATCH,
    STREAM_WRITER,
    SYNC,
    THREADS,
    VERBOSE,
    VHD_SIZE,
    PackOptions,
    pack_options,
)

EXAMPLES = """\b
Examples:
  imagepack pack debian.qcow2 debian.oci    # system, version and firmware read from the guest
  imagepack pack disk.vmdk disk.oci --os 'Oracle Linux' --os-version 9
  imagepack pack disk.raw disk.oci --os Ubuntu --os-version 22.04 --firmware UEFI_64 -o compat=1.1
  imagepack pack disk.qcow2.zst disk.oci --os 'Oracle Linux' --os-version 9"""


def register(app: typer.Typer) -> None:
    app.command("pack", epilog=EXAMPLES)(pack_command)


@pack_options
def pack_command(
    source: Path = typer.Argument(..., metavar="SRC", help="Disk image in any supported format (never modified)."),
    target: Path = typer.Argument(None, metavar="DST.oci", help="The .oci archive to write.", show_default=False),
    output: Path = typer.Option(
        None, "--output", metavar="DST.oci", help="Old spelling of DST.oci, kept for one release."
    ),
    option: list[str] = FORMAT_OPTION,
    compress: bool = COMPRESS,
    level: int = LEVEL,
    threads: int = THREADS,
    stream_writer: str = STREAM_WRITER,
    from_format: str = FROM_FORMAT,
    allow_backing: bool = ALLOW_BACKING,
    force: bool = FORCE,
    sync: bool = SYNC,
    max_size: str = MAX_SIZE,
    vhd_size: str = VHD_SIZE,
    disk: int | None = DISK,
    scratch: Path | None = SCRATCH,
    checksum: bool = CHECKSUM,
    part_size: str = PART_SIZE,
    json_output: bool = JSON,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
    *,
    pack: PackOptions,
) -> None:
    """Build a .oci archive from a disk image, in one pass. -o KEY=VALUE are qcow2 options of its disk. What of
    --os, --os-version and --firmware is not given is read from the guest on the disk."""
    with running(json_output=json_output, quiet=quiet, verbose=verbose) as run:
        from imagepack.cli.parse import (
            metadata_request,
            open_options,
            parse_part_size,
            parse_stream_writer,
        )
        from imagepack.core.errors import InvalidValueError
        from imagepack.formats.create_options import parse_option_pairs
        from imagepack.verbs.build import make
        from imagepack.verbs.preflight import wanted_target
        from imagepack.verbs.target import ArchiveKind

        if target is not None and output is not None:
            raise InvalidValueError("the archive to write is given twice; give DST.oci or --output, not both")
        destination = target or output
        if destination is None:
            raise InvalidValueError("name the archive to write: imagepack pack SRC DST.oci")
        wanted = wanted_target(
            destination,
            to=ArchiveKind.OCI,
            options=parse_option_pairs(option),
            compress=compress,
            force=force,
            sync=sync,
            level=level,
            threads=threads,
            stream_writer=parse_stream_writer(stream_writer),
            checksum=checksum,
            part_size=parse_part_size(part_size, checksum=checksum),
        )
        options = open_options(
            from_format, max_size, allow_backing=allow_backing, vhd_size=vhd_size, disk=disk, scratch=scratch
        )
        with run.progress(f"{source.name} → {destination.name}") as on_progress:
            done = make(source, replace(wanted, metadata=metadata_request(pack)), options.following(on_progress))
        run.show(done, lambda: print_build(done), warnings=done.warnings)
