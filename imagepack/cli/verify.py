"""`imagepack verify PATH`: whether OCI's image import would take a .oci archive or a disk image."""

from __future__ import annotations

from pathlib import Path

import typer

from imagepack.cli.output import describe_problem, print_json, progress_bar, reported, setup_logging
from imagepack.cli.shared_options import DISK, JSON, MAX_SIZE, QUIET, SCRATCH, STRICT, VERBOSE, VHD_SIZE
from imagepack.core.errors import EXIT_PROBLEMS

EXAMPLES = """\b
Examples:
  imagepack verify disk.oci
  imagepack verify --strict --json disk.oci | jq .problems
  imagepack verify --boot --expect 'login:' disk.oci"""

BOOT = typer.Option(False, "--boot", help="Also boot the disk as OCI would launch it (see boot-test).")
EXPECT = typer.Option(
    None, "--expect", metavar="REGEX", help="With --boot: success is this on the console (default: the seed's marker)."
)
TIMEOUT = typer.Option(None, "--timeout", metavar="S", min=1, help="With --boot: seconds to wait (default 300).")
ACCEL = typer.Option(None, "--accel", metavar="kvm|tcg", help="With --boot: the accelerator (default: KVM if usable).")


def register(app: typer.Typer) -> None:
    app.command("verify", epilog=EXAMPLES)(verify_command)


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
    json_output: bool = JSON,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
) -> None:
    """Check that OCI's image import would take this file (--boot: and that it boots). Exit 0 ready, 3 problems
    found, 1 unreadable (or the boot test could not run)."""
    setup_logging(quiet=quiet, verbose=verbose)
    with reported(verbose=verbose, json_output=json_output):
        from imagepack.cli.boot import boot_request, stage_printer
        from imagepack.cli.parse import parse_policy, parse_scratch
        from imagepack.core.errors import InvalidValueError
        from imagepack.sources.open import OpenOptions
        from imagepack.verbs.verify import verify_path

        policy = parse_policy(max_size, vhd_size=vhd_size)
        given = [flag for flag, value in (("--expect", expect), ("--timeout", timeout), ("--accel", accel)) if value]
        if given and not boot:
            raise InvalidValueError(f"{', '.join(given)} applies only with --boot")
        with progress_bar(f"reading {path.name}", quiet=quiet) as on_progress:
            # The boot says what it waits for and each stage it passes; the reading bar is full by then.
            told = None if quiet else stage_printer(on_progress and (lambda: on_progress(1.0)))
            request = boot_request(expect=expect, timeout=timeout, accel=accel, on_stage=told) if boot else None
            options = OpenOptions(policy=policy, scratch=parse_scratch(scratch), disk=disk, on_progress=on_progress)
            report = verify_path(path, options, strict=strict, boot=request)
        if json_output:
            print_json(report.to_json())
        else:
            for problem in report.problems:
                print(f"{problem.severity.value}: {describe_problem(problem)}")
            booted = report.facts.get("boot")
            if booted and booted["booted"] and not quiet:
                seconds = booted["seconds_to"]["marker"]
                print(f"boot test: {booted['message']}, marker after {seconds:.1f} s ({booted['accelerator']})")
            guest = report.guest
            if guest and guest.get("checked") and not quiet:
                system = guest["os"]
                named = system.get("pretty_name") or system.get("id") or system.get("family")
                boots = " and ".join(guest["firmware"]) or "no firmware"
                print(f"guest: {named}, boots with {boots}; rules for {guest['launch_mode']} checked")
            if not quiet:
                verdict = "ready for import" if report.ready else "NOT ready for import"
                compressed = report.facts.get("compression")
                kind = f"{report.kind}, {compressed}-compressed" if compressed else report.kind
                print(f"{path}: {verdict} ({kind})")
        if not report.ready:
            raise typer.Exit(EXIT_PROBLEMS)
