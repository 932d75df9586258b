"""Compressed inputs whose output needs no temporary: a compressed qcow2 packed into a .oci is decompressed
straight into the disk member's place in the archive, a compressed raw disk written as raw straight into the
output. Each byte is decompressed and written once; every check `open_image` makes still runs, on the bytes in
their final place, before the output takes its name (a hostile stream never produces one)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from imagepack.compression import declared_size, peek
from imagepack.compression.bounded import Written, decompress_into, first_bound, require_inner_name_agrees
from imagepack.core.errors import MetadataError
from imagepack.core.openfile import require_unchanged
from imagepack.core.progress import Progress
from imagepack.files.atomic import atomic_output, check_free_space
from imagepack.formats import Container, Detection, ImageFormat, MemorySource, SafetyPolicy, detect, disk_size_limit
from imagepack.oci.archive import disk_data_offset, finish_archive, pad_member
from imagepack.oci.metadata import dump_metadata
from imagepack.sources.disk import SourceImage, open_image
from imagepack.sources.identify import Identity, SourceKind
from imagepack.writers.oci.pack import MetadataRequest, PackedArchive, archive_mtime, make_metadata, metadata_room

PEEK = 1024**2  # what is decompressed (into memory) to tell a qcow2 or a raw disk from anything else


class NotOnePass(Exception):
    """The content turned out to need the general path (a fixed VHD looks raw until its last bytes are read, a
    qcow2 may name a backing file that --allow-backing lets in and a conversion must flatten)."""


@dataclass(frozen=True)
class OnePass:
    """A compressed input that one of the one-pass writers takes: its stream and the disk format inside, and how
    it is to be read (the format the user claims for it, the safety policy)."""

    source: Path
    kind: Container
    format: ImageFormat
    claimed: ImageFormat | None
    policy: SafetyPolicy


def one_pass_for(
    source: Path,
    identity: Identity,
    *,
    oci: bool,
    fmt: ImageFormat | None,
    claimed: ImageFormat | None,
    policy: SafetyPolicy = SafetyPolicy(),
    plain: bool,
) -> OnePass | None:
    """Whether `source` can be written in one pass to a .oci (`oci`) or to a disk of `fmt`: a compressed qcow2 or
    raw disk, going out as the bytes it is (`plain`: no format option, no compression, no compressed output).
    `identity`: what `source` is (sources.identify)."""
    if not plain or not (oci or fmt is ImageFormat.RAW):
        return None
    kind = identity.stream if identity.kind is SourceKind.COMPRESSED else None
    if kind is None:
        return None
    content = _peek(source, kind).content  # None for a tar (a .oci or OVA, compressed) and anything else
    if content is None or (claimed is not None and claimed is not content):
        return None
    if (oci and content is ImageFormat.QCOW2) or (not oci and fmt is ImageFormat.RAW and content is ImageFormat.RAW):
        return OnePass(source, kind, content, claimed, policy)
    return None


def _peek(source: Path, kind: Container) -> Detection:
    """What the first PEEK bytes of the content are. Only a hint: the stream is checked again as it is written."""
    with MemorySource(source, peek(source, kind, PEEK)) as head:
        return detect(head)


def _decompress(
    plan: OnePass, fd: int, offset: int, temp: Path, target: Path, *, on_progress: Progress | None
) -> Written:
    """The stream decompressed into `fd` at `offset` (the temporary `temp` of `target`), checked as it is
    written for the format the plan expects."""
    return decompress_into(
        plan.source,
        plan.kind,
        fd,
        offset,
        written=temp,
        claimed=plan.claimed,
        want=plan.format,
        archive_ok=False,
        policy=plan.policy,
        where=target.parent,
        on_progress=on_progress,
    )


def pack_compressed(
    plan: OnePass, target: Path, request: MetadataRequest, *, sync: bool = False, on_progress: Progress | None = None
) -> tuple[PackedArchive, SourceImage]:
    """A .oci from a compressed qcow2: the stream goes straight into the disk member's place, its header checked
    after the first chunk and the rest bounded by it; then the member is opened in place through every check,
    and only then are the metadata (the partition table it reads is now there), the disk's tar header (its size
    is now known) and the trailer written, and the archive renamed into place."""
    source, policy = plan.source, plan.policy
    data_offset = disk_data_offset(metadata_room(request))  # refuses a request with no OS before any reading
    declared = declared_size(source, plan.kind)
    if declared is not None:
        check_free_space(target, data_offset + min(declared, disk_size_limit(policy.max_size)))
    mtime = archive_mtime()
    with atomic_output(target, sync=sync) as temp:
        fd = os.open(temp, os.O_RDWR | os.O_CLOEXEC)
        try:
            written = _decompress(plan, fd, data_offset, temp, target, on_progress=on_progress)
            require_unchanged(source)  # the whole stream is read: refused if it changed while it was
            size = pad_member(fd, data_offset, written.size)  # a whole number of sectors, as qemu reads it
            image = open_image(
                temp, claimed=ImageFormat.QCOW2, policy=policy, offset=data_offset, size=size, label=str(source)
            )
            if image.qemu_info.get("backing-filename"):
                raise NotOnePass  # allowed by --allow-backing: flattened by a conversion instead
            metadata, warnings, sources = make_metadata(request, image)
            metadata_bytes = dump_metadata(metadata)
            if disk_data_offset(len(metadata_bytes)) > data_offset:
                raise MetadataError("the metadata grew past the room kept for it (please report it)")
            disk_size = finish_archive(fd, metadata_bytes, data_offset, size, mtime=mtime)
        finally:
            os.close(fd)
    return PackedArchive(target, disk_size, metadata, True, warnings, sources=sources), image


def decompress_raw(
    plan: OnePass, target: Path, *, sync: bool = False, on_progress: Progress | None = None
) -> SourceImage:
    """A raw disk from a compressed raw disk: the stream goes straight into the output, runs of zeroes left as
    holes, then the output is opened through every check before it takes its name."""
    source, claimed, policy = plan.source, plan.claimed, plan.policy
    declared = declared_size(source, plan.kind)
    if declared is not None:
        check_free_space(target, min(declared, first_bound(policy, claimed, archive_ok=False)))
    with atomic_output(target, sync=sync) as temp:
        fd = os.open(temp, os.O_WRONLY | os.O_CLOEXEC)
        try:
            _decompress(plan, fd, 0, temp, target, on_progress=on_progress)
        finally:
            os.close(fd)
        image = open_image(temp, claimed=claimed, policy=policy, label=str(source))
        if image.format is not ImageFormat.RAW:
            raise NotOnePass  # a fixed VHD: its footer is its last 512 bytes
        if claimed is None:
            require_inner_name_agrees(source, image.format)
    return image
