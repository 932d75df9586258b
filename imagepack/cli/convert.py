"""`imagepack convert`: one image to another format."""

from __future__ import annotations

from pathlib import Path

import typer

from imagepack.cli import oci
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
    human_size,
    print_json,
    progress_bar,
    reported,
    setup_logging,
)


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
        from imagepack.cli.common import parse_policy, parse_source_format
        from imagepack.convert import convert_image
        from imagepack.formats import parse_format
        from imagepack.options import parse_option_pairs

        if (to or "").lower() == "oci" or (to is None and target.suffix.lower() == ".oci"):
            oci.run_pack(
                source,
                target,
                os_name=os_name,
                os_version=os_version,
                launch_mode=launch_mode,
                firmware=firmware,
                launch_options=launch_option,
                shapes=shape,
                metadata=metadata,
                options=option,
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
            return
        with progress_bar(f"{source.name} → {target.name}", quiet=quiet) as on_progress:
            done = convert_image(
                source,
                target,
                to=parse_format(to) if to else None,
                from_format=parse_source_format(from_format),
                options=parse_option_pairs(option),
                compress=compress,
                force=force,
                sync=sync,
                policy=parse_policy(max_size, allow_backing=allow_backing, vhd_size=vhd_size),
                on_progress=on_progress,
            )
        if json_output:
            print_json(
                {
                    "source": str(done.source),
                    "source_format": done.source_format.value,
                    "target": str(done.target),
                    "target_format": done.target_format.value,
                    "virtual_size": done.virtual_size,
                    "target_size": done.target_size,
                    "options": done.options,
                    "seconds": round(done.seconds, 3),
                }
            )
        elif not quiet:
            print(
                f"converted {done.source} ({done.source_format.value}) to {done.target} "
                f"({done.target_format.value}, {human_size(done.target_size)}) in {done.seconds:.1f} s"
            )
