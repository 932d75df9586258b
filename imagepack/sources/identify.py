"""What an input is, decided once from its name and its first bytes: a disk image, a .oci archive, an OVA, a GCE
image tarball, or a compressed stream, whose content is told by the same rules once it is decompressed (or from
its first bytes, peeked, where it is only described). Every opening and every description asks here; nothing
below asks the input what it is again."""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from imagepack.compression import STREAMS, Decompressed, inner_name, peek, stream_in
from imagepack.core.openfile import require_regular_file
from imagepack.formats import ByteSource, Container, Detection, ImageFormat, MemorySource, detect
from imagepack.sources.gce import DISK_NAME, member_name_in

_HEADER = 512  # a tar header: the first member's name, and the ustar magic
_PEEK = 1024  # what a compressed stream's content is told from, when it is not decompressed


class SourceKind(StrEnum):
    DISK = "disk"
    OCI = "oci"
    COMPRESSED = "compressed"  # a disk in a zstd, xz, gzip or bzip2 stream
    OVA = "ova"  # a disk an OVF descriptor names, inside an OVA tar
    GCE = "gce"  # the disk.raw of a GCE image tarball


@dataclass(frozen=True)
class Identity:
    """What one input is. `kind` COMPRESSED: a stream (`stream`) whose content is told once decompressed
    (`content_kind`, `peek_kind`); any other kind with a `stream`: a gzip the archive reader reads itself."""

    kind: SourceKind
    detection: Detection  # every signature in the input's first bytes
    stream: Container | None = None  # the zstd, xz, bzip2 or gzip stream the whole input is
    archive: bool = False  # a tar by content (a gzip-wrapped one too) or a .oci by name, whatever was stated

    @property
    def compression(self) -> str | None:
        return STREAMS[self.stream] if self.stream is not None else None


def identify(path: Path, *, claimed: ImageFormat | None = None) -> Identity:
    """What `path` is. A stated disk format (`claimed`) says it is a disk, compressed or not; otherwise an OVA (by
    its name, or a plain tar whose first member is its .ovf) comes before a .oci, a .oci is one by its name or a
    tar's content (plain, or in a gzip), a tar whose only member is disk.raw is a GCE image tarball, and a zstd,
    xz, bzip2 or gzip stream is a compressed input."""
    require_regular_file(path)
    with ByteSource(path) as src:
        found = detect(src)
        head = src.read(0, _HEADER)
    stream = stream_in(path, found)
    if found.archive is Container.GZIP:
        head = _gunzipped_head(path)
    plain_tar = found.archive is Container.TAR
    tar = plain_tar or (found.archive is Container.GZIP and _is_tar(head))
    archive = path.suffix.lower() == ".oci" or tar
    kind = None
    if claimed is None and stream in (None, Container.GZIP):
        kind = _wrapped_kind(path.name, head, plain_tar=plain_tar, archive=archive)
    if kind is None:
        kind = SourceKind.DISK if stream is None else SourceKind.COMPRESSED
    return Identity(kind, found, stream, archive)


def content_kind(content: Decompressed) -> SourceKind:
    """What a decompressed stream holds, by the rules `identify` applies to a plain input: a disk (COMPRESSED),
    or a tar read as an OVA, a GCE image tarball or a .oci archive."""
    if not content.is_archive:
        return SourceKind.COMPRESSED
    with ByteSource(content.path) as src:
        head = src.read(0, _HEADER)
    return _wrapped_kind(content.path.name, head, plain_tar=True, archive=True) or SourceKind.OCI


def peek_kind(path: Path, identity: Identity) -> SourceKind:
    """content_kind, told from the first bytes of a zstd, xz or bzip2 stream's content without decompressing the
    rest (a gzip's were read by `identify`: it holds a disk when `identity` says COMPRESSED)."""
    if identity.kind is not SourceKind.COMPRESSED or identity.stream in (None, Container.GZIP):
        return identity.kind
    assert identity.stream is not None
    head = peek(path, identity.stream, _PEEK)
    with MemorySource(path, head) as src:
        if detect(src).archive is not Container.TAR:
            return SourceKind.COMPRESSED
    return _wrapped_kind(inner_name(path), head[:_HEADER], plain_tar=True, archive=True) or SourceKind.OCI


def _wrapped_kind(name: str, head: bytes, *, plain_tar: bool, archive: bool) -> SourceKind | None:
    """An OVA, a GCE image tarball or a .oci archive, or None for a disk. `head`: the first tar header, if any."""
    if name.lower().endswith(".ova") or (plain_tar and head[:100].split(b"\0", 1)[0].lower().endswith(b".ovf")):
        return SourceKind.OVA
    if not archive:
        return None
    return SourceKind.GCE if member_name_in(head) == DISK_NAME else SourceKind.OCI


def _is_tar(head: bytes) -> bool:
    return head[257:262] == b"ustar"


def _gunzipped_head(path: Path) -> bytes:
    """The first tar header's worth of a gzip's content (empty when the stream cannot be read)."""
    try:
        with gzip.open(path, "rb") as f:
            return f.read(_HEADER)
    except (OSError, EOFError, zlib.error):
        return b""
