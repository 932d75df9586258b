"""Whether an archive (or a plain qcow2/vmdk) is ready for OCI's image import, with what to do about each
problem found."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagepack import qemu
from imagepack.errors import InputError, UnreadableError
from imagepack.formats import DEFAULT_MAX_SIZE, ImageFormat, SafetyPolicy
from imagepack.formats.base import ByteSource
from imagepack.formats.containers import detect_container
from imagepack.formats.vmdk import SINGLE_FILE_TYPES
from imagepack.oci.archive import DISK_NAME
from imagepack.oci.metadata import check_metadata
from imagepack.oci.reader import open_archive
from imagepack.partitions import PartitionTable
from imagepack.source import SourceImage, open_image, partition_layout, require_regular_file


@dataclass(frozen=True)
class Finding:
    severity: str  # "error": import would fail or misbehave; "warning": worth a look
    message: str


@dataclass
class VerifyReport:
    path: Path
    kind: str  # "oci" or the disk format
    findings: list[Finding] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def error(self, message: str) -> None:
        self.findings.append(Finding("error", message))

    def warning(self, message: str) -> None:
        self.findings.append(Finding("warning", message))

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "kind": self.kind,
            "ready": self.ready,
            "facts": self.facts,
            "findings": [{"severity": f.severity, "message": f.message} for f in self.findings],
        }


def verify_path(path: Path, *, strict: bool = False, policy: SafetyPolicy = SafetyPolicy()) -> VerifyReport:
    """Check `path`; raises only when it cannot be read at all. Refusals become findings."""
    require_regular_file(path)
    with ByteSource(path) as src:
        is_archive = detect_container(src) is not None
    if is_archive:
        return _verify_archive(path, strict=strict, policy=policy)
    return _verify_image(path, policy=policy)


def _verify_archive(path: Path, *, strict: bool, policy: SafetyPolicy) -> VerifyReport:
    report = VerifyReport(path, "oci")
    try:
        with open_archive(path, policy=policy) as opened:
            layout, metadata, disk = opened.layout, opened.metadata, opened.disk
            report.facts.update(
                compressed=layout.compressed,
                disk_member=layout.disk.name,
                disk_size=layout.disk.size,
                launch_mode=metadata.launch_mode.value,
                firmware=metadata.launch.firmware.value,
                operating_system=f"{metadata.operating_system} {metadata.operating_system_version}",
            )
            if layout.disk.name != DISK_NAME:
                report.warning(f"disk member is named '{layout.disk.name}'; OCI's own exports use '{DISK_NAME}'")
            errors, warnings = check_metadata(metadata, strict=strict)
            for message in errors:
                report.error(message)
            for message in warnings:
                report.warning(message)
            _check_disk(report, disk)
            firmware_from_disk = report.facts.get("firmware_guess")
            if firmware_from_disk and firmware_from_disk != metadata.launch.firmware.value:
                report.warning(
                    f"metadata says firmware {metadata.launch.firmware.value} but the disk's partition table "
                    f"suggests {firmware_from_disk}; fix it with 'imagepack meta set {path} firmware=...'"
                )
    except UnreadableError:
        raise
    except InputError as e:
        report.error(e.message)
    return report


def _verify_image(path: Path, *, policy: SafetyPolicy) -> VerifyReport:
    try:
        disk = open_image(path, policy=policy)
    except InputError as e:
        report = VerifyReport(path, "unknown")
        report.error(e.message)
        return report
    report = VerifyReport(path, disk.format.value)
    if disk.format is ImageFormat.VMDK:
        if disk.inspection.subformat not in SINGLE_FILE_TYPES:
            report.error(
                f"OCI imports vmdk only as monolithicSparse or streamOptimized, not "
                f"{disk.inspection.subformat}; convert it with -o subformat=streamOptimized"
            )
    elif disk.format is not ImageFormat.QCOW2:
        report.error(
            f"OCI imports qcow2, vmdk and .oci, not {disk.format.value}; "
            f"convert it with 'imagepack convert {path} {path.with_suffix('.qcow2')}'"
        )
    _check_disk(report, disk)
    return report


def _check_disk(report: VerifyReport, disk: SourceImage) -> None:
    report.facts.update(format=disk.format.value, subformat=disk.inspection.subformat, virtual_size=disk.virtual_size)
    if disk.virtual_size > DEFAULT_MAX_SIZE:
        report.error(f"virtual size {disk.virtual_size} bytes is above OCI's import limit of 400 GiB")
    if disk.format is ImageFormat.QCOW2:
        checked = disk.check or qemu.check(disk.ref)  # opening it ran the check already
        report.facts["check"] = checked.describe()
        if checked.returncode == 2:
            report.error(f"qcow2 check found {checked.describe()}; repair a copy with 'qemu-img check -r all'")
        elif checked.returncode == 3:
            report.warning(f"qcow2 check found {checked.describe()}; harmless, but 'qemu-img check -r leaks' fixes it")
    layout = partition_layout(disk)
    report.facts["partition_table"] = layout.table.value
    guess = layout.firmware_guess
    report.facts["firmware_guess"] = guess.value if guess else None
    if layout.table is PartitionTable.NONE:
        report.error("the disk has no MBR or GPT partition table; OCI boots only a disk with one and a boot loader")
