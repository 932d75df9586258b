"""What the user gave as an input, whatever wraps it: a plain disk image, a .oci archive, an OVA or a GCE image
tarball whose disk is read in place (or extracted once, bounded), or any of them compressed (decompressed once,
bounded). Every verb opens its input here, so a new kind of input is one branch."""

from __future__ import annotations

import contextlib
import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from imagepack.compression import STREAMS, compression_of, decompressed
from imagepack.compression.bounded import require_inner_name_agrees
from imagepack.core.errors import InvalidValueError, UnreadableError
from imagepack.core.openfile import OpenedPath, opened_input, require_regular_file
from imagepack.core.progress import Progress
from imagepack.formats import ByteSource, Container, ImageFormat, SafetyPolicy, detect
from imagepack.sources.disk import SourceImage, open_image
from imagepack.sources.gce import is_gce_tarball, open_gce
from imagepack.sources.oci import OpenedArchive, open_archive
from imagepack.sources.ova.archive import looks_like_ova
from imagepack.sources.ova.reader import OpenedOva, open_ova


class SourceKind(StrEnum):
    DISK = "disk"
    OCI = "oci"
    COMPRESSED = "compressed"  # a disk in a zstd, xz, gzip or bzip2 stream
    OVA = "ova"  # a disk an OVF descriptor names, inside an OVA tar
    GCE = "gce"  # the disk.raw of a GCE image tarball


@dataclass
class Source:
    """An opened input: the disk to read, and the archive it came in, if any."""

    path: Path
    kind: SourceKind
    disk: SourceImage
    archive: OpenedArchive | None = None
    compression: str | None = None  # "zstd", "xz", "gzip", "bzip2": the stream the disk or archive came in
    ova: OpenedOva | None = None

    @property
    def format(self) -> str:
        """What the input is, as the user would name it: 'oci' for an archive, else the disk's format."""
        return self.kind.value if self.kind in (SourceKind.OCI, SourceKind.OVA) else self.disk.format.value

    @property
    def virtual_size(self) -> int:
        return self.disk.virtual_size


def is_archive(path: Path) -> bool:
    """Whether to read `path` as a .oci archive: by its content (a tar, or a gzip holding one), or by its name
    (then the archive reader says what the content really is)."""
    require_regular_file(path)
    if path.suffix.lower() == ".oci":
        return True
    with ByteSource(path) as src:
        kind = detect(src).archive
    return kind is Container.TAR or (kind is Container.GZIP and _gzip_holds_tar(path))


def _gzip_holds_tar(path: Path) -> bool:
    """Whether the first block inside a gzip file is a tar header (an ocne-style .oci archive)."""
    try:
        with gzip.open(path, "rb") as f:
            head = f.read(512)
    except (OSError, EOFError, zlib.error):
        return False
    return head[257:262] == b"ustar"


@contextlib.contextmanager
def open_source(
    path: Path,
    *,
    claimed: ImageFormat | None = None,
    policy: SafetyPolicy = SafetyPolicy(),
    scratch: Path | None = None,
    disk: int | None = None,
    on_progress: Progress | None = None,
) -> Iterator[Source]:
    """Open `path` through every check. `claimed` states the disk format (never an archive). `scratch` is where a
    disk that cannot be read in place, or a compressed input's content, is written to, and removed from
    afterwards; it needs room for what the stream declares (see compression.decompressed). `disk` picks one of an
    OVA's disks (from 1). `on_progress` follows the decompression of a compressed input (zstd, xz, bzip2 or a
    gzip that is not a .oci archive), the only long step of opening one.

    `path` is opened once, here: every check and every reader after them (qemu-img and qemu-nbd included) reads
    that open file, so that a file renamed over the input meanwhile is never read."""
    with (
        opened_input(path) as opened,
        _open_source(opened, claimed=claimed, policy=policy, scratch=scratch, disk=disk, on_progress=on_progress) as s,
    ):
        yield s


@contextlib.contextmanager
def _open_source(
    path: OpenedPath,
    *,
    claimed: ImageFormat | None,
    policy: SafetyPolicy,
    scratch: Path | None,
    disk: int | None,
    on_progress: Progress | None,
) -> Iterator[Source]:
    kind = compression_of(path)
    if claimed is None and kind in (None, Container.GZIP) and looks_like_ova(path):
        with open_ova(path, disk=disk, policy=policy, scratch=scratch) as ova:
            yield Source(path, SourceKind.OVA, ova.disk, ova=ova)
        return
    plain_archive = claimed is None and kind in (None, Container.GZIP) and is_archive(path)
    if disk is not None and (kind is None or plain_archive):
        raise _not_an_ova(path)
    if plain_archive and is_gce_tarball(path):
        with open_gce(path, policy=policy, scratch=scratch) as image:
            yield Source(path, SourceKind.GCE, image, compression=STREAMS[kind] if kind else None)
        return
    if plain_archive:
        with open_archive(path, policy=policy, scratch=scratch) as opened:
            yield Source(path, SourceKind.OCI, opened.disk, opened)
        return
    if kind is not None:
        with decompressed(
            path, kind, claimed=claimed, policy=policy, scratch=scratch, on_progress=on_progress
        ) as content:
            name = STREAMS[kind]
            if content.is_archive and looks_like_ova(content.path):
                with open_ova(content.path, disk=disk, policy=policy, scratch=scratch) as ova:
                    yield Source(path, SourceKind.OVA, ova.disk, compression=name, ova=ova)
                return
            if disk is not None:
                raise _not_an_ova(path)
            if content.is_archive and is_gce_tarball(content.path):
                with open_gce(content.path, policy=policy, scratch=scratch, shown=path) as image:
                    yield Source(path, SourceKind.GCE, image, compression=name)
                return
            if content.is_archive:
                with open_archive(content.path, policy=policy, scratch=scratch) as opened:
                    yield Source(path, SourceKind.OCI, opened.disk, opened, compression=name)
                return
            image = open_image(content.path, claimed=claimed, policy=policy, label=str(path))
            if claimed is None:
                require_inner_name_agrees(path, image.format)  # the whole file now: a fixed VHD's footer too
            yield Source(path, SourceKind.COMPRESSED, image, compression=name)
        return
    yield Source(path, SourceKind.DISK, open_image(path, claimed=claimed, policy=policy))


@contextlib.contextmanager
def open_oci(
    path: Path,
    *,
    policy: SafetyPolicy = SafetyPolicy(),
    scratch: Path | None = None,
    on_progress: Progress | None = None,
) -> Iterator[OpenedArchive]:
    """A .oci archive, plain or compressed (zstd, xz, bzip2 or gzip), for the verbs that take nothing else; opened
    once, like open_source's."""
    with (
        opened_input(path) as opened,
        _open_oci(opened, policy=policy, scratch=scratch, on_progress=on_progress) as archive,
    ):
        yield archive


@contextlib.contextmanager
def _open_oci(
    path: OpenedPath, *, policy: SafetyPolicy, scratch: Path | None, on_progress: Progress | None
) -> Iterator[OpenedArchive]:
    kind = compression_of(path)
    if kind is None or (kind is Container.GZIP and is_archive(path)):
        with open_archive(path, policy=policy, scratch=scratch) as opened:  # or says what the file is instead
            yield opened
        return
    with decompressed(path, kind, policy=policy, scratch=scratch, on_progress=on_progress) as content:
        if not content.is_archive:
            raise UnreadableError(f"{path}: this is a {STREAMS[kind]}-compressed disk, not a .oci archive")
        with open_archive(content.path, policy=policy, scratch=scratch) as opened:
            yield opened


def _not_an_ova(path: Path) -> InvalidValueError:
    return InvalidValueError(
        f"{path} is not an OVA: a disk number picks one of an OVA's disks, and this input has one",
        code="ova.not-an-ova",
    )
