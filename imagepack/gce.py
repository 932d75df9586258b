"""A Google Compute Engine image tarball: `disk.raw` alone in a tar, usually gzip-wrapped and GNU-sparse
(`tar --format=oldgnu -Sczf`). Its member is checked like a .oci archive's; a plain, non-sparse member is read
in place, any other extracted once, bounded by the size limit, with its holes kept."""

from __future__ import annotations

import contextlib
import gzip
import os
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from imagepack.errors import ArchiveError
from imagepack.formats import ByteSource, Container, ImageFormat, SafetyPolicy, detect
from imagepack.image import SourceImage, open_image, require_regular_file
from imagepack.tarmembers import Member, extract_member, members, scan

DISK_NAME = "disk.raw"
_HOLDS = f"a GCE image tarball holds {DISK_NAME} only"


@dataclass(frozen=True)
class GceLayout:
    path: Path
    compressed: bool
    disk: Member

    @property
    def label(self) -> str:
        return f"{self.path}:{self.disk.name}"


def first_member_name(path: Path) -> str | None:
    """The name in the first tar header of `path` (a tar, or a gzip holding one), without reading further."""
    with ByteSource(path) as src:
        kind = detect(src).archive
        head = src.read(0, 512) if kind is Container.TAR else b""
    if kind is Container.GZIP:
        try:
            with gzip.open(path, "rb") as f:
                head = f.read(512)
        except (OSError, EOFError, zlib.error):
            return None
    if len(head) < 512 or head[257:262] != b"ustar":
        return None
    return head[:100].split(b"\0", 1)[0].decode("utf-8", "replace").removeprefix("./")


def is_gce_tarball(path: Path) -> bool:
    return first_member_name(path) == DISK_NAME


def read_gce_layout(path: Path, *, max_size: int) -> GceLayout:
    with ByteSource(path) as src:
        compressed = detect(src).archive is Container.GZIP
        file_size = src.size
    scan(path, compressed=compressed, file_size=file_size, member_limit=max_size)
    found = [member for _, member in members(path, compressed=compressed, holds=_HOLDS)]
    if [m.name for m in found] != [DISK_NAME]:
        names = ", ".join(m.name for m in found)
        raise ArchiveError(f"{path}: a GCE image tarball holds {DISK_NAME} alone, not {names}")
    if found[0].size > max_size:
        raise ArchiveError(f"{path}: {DISK_NAME} of {found[0].size} bytes is larger than the limit")
    return GceLayout(path, compressed, found[0])


@contextlib.contextmanager
def open_gce(
    path: Path, *, policy: SafetyPolicy = SafetyPolicy(), scratch: Path | None = None
) -> Iterator[SourceImage]:
    require_regular_file(path)
    layout = read_gce_layout(path, max_size=policy.max_size)
    if not layout.compressed and not layout.disk.sparse:
        disk = layout.disk
        yield _raw(open_image(path, policy=policy, offset=disk.data_offset, size=disk.size, label=layout.label))
        return
    with tempfile.TemporaryDirectory(prefix=".imagepack-", dir=scratch) as tmp:
        extracted = Path(tmp, DISK_NAME)
        fd = os.open(extracted, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            extract_member(layout, layout.disk, fd, 0, limit=policy.max_size)
        finally:
            os.close(fd)
        yield _raw(open_image(extracted, policy=policy, label=layout.label))


def _raw(image: SourceImage) -> SourceImage:
    if image.format is not ImageFormat.RAW:
        raise ArchiveError(f"{image.label}: {DISK_NAME} holds a {image.format.value} image, not a raw disk")
    return image
