"""`imagepack verify PATH`: whether OCI's image import would take a .oci archive or a disk image."""

from __future__ import annotations

from pathlib import Path

import typer

from imagepack.cli.options import DISK, JSON, MAX_SIZE, QUIET, SCRATCH, STRICT, VERBOSE, VHD_SIZE
from imagepack.cli.output import describe_problem, print_json, progress_bar, reported, setup_logging
from imagepack.errors import EXIT_PROBLEMS

EXAMPLES = """\b
Examples:
  imagepack verify disk.oci
  imagepack verify --strict --json disk.oci | jq .problems"""


def register(app: typer.Typer) -> None:
    app.command("verify", epilog=EXAMPLES)(verify_command)


def verify_command(
    path: Path = typer.Argument(..., metavar="PATH", help="A .oci archive, or a qcow2/vmdk to be imported."),
    strict: bool = STRICT,
    max_size: str = MAX_SIZE,
    vhd_size: str = VHD_SIZE,
    disk: int | None = DISK,
    scratch: Path | None = SCRATCH,
    json_output: bool = JSON,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
) -> None:
    """Check that OCI's image import would take this file. Exit 0 ready, 3 problems found, 1 unreadable."""
    setup_logging(quiet=quiet, verbose=verbose)
    with reported(verbose=verbose, json_output=json_output):
        from imagepack.cli.parse import parse_policy, parse_scratch
        from imagepack.oci.verify import verify_path

        policy = parse_policy(max_size, vhd_size=vhd_size)
        with progress_bar(f"reading {path.name}", quiet=quiet) as on_progress:
            report = verify_path(
                path, strict=strict, policy=policy, disk=disk, scratch=parse_scratch(scratch), on_progress=on_progress
            )
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
