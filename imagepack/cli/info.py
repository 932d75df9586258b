"""`imagepack info`: describe an image (or, later, an archive)."""

from __future__ import annotations

from pathlib import Path

import typer

from imagepack.cli.output import JSON, QUIET, VERBOSE, human_size, print_json, reported, setup_logging


def info_command(
    path: Path = typer.Argument(..., help="Disk image to describe."),
    from_format: str = typer.Option(None, "--from", help="State the format instead of detecting it."),
    max_size: str = typer.Option(None, "--max-size", help="Largest virtual size to accept (default 400G)."),
    json_output: bool = JSON,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
) -> None:
    """Describe a disk image: format, sizes, partition table and firmware guess."""
    setup_logging(quiet=quiet, verbose=verbose)
    with reported(verbose=verbose):
        from imagepack.cli.common import parse_policy, parse_source_format
        from imagepack.info import describe_image

        found = describe_image(path, claimed=parse_source_format(from_format), policy=parse_policy(max_size))
        if json_output:
            print_json(found.to_json())
            return
        data = found.to_json()
        rows = [
            ("format", found.format.value + (f" ({found.subformat})" if found.subformat else "")),
            ("virtual size", f"{human_size(found.virtual_size)} ({found.virtual_size} bytes)"),
            ("file size", f"{human_size(found.file_size)} ({found.file_size} bytes)"),
            ("allocated", human_size(found.allocated)),
            ("cluster size", human_size(found.cluster_size) if found.cluster_size else "-"),
        ]
        rows += [(key.replace("_", " "), str(value)) for key, value in found.details.items() if value is not None]
        if found.layout:
            esp = ", EFI system partition" if found.layout.has_esp else ""
            rows.append(("partition table", f"{data['partition_table']} ({found.layout.partitions} partitions{esp})"))
            rows.append(("firmware guess", data["firmware_guess"] or "unknown (no partition table)"))
        for key, value in rows:
            print(f"{key + ':':19}{value}")
        for refusal in found.refusals:
            print(f"{'refused:':19}{refusal}")
