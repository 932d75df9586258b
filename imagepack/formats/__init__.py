"""Format detection by content: every inspector looks at the bytes, and the name only has to agree."""

from __future__ import annotations

from pathlib import Path

from imagepack.errors import InputError, UnsafeImageError
from imagepack.formats.base import (
    DEFAULT_MAX_SIZE,
    ByteSource,
    Container,
    FormatInspector,
    ImageFormat,
    Inspection,
    Problem,
    SafetyPolicy,
    check_virtual_size,
    format_claimed_by_name,
    format_for_output_name,
)
from imagepack.formats.containers import detect_container
from imagepack.formats.qcow2 import Qcow2Inspector
from imagepack.formats.vdi import VdiInspector
from imagepack.formats.vhd import VhdInspector
from imagepack.formats.vmdk import VmdkInspector

__all__ = [
    "DEFAULT_MAX_SIZE",
    "ByteSource",
    "Container",
    "ImageFormat",
    "Inspection",
    "Problem",
    "SafetyPolicy",
    "detect_container",
    "detect_formats",
    "format_claimed_by_name",
    "format_for_output_name",
    "inspect_source",
    "require_safe",
]

INSPECTORS: tuple[type[FormatInspector], ...] = (Qcow2Inspector, VmdkInspector, VhdInspector, VdiInspector)


def detect_formats(src: ByteSource) -> list[ImageFormat]:
    """Every disk format whose signature the bytes carry; empty means raw (or a container)."""
    return [inspector.format for inspector in INSPECTORS if inspector.matches(src)]


def inspect_source(
    src: ByteSource,
    *,
    claimed: ImageFormat | None = None,
    name: Path | None = None,
    policy: SafetyPolicy = SafetyPolicy(),
) -> Inspection:
    """Decide the format from the content, check it against what the user or the file name claims, and
    read the header. Refuses ambiguity and disagreement; unsafe headers come back as `problems`."""
    label = name or src.path
    found = detect_formats(src)
    if len(found) > 1:
        both = " and ".join(f.value for f in found)
        raise InputError(f"{label}: content matches both {both}; refusing an ambiguous image")
    container = detect_container(src) if not found else None
    content = found[0] if found else ImageFormat.RAW
    what = f"a {container.value} file" if container else f"{content.value}"

    if claimed is not None:
        if claimed is not content:
            raise InputError(f"{label}: --from {claimed.value} was given but the content is {what}")
    else:
        by_name = format_claimed_by_name(Path(label))
        if container is not None:
            raise InputError(f"{label}: this is {what}, not a disk image; pass --from raw to take its bytes as a disk")
        if by_name is not None and by_name is not content:
            raise InputError(
                f"{label}: the name says {by_name.value} but the content is {what}; "
                f"pass --from {content.value} if the content is right"
            )

    if content is ImageFormat.RAW:
        inspection = Inspection(ImageFormat.RAW, src.size, details={"container": container and container.value})
        check_virtual_size(inspection, policy)
        return inspection
    inspector = next(i for i in INSPECTORS if i.format is content)
    return inspector.inspect(src, policy)


def require_safe(problems: list[Problem], label: object) -> None:
    """Raise the first refusal as the one line the user reads."""
    if problems:
        raise UnsafeImageError(f"{label}: {problems[0]}")
