"""Opening a .oci archive for reading: the checked layout, its metadata, and its disk as a SourceImage that
qemu-img reads in place, or from a bounded extraction when the archive is gzip-wrapped or the member sparse."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from imagepack.core.errors import ArchiveError
from imagepack.core.openfile import opened_input
from imagepack.files.leftovers import scratch_directory
from imagepack.formats import ByteSource, ImageFormat, SafetyPolicy, detect, disk_size_limit, require_safe
from imagepack.oci.archive import BLOCK, MAX_METADATA, OciLayout, read_layout
from imagepack.oci.metadata import ImageMetadata, load_metadata
from imagepack.sources.disk import SourceImage, inspect_file, open_image
from imagepack.tar.members import extract_member, read_member


@dataclass
class OpenedArchive:
    layout: OciLayout
    metadata: ImageMetadata
    metadata_bytes: bytes  # as stored, so that unpack need not read (or decompress) it again
    disk: SourceImage


def read_metadata(layout: OciLayout) -> ImageMetadata:
    return _load(layout, read_member(layout, layout.metadata, limit=MAX_METADATA))


def _load(layout: OciLayout, data: bytes) -> ImageMetadata:
    return load_metadata(data, label=f"{layout.path}:{layout.metadata.name}")


@contextlib.contextmanager
def open_archive(
    path: Path, *, policy: SafetyPolicy = SafetyPolicy(), scratch: Path | None = None
) -> Iterator[OpenedArchive]:
    """Check the archive and its disk (both layers of image checks). `scratch` is where a disk that cannot
    be read in place is extracted to (the system's temporary directory by default); it is removed after."""
    with opened_input(path) as opened:  # read once: every reader below reads this open file
        path = opened
        layout = read_layout(path, max_disk_size=disk_size_limit(policy.max_size))
        metadata_bytes = read_member(layout, layout.metadata, limit=MAX_METADATA)
        metadata = _load(layout, metadata_bytes)
        if layout.disk_in_place:
            size = in_place_size(layout)
            require_qcow2(path, layout.label, offset=layout.disk.data_offset, size=size)
            disk = open_image(
                path,
                claimed=ImageFormat.QCOW2,
                policy=policy,
                offset=layout.disk.data_offset,
                size=size,
                label=layout.label,
            )
            yield OpenedArchive(layout, metadata, metadata_bytes, disk)
            return
        with scratch_directory(scratch) as tmp:
            extracted = Path(tmp, "disk.qcow2")

            def check_header() -> int:
                """Refuse a hostile disk before the rest of it is extracted, and bound it by its own header."""
                require_qcow2(extracted, layout.label)
                inspection = inspect_file(extracted, claimed=ImageFormat.QCOW2, policy=policy, label=layout.label)
                require_safe(inspection.problems, layout.label)
                return disk_size_limit(inspection.virtual_size)

            fd = os.open(extracted, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                extract_member(
                    layout, layout.disk, fd, 0, limit=disk_size_limit(policy.max_size), after_first_chunk=check_header
                )
            finally:
                os.close(fd)
            disk = open_image(extracted, claimed=ImageFormat.QCOW2, policy=policy, label=layout.label)
            yield OpenedArchive(layout, metadata, metadata_bytes, disk)


def in_place_size(layout: OciLayout) -> int:
    """How much of the archive the disk member is read as in place: its size, rounded up to a whole 512-byte
    sector where the tar's own padding (zeroes, after a qcow2's last cluster) is there to cover it. qemu reads a
    region of a file only in whole sectors, and a qcow2 file need not be one (a fresh `qemu-img create`)."""
    whole = -(-layout.disk.size // BLOCK) * BLOCK
    if whole != layout.disk.size and layout.disk.data_offset + whole <= os.stat(layout.path).st_size:
        return whole
    return layout.disk.size


def require_qcow2(path: Path, label: str, *, offset: int = 0, size: int | None = None) -> None:
    with ByteSource(path, offset=offset, size=size) as src:
        found = detect(src)
    if found.content is not ImageFormat.QCOW2:
        if found.ambiguous:
            what = "content that matches " + " and ".join(found.names)
        elif found.content is ImageFormat.RAW:
            what = "not a disk image format we know (raw data?)"
        else:
            what = found.describe()
        raise ArchiveError(f"{label}: the disk member is {what}, not QCOW2; a .oci archive carries a QCOW2 disk")
