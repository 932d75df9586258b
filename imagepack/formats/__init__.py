"""Format detection by content: one detection for every verb. Every signature is looked for (disk formats,
formats qemu knows that we do not convert, archives, compressed streams, ISO 9660); content that carries two is
refused, and the name only has to agree."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from imagepack.core.errors import InputError, UnsafeImageError
from imagepack.core.problems import Problem, Remedy
from imagepack.formats.base import (
    DEFAULT_MAX_SIZE,
    ByteSource,
    Container,
    ImageFormat,
    Inspection,
    MemorySource,
    SafetyPolicy,
    check_virtual_size,
    disk_size_limit,
)
from imagepack.formats.containers import DECOMPRESS, DESCRIPTIONS, detect_containers, is_text
from imagepack.formats.foreign import ForeignFormat, detect_foreign
from imagepack.formats.registry import (
    FORMATS,
    FormatSpec,
    format_claimed_by_name,
    format_for_output_name,
    parse_format,
    spec,
)

log = logging.getLogger("imagepack")
SECTOR = 512

__all__ = [
    "DEFAULT_MAX_SIZE",
    "FORMATS",
    "ByteSource",
    "Container",
    "Detection",
    "FormatSpec",
    "ImageFormat",
    "Inspection",
    "MemorySource",
    "Problem",
    "SafetyPolicy",
    "detect",
    "disk_size_limit",
    "format_claimed_by_name",
    "format_for_output_name",
    "inspect_source",
    "not_a_disk",
    "parse_format",
    "require_name_agrees",
    "require_safe",
    "require_whole_sectors",
    "spec",
]


@dataclass(frozen=True)
class Detection:
    """Every signature found in one file."""

    formats: tuple[ImageFormat, ...]  # disk formats imagepack reads
    foreign: tuple[ForeignFormat, ...]  # disk formats it does not
    containers: tuple[Container, ...]  # archives, compressed streams, ISO 9660

    @property
    def names(self) -> list[str]:
        return [*(f.value for f in self.formats), *(f.name for f in self.foreign), *(c.value for c in self.containers)]

    @property
    def ambiguous(self) -> bool:
        return len(self.names) > 1

    @property
    def content(self) -> ImageFormat | None:
        """The disk format the content is: one we read, raw when nothing matched, None when it is something else."""
        if self.ambiguous or self.foreign or self.containers:
            return None
        return self.formats[0] if self.formats else ImageFormat.RAW

    @property
    def archive(self) -> Container | None:
        """TAR or GZIP when that is all the file is: the shape of a .oci archive."""
        if self.containers in ((Container.TAR,), (Container.GZIP,)) and not self.formats and not self.foreign:
            return self.containers[0]
        return None

    @property
    def iso(self) -> bool:
        """An ISO 9660 image and nothing else (no disk format in its system area)."""
        return self.containers == (Container.ISO,) and not self.formats and not self.foreign

    def describe(self) -> str:
        """What the content is, for a message: a disk format by its name, anything else with its article."""
        if self.foreign:
            return self.foreign[0].what
        if self.containers:
            return DESCRIPTIONS[self.containers[0]]
        return (self.formats[0] if self.formats else ImageFormat.RAW).value


def detect(src: ByteSource) -> Detection:
    """Every signature in `src`; bytes that match none and read as text are text, never a raw disk."""
    disks = tuple(entry.format for entry in FORMATS.values() if entry.inspector and entry.inspector.matches(src))
    foreign = tuple(detect_foreign(src))
    containers = tuple(detect_containers(src))
    if not (disks or foreign or containers) and is_text(src):
        containers = (Container.TEXT,)
    return Detection(disks, foreign, containers)


def _compressed(found: Detection) -> bool:
    return any(container in DECOMPRESS for container in found.containers)


def not_a_disk(found: Detection, label: object, *, error: type[InputError] = InputError) -> InputError:
    """The refusal of a file that is not a disk we read: what it is, and what to do with it (`error`: the
    refusal's class, where the caller says how bad it is)."""
    if found.ambiguous:
        both = " and ".join(found.names)
        return error(
            f"content matches both {both}; refusing an ambiguous file "
            "(tools that read it as one format would see other data than those that read it as the other)",
            subject=str(label),
            code="input.ambiguous",
        )
    if found.foreign:
        foreign = found.foreign[0]
        return error(
            f"this is {foreign.what}, a format imagepack does not read; {foreign.advice}",
            subject=str(label),
            code=f"input.{foreign.name}",
        )
    container = found.containers[0]
    what = DESCRIPTIONS[container]
    if container in DECOMPRESS:
        return error(
            f"this is {what}, not a disk image; decompress it first "
            f"({DECOMPRESS[container]} {Path(str(label)).name}) and give imagepack the result",
            subject=str(label),
            code="input.compressed",
        )
    if container is Container.ISO:
        return error(
            f"this is {what}, not a disk image; take its bytes as a raw disk only if it is a hybrid "
            "image meant to be written to a disk as it is",
            subject=str(label),
            code="input.iso",
            remedy=Remedy.STATE_FORMAT,
            value="raw",
        )
    return error(
        f"this is {what}, not a disk image",
        subject=str(label),
        code=f"input.{container.value}",
        remedy=Remedy.STATE_FORMAT,
        value="raw",
    )


def require_name_agrees(label: Path, content: ImageFormat, *, name: Path | None = None) -> None:
    """Refuses content of another disk format than the file's name (`name`, else `label`) claims: `disk.qcow2`
    holding a raw disk is a mix-up the user should hear of, not a guess to make."""
    by_name = format_claimed_by_name(name or label)
    if by_name is not None and by_name is not content:
        raise InputError(
            f"{label}: the name says {by_name.value} but the content is {content.value}",
            code="input.name-disagrees",
            remedy=Remedy.STATE_FORMAT,
            value=content.value,
        )


def inspect_source(
    src: ByteSource,
    *,
    claimed: ImageFormat | None = None,
    name: Path | None = None,
    policy: SafetyPolicy = SafetyPolicy(),
    whole: bool = True,
) -> Inspection:
    """Decide the format from the content, check it against what the user or the file name claims, and
    read the header. Refuses ambiguity and disagreement; unsafe headers come back as `problems`. `whole`: `src`
    is the whole file, not its first bytes (then a raw disk's length is checked too)."""
    label = name or src.path
    found = detect(src)
    if found.ambiguous or found.foreign:
        raise not_a_disk(found, label)
    content = found.content
    if claimed is not None:
        # `--from raw` may take the bytes of an ISO or an archive as a disk (a hybrid ISO is one); never those of
        # a disk format or a compressed stream, which would copy its container bytes instead of its guest data.
        if content is None and claimed is ImageFormat.RAW and not found.foreign and not _compressed(found):
            content = ImageFormat.RAW
        if claimed is not content:
            if _compressed(found) or found.foreign:
                raise not_a_disk(found, label)
            raise InputError(f"{label}: the format given is {claimed.value} but the content is {found.describe()}")
    elif content is None:
        raise not_a_disk(found, label)
    else:
        require_name_agrees(label, content)

    inspector = spec(content).inspector
    if inspector is None:
        if whole:
            require_whole_sectors(src.size, label, stated=claimed is not None)
        inspection = Inspection(ImageFormat.RAW, src.size)
        if found.containers:
            inspection.details["container"] = found.containers[0].value
        check_virtual_size(inspection, policy)
        return inspection
    return inspector.inspect(src, policy)


def require_whole_sectors(size: int, label: object, *, stated: bool) -> None:
    """A disk is a whole number of 512-byte sectors; bytes taken as raw that are not were never one, unless the
    user says they are (qemu then reads them padded with zeroes to the next sector, and we say so)."""
    if size % SECTOR == 0:
        return
    padded = size + SECTOR - size % SECTOR
    if stated:
        log.warning(
            "%s: %d bytes is not a whole number of 512-byte sectors; the disk is read as %d bytes, its last "
            "sector padded with %d zero bytes",
            label,
            size,
            padded,
            padded - size,
        )
        return
    raise InputError(
        f"{label}: {size} bytes is not a whole number of 512-byte sectors, so it is not a disk image "
        f"(read as a raw disk, it would be padded with zeroes to {padded} bytes)",
        code="input.partial-sector",
        remedy=Remedy.STATE_FORMAT,
        value="raw",
    )


def require_safe(problems: list[Problem], label: object) -> None:
    """Raise the first refusal as the one line the user reads."""
    if problems:
        first = problems[0]
        raise UnsafeImageError.from_problem(first, subject=str(label))
