"""Whether an archive (or a plain qcow2/vmdk) is ready for OCI's image import, with what to do about each
problem found."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagepack.compression import inner_name
from imagepack.core.errors import InputError, UnreadableError
from imagepack.core.openfile import opened_input
from imagepack.core.problems import Problem, Remedy, Severity
from imagepack.formats import DEFAULT_MAX_SIZE, ImageFormat, spec
from imagepack.formats.partitions import PartitionTable
from imagepack.oci.archive import DISK_NAME
from imagepack.oci.metadata import ImageMetadata, OsName, check_metadata, import_guidance
from imagepack.sources.disk import SourceImage, partition_layout
from imagepack.sources.identify import Identity, identify
from imagepack.sources.oci import OpenedArchive
from imagepack.sources.open import OpenOptions, Source, open_source
from imagepack.sources.ova.reader import OpenedOva
from imagepack.tools import qemu_img as qemu
from imagepack.verbs.boot.run import BootRequest, boot_source
from imagepack.verbs.inspect.rules import Target, Wanted
from imagepack.verbs.inspect.run import readiness


@dataclass
class VerifyReport:
    path: Path
    kind: str  # "oci" or the disk format
    problems: list[Problem] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    guest: dict[str, Any] | None = None  # what the guest inside states, and the readiness rules on it

    @property
    def ready(self) -> bool:
        return not any(p.severity is Severity.ERROR for p in self.problems)

    def error(self, code: str, message: str) -> None:
        """OCI's import would fail, or the instance would not boot."""
        self.problems.append(Problem(code, message))

    def warning(self, code: str, message: str) -> None:
        self.problems.append(Problem(code, message, severity=Severity.WARNING))

    def to_json(self) -> dict[str, Any]:
        return {
            "source": str(self.path),
            "format": self.kind,
            "virtual_size": self.facts.get("virtual_size"),
            "ready": self.ready,
            "facts": self.facts,
            "problems": [p.to_json() for p in self.problems],
            "guest": self.guest,
        }


def verify_path(
    path: Path, options: OpenOptions = OpenOptions(), *, strict: bool = False, boot: BootRequest | None = None
) -> VerifyReport:
    """Check `path`, opened as `options` say (`disk`: which of an OVA's disks; `scratch`: where a compressed input
    is decompressed to); raises only when an archive cannot be read at all, or a boot test (`boot`) cannot run.
    Refusals, and a boot that fails, become problems. `path` is opened once; every reader reads that file."""
    with opened_input(path) as opened:
        return _verify_path(opened, identify(opened, claimed=options.claimed), options, strict=strict, boot=boot)


def _verify_path(
    path: Path, identity: Identity, options: OpenOptions, *, strict: bool, boot: BootRequest | None
) -> VerifyReport:
    archive = identity.archive
    compressed = identity.stream is not None
    report = VerifyReport(path, "oci" if archive else "unknown")
    try:
        with open_source(path, options, identity=identity) as source:
            if source.compression is not None:
                report.facts["compression"] = source.compression
                _check_compressed(report, source)
            if source.archive is not None:
                report.kind = "oci"
                _check_archive(report, source.archive, strict=strict)
                _check_disk(report, source.disk, key_prefix="disk_")
                _check_firmware(report, source.archive.metadata)
            elif source.ova is not None:
                report.kind = "ova"
                _check_ova(report, source.ova)
                _check_importable(report, source.disk)
                _check_disk(report, source.disk, key_prefix="disk_")
            else:
                report.kind = source.disk.format.value
                _check_importable(report, source.disk)
                _check_disk(report, source.disk)
            _check_guest(report, source)
            if boot is not None:
                _check_boot(report, source, boot)
    except InputError as e:
        if (archive or compressed) and isinstance(e, UnreadableError):
            raise  # an archive or a stream that cannot be parsed is not a list of problems: exit 1
        report.problems.append(Problem(e.code, e.message, e.remedy, value=e.value))
    return report


def _check_guest(report: VerifyReport, source: Source) -> None:
    """The readiness rules on the guest inside (inspect's), for the archive's launch mode and firmware: an error
    among them makes the image not ready. A guest that cannot be read is a warning that it was not checked."""
    wanted = Wanted()
    if source.archive is not None:
        meta = source.archive.metadata
        wanted = Wanted(
            Target.OCI,
            meta.launch_mode.value,
            meta.launch.firmware.value,
            meta.operating_system,
            meta.operating_system_version,
        )
    checked = readiness(source, str(report.path), wanted)
    report.guest = checked.guest
    report.problems.extend(checked.problems)


def _check_boot(report: VerifyReport, source: Source, request: BootRequest) -> None:
    """One more check: the disk boots, as OCI would launch it, to the marker."""
    booted = boot_source(source, request)
    report.facts["boot"] = booted.to_json()
    if not booted.booted:
        report.problems.append(Problem(f"boot.{booted.outcome.value}", f"boot test: {booted.message}", booted.remedy))


def _check_compressed(report: VerifyReport, source: Source) -> None:
    """OCI imports the file exactly as it is uploaded: a compressed one is not ready, whatever it holds."""
    if source.ova is not None:
        fix = f"'imagepack pack {report.path} DST.oci' builds an archive of its disk"
    elif source.archive is not None or spec(source.disk.format).oci_imports(source.disk.inspection):
        fix = f"'imagepack decompress {report.path}' writes {inner_name(report.path)}, the file to upload"
    else:
        fix = f"'imagepack convert {report.path} {_converted_name(report.path)}' writes a disk OCI imports"
    article = "an" if source.compression == "xz" else "a"
    report.error(
        "oci.compressed",
        f"this is {article} {source.compression} stream, and OCI imports the file exactly as it is uploaded; {fix}",
    )


def _converted_name(path: Path) -> Path:
    """Where `convert` would write a qcow2 of `path`: its name without any compression suffix, as .qcow2."""
    return path.with_name(inner_name(path)).with_suffix(".qcow2")


def _check_archive(report: VerifyReport, opened: OpenedArchive, *, strict: bool) -> None:
    layout, metadata = opened.layout, opened.metadata
    report.facts.update(
        format="oci",
        compressed=layout.compressed,
        disk_member=layout.disk.name,
        disk_size=layout.disk.size,
        launch_mode=metadata.launch_mode.value,
        firmware=metadata.launch.firmware.value,
        operating_system=f"{metadata.operating_system} {metadata.operating_system_version}",
    )
    if layout.disk.name != DISK_NAME:
        report.warning(
            "oci.disk-member-name", f"disk member is named '{layout.disk.name}'; OCI's own exports use '{DISK_NAME}'"
        )
    # The archive's metadata as it is: a typo is reported, and meta set is what changes it.
    report.problems.extend(check_metadata(metadata, strict=strict, os_name=OsName.REPORTED, fix=Remedy.SET_OS))
    report.problems.extend(import_guidance(metadata.operating_system, metadata.operating_system_version))


def _check_ova(report: VerifyReport, opened: OpenedOva) -> None:
    descriptor = opened.layout.descriptor
    report.facts.update(
        format="ova",
        disk_member=opened.chosen.file,
        disk_index=opened.index,
        disks=len(descriptor.disks),
        manifest_verified=opened.verified if opened.layout.manifest else None,
        firmware=descriptor.firmware,
        os_type=descriptor.os_type,
    )
    report.problems.append(
        Problem(
            "ova.not-imported",
            f"OCI imports the disk, not the OVA: 'imagepack pack {report.path} DST.oci' builds an archive of it",
            severity=Severity.NOTE,
        )
    )


def _check_firmware(report: VerifyReport, metadata: ImageMetadata) -> None:
    firmware_from_disk = report.facts.get("firmware_guess")
    if firmware_from_disk and firmware_from_disk != metadata.launch.firmware.value:
        report.warning(
            "oci.firmware-disagrees",
            f"metadata says firmware {metadata.launch.firmware.value} but the disk's partition table "
            f"suggests {firmware_from_disk}; fix it with 'imagepack meta set {report.path} firmware=...'",
        )


def _check_importable(report: VerifyReport, disk: SourceImage) -> None:
    """Whether OCI's import takes this disk format (and subformat) at all."""
    entry = spec(disk.format)
    if entry.oci_imports(disk.inspection):
        return
    if entry.oci_subformats:
        takes = " or ".join(sorted(entry.oci_subformats))
        report.error(
            "oci.subformat",
            f"OCI imports {disk.format.value} only as {takes}, not {disk.inspection.subformat}; "
            f"convert it with -o subformat={sorted(entry.oci_subformats)[-1]}",
        )
        return
    report.error(
        "oci.format",
        f"OCI imports qcow2, vmdk and .oci, not {disk.format.value}; "
        f"convert it with 'imagepack convert {report.path} {_converted_name(report.path)}'",
    )


def _check_disk(report: VerifyReport, disk: SourceImage, *, key_prefix: str = "") -> None:
    """`key_prefix` marks the disk's format keys when the file checked is an archive, whose own format is "oci"."""
    report.facts.update(
        {
            f"{key_prefix}format": disk.format.value,
            f"{key_prefix}subformat": disk.inspection.subformat,
            "virtual_size": disk.virtual_size,
        }
    )
    if disk.virtual_size > DEFAULT_MAX_SIZE:
        report.error("oci.too-large", f"virtual size {disk.virtual_size} bytes is above OCI's import limit of 400 GiB")
    if disk.format is ImageFormat.QCOW2:
        checked = disk.check or qemu.check(disk.ref)  # opening it ran the check already
        report.facts["check"] = checked.describe()
        if checked.returncode == 2:
            report.error(
                "image.damaged", f"qcow2 check found {checked.describe()}; repair a copy with 'qemu-img check -r all'"
            )
        elif checked.returncode == 3:
            report.warning(
                "image.leaks",
                f"qcow2 check found {checked.describe()}; harmless, but 'qemu-img check -r leaks' fixes it",
            )
    layout = partition_layout(disk)
    report.facts["partition_table"] = layout.table.value
    guess = layout.firmware_guess
    report.facts["firmware_guess"] = guess.value if guess else None
    if layout.table is PartitionTable.NONE:
        report.error(
            "oci.no-partition-table",
            "the disk has no MBR or GPT partition table; OCI boots only a disk with one and a boot loader",
        )
