"""`imagepack convert`: one image to another format."""

from __future__ import annotations

from pathlib import Path

import typer

from imagepack.cli import oci
from imagepack.cli.oci import report_build
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
    progress_bar,
    reported,
    setup_logging,
)
from imagepack.errors import InvalidValueError


def convert_command(
    source: Path = typer.Argument(..., help="Image to read (never modified)."),
    target: Path = typer.Argument(..., help="Image to write; its suffix picks the format unless --to is given."),
    to: str = typer.Option(
        None, "--to", metavar="FORMAT", help="Output format: raw, qcow2, vmdk, vdi, vhd, vhdx or oci."
    ),
    from_format: str = FROM_FORMAT,
    option: list[str] = typer.Option(
        [], "-o", "--option", metavar="KEY=VALUE", help="Format option KEY=VALUE (repeatable)."
    ),
    compress: bool = typer.Option(False, "--compress", "-c", help="Compress the output (qcow2, vmdk)."),
    force: bool = FORCE,
    sync: bool = SYNC,
    allow_backing: bool = ALLOW_BACKING,
    max_size: str = MAX_SIZE,
    vhd_size: str = VHD_SIZE,
    os_name: str = oci.OS_NAME,
    os_version: str = oci.OS_VERSION,
    launch_mode: str = oci.LAUNCH_MODE,
    firmware: str = oci.FIRMWARE,
    launch_option: list[str] = oci.LAUNCH_OPTION,
    shape: list[str] = oci.SHAPE,
    metadata: Path = oci.METADATA,
    strict: bool = oci.STRICT,
    json_output: bool = JSON,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
) -> None:
    """Convert a disk image between raw, qcow2, vmdk, vdi, vhd and .oci (a .oci source or target works too;
    a .oci target takes the pack options)."""
    setup_logging(quiet=quiet, verbose=verbose)
    with reported(verbose=verbose):
        from imagepack.build import ArchiveKind, Target, make, parse_target_kind, target_kind
        from imagepack.cli.common import metadata_request, parse_policy, parse_source_format
        from imagepack.options import parse_option_pairs

        kind = target_kind(target, parse_target_kind(to) if to else None)
        pack_options = {
            "--os": os_name,
            "--os-version": os_version,
            "--launch-mode": launch_mode,
            "--firmware": firmware,
            "--launch-option": launch_option,
            "--shape": shape,
            "--metadata": metadata,
            "--strict": strict,
        }
        if kind is not ArchiveKind.OCI:
            given = [name for name, value in pack_options.items() if value]
            if given:
                raise InvalidValueError(f"{given[0]} applies only to a .oci target, not {kind.value}")
        request = (
            metadata_request(
                os_name=os_name,
                os_version=os_version,
                launch_mode=launch_mode,
                firmware=firmware,
                launch_options=launch_option,
                shapes=shape,
                metadata=metadata,
                strict=strict,
            )
            if kind is ArchiveKind.OCI
            else None
        )
        with progress_bar(f"{source.name} → {target.name}", quiet=quiet) as on_progress:
            done = make(
                source,
                Target(
                    target,
                    kind,
                    options=parse_option_pairs(option),
                    compress=compress,
                    metadata=request,
                    force=force,
                    sync=sync,
                ),
                claimed=parse_source_format(from_format),
                policy=parse_policy(max_size, allow_backing=allow_backing, vhd_size=vhd_size),
                on_progress=on_progress,
            )
        report_build(done, json_output=json_output, quiet=quiet)
