"""`imagepack verify PATH`: whether OCI's image import would take a .oci archive or a disk image."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from imagepack.cli.output import describe_problem, guest_line
from imagepack.cli.run import Run, reporting
from imagepack.cli.shared_options import DISK, MAX_SIZE, SCRATCH, STRICT, VHD_SIZE, worded
from imagepack.core.errors import EXIT_PROBLEMS

if TYPE_CHECKING:
    from imagepack.verbs.verify import VerifyReport

EXAMPLES = """\b
Examples:
  imagepack verify disk.oci
  imagepack verify --strict --json disk.oci | jq .problems
  imagepack verify --boot --expect 'login:' disk.oci"""

BOOT = typer.Option(False, "--boot", help="Also boot the disk as OCI would launch it (see boot-test).")
EXPECT = worded("--expect", "With --boot: success is this on the console (default: the seed's marker).")
TIMEOUT = worded("--timeout", "With --boot: seconds to wait (default 300).")
ACCEL = worded("--accel", "With --boot: the accelerator (default: KVM if usable).")


def register(app: typer.Typer) -> None:
    app.command("verify", epilog=EXAMPLES)(verify_command)


@reporting
def verify_command(
    path: Path = typer.Argument(..., metavar="PATH", help="A .oci archive, or a qcow2/vmdk to be imported."),
    strict: bool = STRICT,
    max_size: str = MAX_SIZE,
    vhd_size: str = VHD_SIZE,
    disk: int | None = DISK,
    scratch: Path | None = SCRATCH,
    boot: bool = BOOT,
    expect: str | None = EXPECT,
    timeout: float | None = TIMEOUT,
    accel: str | None = ACCEL,
    *,
    run: Run,
) -> None:
    """Check that OCI's image import would take this file (--boot: and that it boots). Exit 0 ready, 3 problems
    found, 1 unreadable (or the boot test could not run)."""
    from imagepack.cli.boot import boot_request, stage_printer
    from imagepack.cli.parse import open_options
    from imagepack.core.errors import InvalidValueError
    from imagepack.verbs.verify import verify_path

    options = open_options(None, max_size, vhd_size=vhd_size, disk=disk, scratch=scratch)
    given = [flag for flag, value in (("--expect", expect), ("--timeout", timeout), ("--accel", accel)) if value]
    if given and not boot:
        raise InvalidValueError(f"{', '.join(given)} applies only with --boot")
    with run.progress(f"reading {path.name}") as on_progress:
        # The boot says what it waits for and each stage it passes; the reading bar is full by then.
        told = None if run.quiet else stage_printer(on_progress and (lambda: on_progress(1.0)))
        request = boot_request(expect=expect, timeout=timeout, accel=accel, on_stage=told) if boot else None
        report = verify_path(path, options.following(on_progress), strict=strict, boot=request)
    run.show(report, lambda: _print(path, report, quiet=run.quiet), even_quiet=True)
    if not report.ready:
        raise typer.Exit(EXIT_PROBLEMS)


def _print(path: Path, report: VerifyReport, *, quiet: bool) -> None:
    """Every problem; unless quiet, the boot test's outcome, the guest checked, and the verdict."""
    for problem in report.problems:
        print(f"{problem.severity.value}: {describe_problem(problem)}")
    if quiet:
        return
    booted = report.facts.get("boot")
    if booted and booted["booted"]:
        seconds = booted["seconds_to"]["marker"]
        print(f"boot test: {booted['message']}, marker after {seconds:.1f} s ({booted['accelerator']})")
    checked = guest_line(report.guest)
    if checked is not None:
        print(checked)
    verdict = "ready for import" if report.ready else "NOT ready for import"
    compressed = report.facts.get("compression")
    kind = f"{report.kind}, {compressed}-compressed" if compressed else report.kind
    print(f"{path}: {verdict} ({kind})")
