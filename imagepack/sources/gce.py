"""A Google Compute Engine image tarball: `disk.raw` alone in a tar, usually gzip-wrapped and GNU-sparse
(`tar --format=oldgnu -Sczf`). Its member is checked like a .oci archive's; a plain, non-sparse member is read
in place, any other extracted once, bounded by the size limit, with its holes kept. A tarball in a zstd, xz or
bzip2 stream is decompressed first (open.py) and then read here as a plain tar."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from imagepack.core.errors import ArchiveError
from imagepack.core.openfile import opened_input
from imagepack.files.leftovers import scratch_directory
from imagepack.formats import ByteSource, Container, ImageFormat, SafetyPolicy, detect
from imagepack.sources.disk import SourceImage, open_image
from imagepack.tar.members import Member, extract_member, members, scan, sniff

DISK_NAME = "disk.raw"
_HOLDS = f"a GCE image tarball holds {DISK_NAME} only"


@dataclass(frozen=True)
class GceLayout:
    path: Path
    compressed: bool
    disk: Member
    shown: Path | None = None  # the tarball as the user named it, when `path` is its decompressed copy

    @property
    def label(self) -> str:
        return f"{self.shown or self.path}:{self.disk.name}"


def member_name_in(head: bytes) -> str | None:
    """The member name in `head`, the first 512 bytes of a tar (of a decompressed one too), if they are a header."""
    if len(head) < 512 or head[257:262] != b"ustar":
        return None
    return head[:100].split(b"\0", 1)[0].decode("utf-8", "replace").removeprefix("./")


def read_gce_layout(path: Path, *, max_size: int, shown: Path | None = None) -> GceLayout:
    detected, file_size = sniff(path)
    compressed = detected.archive is Container.GZIP
    scan(path, compressed=compressed, file_size=file_size, member_limit=max_size)
    found = [member for _, member in members(path, compressed=compressed, holds=_HOLDS)]
    if [m.name for m in found] != [DISK_NAME]:
        names = ", ".join(m.name for m in found)
        raise ArchiveError(f"{path}: a GCE image tarball holds {DISK_NAME} alone, not {names}")
    if found[0].size > max_size:
        raise ArchiveError(f"{path}: {DISK_NAME} of {found[0].size} bytes is larger than the limit")
    return GceLayout(path, compressed, found[0], shown)


@contextlib.contextmanager
def open_gce(
    path: Path, *, policy: SafetyPolicy = SafetyPolicy(), scratch: Path | None = None, shown: Path | None = None
) -> Iterator[SourceImage]:
    """The tarball's disk.raw, checked. `shown`: the tarball as the user named it, when `path` is the tar
    decompressed from it (then a plain member is read in place in that temporary, not decompressed again)."""
    with opened_input(path) as opened:  # read once: every reader below reads this open file
        path = opened
        layout = read_gce_layout(path, max_size=policy.max_size, shown=shown)
        if not layout.compressed and not layout.disk.sparse:
            disk = layout.disk
            yield _open_raw(path, policy=policy, offset=disk.data_offset, size=disk.size, label=layout.label)
            return
        # A GNU-sparse member stores its data runs packed together, with a map of where each belongs, so there is no
        # offset at which the disk can be read as it is: it is expanded once more, its holes left as holes.
        with scratch_directory(scratch) as tmp:
            extracted = Path(tmp, DISK_NAME)
            fd = os.open(extracted, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                extract_member(layout, layout.disk, fd, 0, limit=policy.max_size)
            finally:
                os.close(fd)
            yield _open_raw(extracted, policy=policy, label=layout.label)


def _open_raw(path: Path, *, policy: SafetyPolicy, label: str, offset: int = 0, size: int | None = None) -> SourceImage:
    """disk.raw, refused as the tarball's fault when it is not raw (GCE's import reads it as raw whatever it
    is), before the check of its name against its content would suggest stating another format."""
    with ByteSource(path, offset=offset, size=size) as src:
        found = detect(src)
    if found.content is not ImageFormat.RAW:
        raise ArchiveError(f"{label}: {DISK_NAME} holds a {' / '.join(found.names)} image, not a raw disk")
    return open_image(path, policy=policy, offset=offset, size=size, label=label)
