"""`imagepack inspect IMAGE`: what is inside a guest disk (storage, OS, boot set-up), read without root or a VM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from imagepack.cli.inspect_text import config_lines, readiness_lines
from imagepack.cli.output import finding_json, human_size
from imagepack.cli.run import Run, reporting
from imagepack.cli.shared_options import DISK, FROM_FORMAT, MAX_SIZE, SCRATCH, VHD_SIZE, worded
from imagepack.core.errors import EXIT_PROBLEMS
from imagepack.sources.guest.fsid import BIOS_BOOT, NO_FILES
from imagepack.verbs.inspect.rules import Target, Wanted, check

EXAMPLES = """\b
Examples:
  imagepack inspect disk.qcow2
  imagepack inspect --json disk.oci | jq .os
  imagepack inspect appliance.ova --disk 2
  imagepack inspect disk.qcow2 --for oci --launch-mode EMULATED --firmware BIOS"""

FOR = typer.Option(
    None, "--for", metavar="oci|gcp|azure|aws", help="Check the guest against where it is going (readiness rules)."
)
LAUNCH_MODE = worded("--launch-mode", "With --for oci: the launch mode (default: a .oci's; else PARAVIRTUALIZED).")
FIRMWARE = worded("--firmware", "With --for oci: the firmware (default: a .oci's).")


def register(app: typer.Typer) -> None:
    app.command("inspect", epilog=EXAMPLES)(inspect_command)


@reporting
def inspect_command(
    path: Path = typer.Argument(
        ..., metavar="IMAGE", help="Disk image, .oci archive, OVA or GCE tarball to look into."
    ),
    from_format: str = FROM_FORMAT,
    max_size: str = MAX_SIZE,
    vhd_size: str = VHD_SIZE,
    disk: int | None = DISK,
    scratch: Path | None = SCRATCH,
    target: str | None = FOR,
    launch_mode: str | None = LAUNCH_MODE,
    firmware: str | None = FIRMWARE,
    *,
    run: Run,
) -> None:
    """Read the guest inside a disk: partitions and file systems, the OS it states, the firmware it boots with."""
    from imagepack.cli.parse import open_options
    from imagepack.verbs.inspect.run import inspect_path

    options = open_options(from_format, max_size, vhd_size=vhd_size, disk=disk, scratch=scratch)
    wanted = _wanted(target, launch_mode, firmware)
    with run.progress(f"reading {path.name}") as on_progress:
        report = inspect_path(path, options.following(on_progress))
    if wanted is not None:
        report["readiness"] = readiness(report, wanted)
    run.show(report, lambda: print_report(report), even_quiet=True)
    if wanted is not None and not report["readiness"]["ready"]:
        raise typer.Exit(EXIT_PROBLEMS)


def _wanted(target: str | None, launch_mode: str | None, firmware: str | None) -> Wanted | None:
    from imagepack.cli.parse import parse_choice
    from imagepack.core.errors import InvalidValueError
    from imagepack.formats.partitions import Firmware
    from imagepack.oci.metadata.model import LaunchMode

    if target is None:
        given = [flag for flag, value in (("--launch-mode", launch_mode), ("--firmware", firmware)) if value]
        if given:
            raise InvalidValueError(f"{', '.join(given)} applies only with --for oci")
        return None
    where = parse_choice(Target, target, "--for")
    assert where is not None
    mode, boots = parse_choice(LaunchMode, launch_mode, "--launch-mode"), parse_choice(Firmware, firmware, "--firmware")
    if where is not Target.OCI and (mode or boots):
        raise InvalidValueError(f"--launch-mode and --firmware apply only with --for oci, not --for {where.value}")
    return Wanted(where, mode.value if mode else None, boots.value if boots else None)


def readiness(report: dict[str, Any], wanted: Wanted) -> dict[str, Any]:
    """The readiness rules on `report`, with a .oci's metadata filling in what was not given."""
    meta = report.get("metadata") or {}
    if wanted.target is Target.OCI:
        wanted = Wanted(
            wanted.target,
            wanted.launch_mode or meta.get("launch_mode"),
            wanted.firmware or meta.get("firmware"),
            meta.get("operating_system"),
            meta.get("operating_system_version"),
        )
    findings = check(report, wanted)
    return {
        "for": wanted.target.value,
        "launch_mode": (wanted.launch_mode or "PARAVIRTUALIZED") if wanted.target is Target.OCI else None,
        "firmware": wanted.firmware,
        "ready": not any(f.severity.value == "error" for f in findings),
        "findings": [finding_json(f) for f in findings],
    }


def _block_line(block: dict[str, Any]) -> str:
    kind = block.get("type_name") or block.get("type") or ""
    fs = block["filesystem"]
    if not block["readable"] and fs not in NO_FILES:
        fs += " (imagepack cannot read it)"
    ids = [f"UUID {block['uuid']}" if block["uuid"] else "", f"label {block['label']!r}" if block["label"] else ""]
    extra = f" [{kind}]" if kind else ""
    error = f"; cannot open: {block['error']}" if block.get("error") else ""
    named = ", ".join(i for i in ids if i) or "no UUID"
    if fs == BIOS_BOOT:  # raw boot code, with no UUID of its own to miss
        return f"  {block['name']}: {human_size(block['size'])}{extra}, GRUB's core image (no file system){error}"
    return f"  {block['name']}: {human_size(block['size'])}{extra}, {fs}, {named}{error}"


def _os_lines(system: dict[str, Any]) -> list[str]:
    if system.get("family") is None:
        return ["os: none found (no Linux root file system, no Windows system volume)"]
    if system["family"] == "windows":
        return [f"os: Windows (system volume {system['root']})"]
    name = system.get("pretty_name") or " ".join(v for v in (system.get("name"), system.get("version")) if v)
    lines = [f"os: {name or 'Linux (it states no name)'} (id {system.get('id')}, version {system.get('version')}; "
             f"from {system.get('source') or 'no release file'})"]  # fmt: skip
    mounts = ", ".join(f"{m['path']} on {m['block']}" for m in system.get("mounts", []))
    lines.append(f"  file systems: {mounts}")
    lines += [f"  not mounted: {u['path']} ({u['device']}: {u['why']})" for u in system.get("unmounted", [])]
    lines += [f"  {problem}" for problem in system.get("problems", [])]
    return lines


def print_report(report: dict[str, Any]) -> None:
    """The report as a person reads it at a glance."""
    storage, boot = report["storage"], report["boot"]
    print(f"{report['path']}: {report['input']}, {human_size(report['virtual_size'])}")
    print(f"storage: {storage['partition_table']} partition table")
    for block in storage["blocks"]:
        print(_block_line(block))
    for group in storage["volume_groups"]:
        if "error" in group:
            print(f"  LVM on {group['physical_volume']}: cannot read: {group['error']}")
        else:
            print(f"  LVM volume group {group['name']}: {', '.join(group['logical_volumes']) or 'no logical volumes'}")
    for line in _os_lines(report["os"]):
        print(line)
    boot_firmware = " and ".join(boot["firmware"]) or "none found (no EFI loader, no MBR boot code)"
    print(f"boot: {boot_firmware}; loader {boot['loader'] or 'not found'}")
    for name, loaders in boot["esp_loaders"].items():
        print(f"  {name}: {', '.join(loaders) or 'an EFI system partition without a loader'}")
    if boot["mbr_boot_code"]:
        print(f"  MBR boot code: {boot['mbr_boot_code']}")
    if report["encrypted"]:
        print(f"encrypted: {', '.join(report['encrypted'])}")
    for line in config_lines(report):
        print(line)
    if "readiness" in report:
        for line in readiness_lines(report["readiness"]):
            print(line)
