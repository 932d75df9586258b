"""`imagepack boot-test IMAGE_OR_ARCHIVE`: boot the disk in a local virtual machine as OCI would launch it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from imagepack.cli.run import Run, reporting
from imagepack.cli.shared_options import FORCE, MAX_SIZE, worded
from imagepack.core.errors import EXIT_PROBLEMS

if TYPE_CHECKING:
    from imagepack.verbs.boot.console import Stage
    from imagepack.verbs.boot.run import BootReport, BootRequest, BootWatcher

EXAMPLES = """\b
Examples:
  imagepack boot-test disk.oci                  # mode and firmware from its metadata
  imagepack boot-test disk.qcow2 --firmware UEFI_64 --launch-mode emulated
  imagepack boot-test disk.oci --expect 'login:' --timeout 120 --console-log console.txt"""

LAUNCH_MODE = worded("--launch-mode", "NATIVE, PARAVIRTUALIZED or EMULATED (default: the .oci's).")
FIRMWARE = worded("--firmware", "Default: the .oci's, or the disk's partition table.")
SEED = typer.Option(None, "--seed", metavar="SEED.ISO", help="Attach this cloud-init seed ISO (NoCloud).")
TIMEOUT = worded("--timeout", "Seconds to wait for the marker (default 300).")
EXPECT = worded("--expect", "Success is this on the console (default: the default seed's marker).")
CONSOLE_LOG = typer.Option(None, "--console-log", metavar="FILE", help="Keep the serial console's output here.")
ACCEL = worded("--accel", "Default: KVM when /dev/kvm is usable, else TCG.")


def register(app: typer.Typer) -> None:
    app.command("boot-test", epilog=EXAMPLES)(boot_test_command)


def boot_request(
    *,
    launch_mode: str | None = None,
    firmware: str | None = None,
    seed: Path | None = None,
    timeout: float | None = None,
    expect: str | None = None,
    console_log: Path | None = None,
    force: bool = False,
    accel: str | None = None,
    on_stage: BootWatcher | None = None,
) -> BootRequest:
    """The boot options as the library's request, every typed value checked (a usage error if wrong)."""
    from imagepack.cli.parse import parse_choice
    from imagepack.formats.partitions import Firmware
    from imagepack.oci.metadata import LaunchMode
    from imagepack.verbs.boot.machine import Accelerator
    from imagepack.verbs.boot.run import DEFAULT_TIMEOUT, BootRequest

    request = BootRequest(
        launch_mode=parse_choice(LaunchMode, launch_mode, "--launch-mode"),
        firmware=parse_choice(Firmware, firmware, "--firmware"),
        seed=seed,
        expect=expect,
        timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
        console_log=console_log,
        replace_console_log=force,
        accelerator=parse_choice(Accelerator, accel, "--accel"),
        on_stage=on_stage,
    )
    request.pattern()
    return request


@reporting
def boot_test_command(
    path: Path = typer.Argument(..., metavar="IMAGE_OR_ARCHIVE", help="A .oci archive or a disk image (not modified)."),
    launch_mode: str | None = LAUNCH_MODE,
    firmware: str | None = FIRMWARE,
    seed: Path | None = SEED,
    timeout: float | None = TIMEOUT,
    expect: str | None = EXPECT,
    console_log: Path | None = CONSOLE_LOG,
    force: bool = FORCE,
    accel: str | None = ACCEL,
    max_size: str = MAX_SIZE,
    *,
    run: Run,
) -> None:
    """Boot the disk read-only in qemu as OCI would launch it and watch its console. Exit 0 booted, 3 did not
    boot, 1 could not run."""
    from imagepack.cli.parse import parse_policy
    from imagepack.verbs.boot.run import boot_test

    request = boot_request(
        launch_mode=launch_mode,
        firmware=firmware,
        seed=seed,
        timeout=timeout,
        expect=expect,
        console_log=console_log,
        force=force,
        accel=accel,
        on_stage=None if run.quiet else stage_printer(),
    )
    report = boot_test(path, request, policy=parse_policy(max_size))
    run.show(report, lambda: print_boot_report(report, quiet=run.quiet), even_quiet=True)
    if not report.booted:
        raise typer.Exit(EXIT_PROBLEMS)


STAGE_PASSED = {
    "firmware": "the firmware started",
    "boot_loader": "the boot loader started",
    "kernel": "the kernel started",
    "userspace": "user space started (init)",
    "cloud_init": "cloud-init started",
    "network": "the network is up",
    "marker": "the marker appeared",
}


def stage_printer(before: Callable[[], None] | None = None) -> BootWatcher:
    """Says on stderr what the boot waits for, then each stage as it passes; `before`: called once first (the
    caller's progress bar is done when the boot starts). Lines go through tqdm, which keeps a bar intact."""

    def told(report: BootReport, stage: Stage | None, seconds: float) -> None:
        import sys

        from tqdm import tqdm

        nonlocal before
        if before is not None:
            before()
            before = None
        if stage is None:
            line = f"booting {report.source.name} under {report.firmware.value}, {report.launch_mode.value} "
            line += f"({report.devices.describe()}), {report.accelerator.value.upper()}; {_waits_for(report)}"
        else:
            line = f"{seconds:6.1f} s  {STAGE_PASSED[stage.value]}"
            if stage.value == "network" and report.network:
                line += f" ({report.network})"
        tqdm.write(f"imagepack: {line}", file=sys.stderr)

    return told


def _waits_for(report: BootReport) -> str:
    from imagepack.verbs.boot.run import DEFAULT_MARKER

    if report.expect == DEFAULT_MARKER:  # no --expect: what cloud-init prints, from the default seed or --seed
        return (
            f"waiting up to {report.timeout:g} s for cloud-init to print the seed's marker {report.expect} and "
            "an interface with an address (an image without cloud-init never prints it: pass --expect REGEX "
            "with what it prints once booted)"
        )
    return (
        f"waiting up to {report.timeout:g} s for {report.expect!r} on the serial console (the network is "
        "checked only if the console shows an interface with an address)"
    )


def print_boot_report(report: BootReport, *, quiet: bool, indent: str = "") -> None:
    import sys

    from imagepack.cli.output import with_remedy
    from imagepack.verbs.boot.console import Stage

    if report.accelerator_note and not quiet:
        print(f"imagepack: note: {report.accelerator_note}", file=sys.stderr)
    verdict = "booted" if report.booted else "did NOT boot"
    message = with_remedy(report.message, report.remedy)
    print(f"{indent}{report.source}: {verdict} under {report.accelerator.value.upper()}: {message}")
    if quiet:
        return
    for stage in Stage:
        seconds = report.times.get(stage)
        shown = f"{seconds:.1f} s" if seconds is not None else "not reached"
        print(f"{indent}  {stage.value.replace('_', ' ') + ':':14}{shown}")
    network = report.network or ("no interface came up" if report.network_checked else "NOT checked")
    print(f"{indent}  {'network:':14}{network}")
    if report.console_log is not None:
        print(f"{indent}  console log:  {report.console_log}")
    if not report.booted and report.last_lines:
        print(f"{indent}  last console lines:")
        for line in report.last_lines[-8:]:
            print(f"{indent}    {line}")
