"""Opening a disk image we do not trust: header checks in Python first, then `qemu-img info` under limits,
whose answer is checked again, then `qemu-img check` and the partition table against the disk's size (a damaged
or truncated image is refused before anything is written). Only a SourceImage that passed all of them is ever
handed to a conversion."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagepack.core.errors import InputError, QemuImgError
from imagepack.core.openfile import OpenedPath, open_input
from imagepack.core.problems import Remedy
from imagepack.formats import (
    ByteSource,
    ImageFormat,
    Inspection,
    Problem,
    SafetyPolicy,
    inspect_source,
    require_safe,
    spec,
)
from imagepack.formats.base import VhdSize
from imagepack.formats.partitions import HEAD_BYTES, PartitionLayout, read_partition_layout
from imagepack.formats.vhd import qemu_uses_geometry, size_driver_options, sizes_disagree
from imagepack.formats.vmdk import SINGLE_FILE_TYPES
from imagepack.tools import qemu_img as qemu

log = logging.getLogger("imagepack")

# What qemu-img check can check; vpc answers 63 ("does not support checks"), raw has nothing to check.
CHECKED_FORMATS = (ImageFormat.QCOW2, ImageFormat.VMDK, ImageFormat.VDI, ImageFormat.VHDX)


@dataclass
class SourceImage:
    """An input that passed both layers of checks, and what they learned about it."""

    label: str
    ref: qemu.ImageRef
    inspection: Inspection
    qemu_info: dict[str, Any] = field(default_factory=dict)
    check: qemu.CheckResult | None = None  # None: the format cannot be checked
    layout: PartitionLayout | None = None
    opened: OpenedPath | None = None  # the file the checks read, which every later reader reads too

    def require_unchanged(self) -> None:
        """Refuse a source that changed since it was opened (written, truncated, renamed over): whatever was
        read from it since may mix old and new bytes."""
        if self.opened is None:
            return
        self.opened.require_unchanged()
        if not self.ref.opened and self.opened.state is not None:
            _require_same_file(self.ref.path, self.opened)

    @property
    def format(self) -> ImageFormat:
        return self.inspection.format

    @property
    def virtual_size(self) -> int:
        return int(self.qemu_info.get("virtual-size", self.inspection.virtual_size))

    @property
    def allocated(self) -> int | None:
        actual = self.qemu_info.get("actual-size")
        return int(actual) if actual is not None else None


def _require_same_file(name: Path, opened: OpenedPath) -> None:
    """A source qemu reads by its name (the user allowed backing files): that name must still be the file opened."""
    try:
        now = os.stat(name)
    except OSError:
        now = None
    assert opened.state is not None
    if now is None or (now.st_dev, now.st_ino) != (opened.state.device, opened.state.inode):
        raise InputError(
            "the file was replaced while imagepack read it; nothing was written",
            subject=str(opened),
            code="input.changed",
        )


def inspect_file(
    path: Path,
    *,
    claimed: ImageFormat | None = None,
    policy: SafetyPolicy = SafetyPolicy(),
    offset: int = 0,
    size: int | None = None,
    label: str | None = None,
    whole: bool = True,
) -> Inspection:
    """Layer 1 alone: what the header bytes say, with the problems they raise (`whole`: see inspect_source)."""
    opened = open_input(path)
    try:
        with ByteSource(opened, offset=offset, size=size) as src:
            return inspect_source(
                src, claimed=claimed, name=Path(label) if label else opened, policy=policy, whole=whole
            )
    finally:
        if opened is not path:
            opened.close()


def recheck_qemu_info(found: dict[str, Any], expected: ImageFormat, policy: SafetyPolicy) -> list[Problem]:
    """Layer 2: what qemu-img itself says the image refers to, checked again."""
    problems: list[Problem] = []
    if found.get("format") != spec(expected).driver:
        problems.append(Problem("qemu.format", f"qemu-img reads it as {found.get('format')}, not {expected.value}"))
    if (found.get("backing-filename") or found.get("full-backing-filename")) and not policy.allow_backing:
        problems.append(
            Problem(
                "qemu.backing-file",
                f"qemu-img reports a backing file '{found.get('backing-filename')}'",
                Remedy.ALLOW_BACKING,
            )
        )
    specific = (found.get("format-specific") or {}).get("data") or {}
    if specific.get("data-file"):
        problems.append(Problem("qemu.data-file", "qemu-img reports an external data file"))
    if found.get("encrypted") or specific.get("encrypt"):
        problems.append(Problem("qemu.encrypted", "qemu-img reports an encrypted image; imagepack cannot read it"))
    if expected is ImageFormat.VMDK and not policy.allow_backing:
        create_type = specific.get("create-type")
        if create_type not in SINGLE_FILE_TYPES:
            problems.append(
                Problem(
                    "qemu.external-files", f"vmdk create type '{create_type}' reads other files", Remedy.ALLOW_BACKING
                )
            )
        if len(specific.get("extents") or []) > 1:
            problems.append(Problem("qemu.external-files", "vmdk has more than one extent", Remedy.ALLOW_BACKING))
    if int(found.get("virtual-size", 0)) > policy.max_size:
        problems.append(
            Problem(
                "image.size-limit",
                f"virtual size {found.get('virtual-size')} bytes is above the limit",
                Remedy.RAISE_MAX_SIZE,
                size=int(found.get("virtual-size", 0)),
            )
        )
    return problems


def open_image(
    path: Path,
    *,
    claimed: ImageFormat | None = None,
    policy: SafetyPolicy = SafetyPolicy(),
    offset: int = 0,
    size: int | None = None,
    label: str | None = None,
    inspection: Inspection | None = None,
) -> SourceImage:
    """All the layers; raises UnsafeImageError with the first problem, naming the option that allows it, or
    InputError for an image qemu-img cannot read or finds damaged. `inspection`: what inspect_file said of this
    same open file, where the caller asked already (its headers are not read twice).

    The file is opened once (unless `path` is already an opened input) and every check and every later reader
    reads that open file. Only when the user allowed backing files does qemu get its name, so that it can find
    the files the image names relative to it; then that name must still be the file opened when it is read."""
    shown = label or str(path)
    opened = open_input(path)
    if inspection is None:
        inspection = inspect_file(opened, claimed=claimed, policy=policy, offset=offset, size=size, label=label)
    require_safe(inspection.problems, shown)
    ref = qemu.ImageRef(
        Path(str(opened)) if policy.allow_backing else opened,
        inspection.format,
        offset,
        size if (offset or size is not None) else None,
        driver_options=_driver_options(inspection, policy, shown),
    )
    try:
        found = qemu.info(ref)
    except QemuImgError as e:
        raise _unreadable(e, ref, shown, "qemu-img cannot read this image") from None
    require_safe(recheck_qemu_info(found, inspection.format, policy), shown)
    image = SourceImage(shown, ref, inspection, found, check=_require_undamaged(ref, shown, found), opened=opened)
    image.layout = partition_layout(image)
    _require_table_fits(image)
    image.require_unchanged()
    return image


def _unreadable(e: QemuImgError, ref: qemu.ImageRef, shown: str, what: str) -> QemuImgError | InputError:
    if e.returncode is None:
        return e  # qemu-img itself is missing or timed out: not this image's fault
    error = InputError(f"{what}: {e.said or e.reason}", subject=shown, detail=e.detail)
    for name in ref.names():
        error.shown_as(name, shown)
    return error


def _driver_options(inspection: Inspection, policy: SafetyPolicy, shown: str) -> tuple[tuple[str, str], ...]:
    """For a VHD whose two sizes differ: the one the user asked for (current_size unless told otherwise),
    whichever qemu would have taken by itself, and a warning saying which."""
    if inspection.format is not ImageFormat.VHD or not sizes_disagree(inspection):
        return ()
    if qemu_uses_geometry(inspection) or policy.vhd_size is VhdSize.CHS:
        current, geometry = inspection.virtual_size, inspection.details["geometry_size"]
        used = (current, "current_size") if policy.vhd_size is VhdSize.CURRENT else (geometry, "chs")
        log.warning("%s: the footer says %d bytes but its geometry %d; using %d (%s)", shown, current, geometry, *used)
    return size_driver_options(inspection, policy.vhd_size)


def _require_undamaged(ref: qemu.ImageRef, shown: str, found: dict[str, Any]) -> qemu.CheckResult | None:
    """qemu-img check, where the format has one: corruptions (tables pointing past the end of the file or at
    each other) refuse the image; leaked clusters only waste space and are fine."""
    if ref.format not in CHECKED_FORMATS:
        return None
    damaged = "the image is damaged or truncated"
    try:
        checked = qemu.check(ref)
    except QemuImgError as e:
        raise _unreadable(e, ref, shown, f"{damaged}: qemu-img check cannot finish") from None
    if not checked.damaged:
        return checked
    count = checked.report.get("corruptions")
    corruptions = f"{count} corruption{'' if count == 1 else 's'}" if isinstance(count, int) else "corruptions"
    if found.get("dirty-flag"):
        # Not closed cleanly with lazy refcounts: stale refcounts read as corruptions, and check cannot tell
        # them from damage; qemu's own repair settles it.
        raise InputError(
            f"{damaged}, or was not closed cleanly (its dirty flag is set): qemu-img check found "
            f"{corruptions}; repair a copy with 'qemu-img check -r all' and convert that",
            subject=shown,
            code="image.damaged",
        )
    raise InputError(
        f"{damaged}: qemu-img check found {corruptions}; get a complete copy "
        f"(an interrupted download?), or repair a copy with 'qemu-img check -r all' and convert that",
        subject=shown,
        code="image.damaged",
    )


def _require_table_fits(image: SourceImage) -> None:
    """A partition table that claims sectors past the end of the disk means the disk lost its end (truncated,
    or read at the wrong size): converting it would quietly drop them."""
    layout = image.layout
    if layout is None or layout.table_end is None or layout.table_end <= image.virtual_size:
        return
    details = image.inspection.details
    by_geometry = image.format is ImageFormat.VHD and image.virtual_size == details.get("geometry_size")
    how = " (this VHD is read by its CHS geometry)" if by_geometry else ""
    raise InputError(
        f"its {layout.table.value.upper()} partition table ends at byte {layout.table_end} but the "
        f"disk has {image.virtual_size} bytes{how}; the end of the disk is missing",
        subject=image.label,
        code="image.partition-table-past-end",
    )


def partition_layout(image: SourceImage) -> PartitionLayout:
    """The guest's partition table; raw bytes are read directly, other formats through qemu-img."""
    if image.layout is not None:
        return image.layout
    if spec(image.format).is_flat(image.inspection):
        with ByteSource(image.ref.path, offset=image.ref.offset, size=image.ref.size) as src:
            return read_partition_layout(src.read(0, HEAD_BYTES))
    length = min(HEAD_BYTES, image.virtual_size - image.virtual_size % 512)
    return read_partition_layout(qemu.read_head(image.ref, length) if length else b"")
