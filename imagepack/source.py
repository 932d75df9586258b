"""Opening an input image we do not trust: header checks in Python first, then `qemu-img info` under limits,
whose answer is checked again. Only a SourceImage that passed both is ever handed to a conversion."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagepack import qemu
from imagepack.errors import InputError, QemuImgError
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
from imagepack.formats.vmdk import SINGLE_FILE_TYPES
from imagepack.partitions import HEAD_BYTES, PartitionLayout, read_partition_layout


@dataclass
class SourceImage:
    """An input that passed both layers of checks, and what they learned about it."""

    label: str
    ref: qemu.ImageRef
    inspection: Inspection
    qemu_info: dict[str, Any] = field(default_factory=dict)

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


def require_regular_file(path: Path) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise InputError(f"{path}: is {kind}; imagepack reads only regular files")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied")


def inspect_file(
    path: Path,
    *,
    claimed: ImageFormat | None = None,
    policy: SafetyPolicy = SafetyPolicy(),
    offset: int = 0,
    size: int | None = None,
    label: str | None = None,
) -> Inspection:
    """Layer 1 alone: what the header bytes say, with the problems they raise."""
    require_regular_file(path)
    with ByteSource(path, offset=offset, size=size) as src:
        return inspect_source(src, claimed=claimed, name=Path(label) if label else path, policy=policy)


def recheck_qemu_info(found: dict[str, Any], expected: ImageFormat, policy: SafetyPolicy) -> list[Problem]:
    """Layer 2: what qemu-img itself says the image refers to, checked again."""
    problems: list[Problem] = []
    if found.get("format") != spec(expected).driver:
        problems.append(Problem(f"qemu-img reads it as {found.get('format')}, not {expected.value}"))
    if (found.get("backing-filename") or found.get("full-backing-filename")) and not policy.allow_backing:
        problems.append(
            Problem(f"qemu-img reports a backing file '{found.get('backing-filename')}'", "--allow-backing")
        )
    specific = (found.get("format-specific") or {}).get("data") or {}
    if specific.get("data-file"):
        problems.append(Problem("qemu-img reports an external data file"))
    if found.get("encrypted") or specific.get("encrypt"):
        problems.append(Problem("qemu-img reports an encrypted image; imagepack cannot read it"))
    if expected is ImageFormat.VMDK and not policy.allow_backing:
        create_type = specific.get("create-type")
        if create_type not in SINGLE_FILE_TYPES:
            problems.append(Problem(f"vmdk create type '{create_type}' reads other files", "--allow-backing"))
        if len(specific.get("extents") or []) > 1:
            problems.append(Problem("vmdk has more than one extent", "--allow-backing"))
    if int(found.get("virtual-size", 0)) > policy.max_size:
        problems.append(Problem(f"virtual size {found.get('virtual-size')} bytes is above the limit", "--max-size"))
    return problems


def open_image(
    path: Path,
    *,
    claimed: ImageFormat | None = None,
    policy: SafetyPolicy = SafetyPolicy(),
    offset: int = 0,
    size: int | None = None,
    label: str | None = None,
) -> SourceImage:
    """Both layers; raises UnsafeImageError with the first problem, naming the option that allows it."""
    shown = label or str(path)
    inspection = inspect_file(path, claimed=claimed, policy=policy, offset=offset, size=size, label=label)
    require_safe(inspection.problems, shown)
    ref = qemu.ImageRef(path, inspection.format, offset, size if (offset or size is not None) else None)
    try:
        found = qemu.info(ref)
    except QemuImgError as e:
        if e.returncode is None:
            raise  # qemu-img itself is missing or timed out: not this image's fault
        reason = e.message.removeprefix("qemu-img info failed: ")
        reason = reason.replace(ref.image_opts(), shown).replace(str(ref.path), shown)
        raise InputError(f"{shown}: qemu-img cannot read this image: {reason}", detail=e.detail) from None
    require_safe(recheck_qemu_info(found, inspection.format, policy), shown)
    return SourceImage(shown, ref, inspection, found)


def partition_layout(image: SourceImage) -> PartitionLayout:
    """The guest's partition table; raw bytes are read directly, other formats through qemu-img."""
    if spec(image.format).is_flat(image.inspection):
        with ByteSource(image.ref.path, offset=image.ref.offset, size=image.ref.size) as src:
            return read_partition_layout(src.read(0, HEAD_BYTES))
    length = min(HEAD_BYTES, image.virtual_size - image.virtual_size % 512)
    return read_partition_layout(qemu.read_head(image.ref, length) if length else b"")
