"""`imagepack info PATH`: describe a disk image or a .oci archive."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from imagepack.cli.output import describe_problem, human_size
from imagepack.cli.run import Run, reporting
from imagepack.cli.shared_options import DISK, FROM_FORMAT, MAX_SIZE, SCRATCH, VHD_SIZE

if TYPE_CHECKING:
    from imagepack.verbs.info import ArchiveInfo, ImageInfo, OvaInfo
    from imagepack.verbs.seed import IsoInfo

EXAMPLES = """\b
Examples:
  imagepack info disk.vmdk
  imagepack info --json disk.oci | jq .virtual_size
  imagepack info seed.iso"""


def register(app: typer.Typer) -> None:
    app.command("info", epilog=EXAMPLES)(info_command)


@reporting
def info_command(
    path: Path = typer.Argument(..., metavar="PATH", help="Disk image to describe."),
    from_format: str = FROM_FORMAT,
    max_size: str = MAX_SIZE,
    vhd_size: str = VHD_SIZE,
    disk: int | None = DISK,
    scratch: Path | None = SCRATCH,
    *,
    run: Run,
) -> None:
    """Describe a disk image (format, sizes, partition table, firmware guess), a .oci archive, an OVA or an ISO."""
    from imagepack.cli.parse import open_options
    from imagepack.verbs.info import describe

    options = open_options(from_format, max_size, vhd_size=vhd_size, disk=disk, scratch=scratch)
    with run.progress(f"reading {path.name}") as on_progress:
        found = describe(path, options.following(on_progress))
    run.show(found, lambda: _print(found), even_quiet=True)


def _print(found: ImageInfo | ArchiveInfo | OvaInfo | IsoInfo) -> None:
    from imagepack.verbs.info import ArchiveInfo, OvaInfo
    from imagepack.verbs.seed import IsoInfo

    if isinstance(found, ArchiveInfo):
        _print_archive(found)
    elif isinstance(found, OvaInfo):
        _print_ova(found)
    elif isinstance(found, IsoInfo):
        _print_iso(found)
    else:
        _print_image(found)


def _print_archive(found: ArchiveInfo) -> None:
    compression = found.to_json()["compression"]
    print(f"{found.path}: .oci archive{f' ({compression})' if compression else ''}")
    for member in found.to_json()["members"]:
        print(f"  member {member['name']}: {member['size']} bytes at offset {member['data_offset']}")
    meta = found.metadata
    launch = meta.launch
    print(f"  operating system: {meta.operating_system} {meta.operating_system_version}")
    print(f"  launch mode: {meta.launch_mode.value}, firmware {launch.firmware.value}")
    for shape in meta.shapes:
        print(f"  shape: {shape.name}")
    print("disk:")
    _print_image(found.disk, indent="  ")


def _print_ova(found: OvaInfo) -> None:
    data = found.to_json()
    compression = data["compression"]
    print(f"{found.path}: OVA{f' ({compression})' if compression else ''}")
    for disk in data["disks"]:
        chosen = " (read)" if disk["index"] == found.index else ""
        controller = disk["controller"] or "unknown controller"
        print(f"  disk {disk['index']}: {disk['file']}, {human_size(disk['capacity'])}, {controller}{chosen}")
    if data["manifest"] is not None:
        print(f"  manifest: verified ({', '.join(found.verified)})")
    print(f"  firmware: {data['firmware'] or 'not stated'}")
    print(f"  guest OS: {data['os_type'] or 'not stated'}")
    if found.disk is None:
        print("  (several disks: --disk N describes one)")
        return
    print("disk:")
    _print_image(found.disk, indent="  ")


def _print_iso(found: IsoInfo) -> None:
    extensions = [name for name, present in (("Rock Ridge", found.rock_ridge), ("Joliet", found.joliet)) if present]
    print(f"{found.path}: ISO 9660 image ({', '.join(extensions) or 'no Rock Ridge or Joliet names'})")
    print(
        f"  label: {found.label}"
        + (f" (Joliet: {found.joliet_label})" if found.joliet_label not in (None, found.label) else "")
    )
    for file in found.files:
        plain = f"  [{file.iso_name}]" if file.iso_name.removesuffix(";1") != file.path.upper() else ""
        print(f"  {file.path}: {file.size} bytes{plain}")
    if found.truncated:
        print(f"  (listing cut short after {len(found.files)} files)")
    if found.nocloud_seed:
        print("  cloud-init NoCloud seed: yes")
    else:
        reasons = "; ".join(p.message for p in found.problems)
        print(f"  cloud-init NoCloud seed: no ({reasons})")


def _print_image(found: ImageInfo, indent: str = "") -> None:
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
        print(f"{indent}{key + ':':19}{value}")
    for problem in found.problems:
        print(f"{indent}{'refused:':19}{describe_problem(problem)}")
