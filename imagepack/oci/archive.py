"""The .oci archive layout: reading one we did not write without trusting it, and writing our own so that
the disk member's data sits at a known, aligned offset where qemu-img can read and write it in place."""

from __future__ import annotations

import contextlib
import gzip
import os
import tarfile
import unicodedata
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from imagepack.errors import ArchiveError, UnreadableError
from imagepack.formats import DEFAULT_MAX_SIZE, ByteSource, Container, detect, not_a_disk
from imagepack.oci.tarscan import scan_tar
from imagepack.problems import Remedy
from imagepack.sparse import write_stream_sparse

METADATA_NAME = "image_metadata.json"
DISK_NAME = "output.QCOW2"
MAX_METADATA = 1024 * 1024
BLOCK = 512
ALIGN = 4096  # the disk member's data starts on a page, so qemu's cluster writes and reflinks stay aligned
METADATA_SLACK = 4096  # room for `meta set` to grow the JSON in place
RECORD = 20 * BLOCK  # tar's default record; GNU tar and tarfile pad archives to it
DEFLATE_MAX_RATIO = 1032  # deflate cannot expand data more than this, so a gzip's size bounds its content


@dataclass(frozen=True)
class Member:
    name: str
    header_offset: int
    data_offset: int  # in the (decompressed) tar stream
    size: int
    sparse: bool = False


@dataclass(frozen=True)
class OciLayout:
    """Where the two members of a checked archive lie."""

    path: Path
    compressed: bool
    metadata: Member
    disk: Member
    metadata_first: bool

    @property
    def disk_in_place(self) -> bool:
        """Whether qemu-img can read the disk member where it lies, without extracting it."""
        return not self.compressed and not self.disk.sparse

    @property
    def label(self) -> str:
        return f"{self.path}:{self.disk.name}"


def _normalised(name: str) -> str:
    return unicodedata.normalize("NFC", name.removeprefix("./")).casefold()


def _check_member(info: tarfile.TarInfo, label: Path) -> str:
    """The member's name if it is a plain file we accept; ArchiveError otherwise."""
    name = info.name
    if not (info.isreg() or info.type == tarfile.GNUTYPE_SPARSE):
        kind = "directory" if info.isdir() else "link" if (info.issym() or info.islnk()) else "special file"
        raise ArchiveError(f"{label}: member '{name}' is a {kind}; a .oci archive holds two regular files only")
    plain = name.removeprefix("./")
    if name.startswith("/") or ".." in plain.split("/") or "/" in plain or "\\" in plain or not plain:
        raise ArchiveError(f"{label}: member name '{name}' is not a plain file name; refusing it")
    if any(ord(c) < 32 for c in plain):
        raise ArchiveError(f"{label}: member name {name!r} has control characters; refusing it")
    return plain


def disk_size_limit(max_size: int = DEFAULT_MAX_SIZE) -> int:
    """The largest qcow2 file a disk of the allowed virtual size can need (metadata and all)."""
    return max_size + max_size // 32 + 256 * 1024**2


def read_layout(path: Path, *, max_disk_size: int | None = None) -> OciLayout:
    """Walk the tar headers (never extracting) and check the archive holds exactly the two members."""
    limit = max_disk_size if max_disk_size is not None else disk_size_limit()
    try:
        with ByteSource(path) as src:
            found = detect(src)
            file_size = src.size
    except OSError as e:
        raise ArchiveError(f"{path}: cannot read: {e.strerror}") from None
    if found.ambiguous:
        raise UnreadableError(not_a_disk(found, path).message, code="input.ambiguous")
    if found.archive is None:
        what = found.describe()
        raise UnreadableError(f"{path}: this is {what}, not a .oci archive (a tar of {METADATA_NAME} and {DISK_NAME})")
    compressed = found.archive is Container.GZIP
    max_total = file_size * DEFLATE_MAX_RATIO + RECORD if compressed else file_size
    try:
        with _open_stream(path, compressed) as stream:
            scan_tar(
                stream,
                label=path,
                member_limit=min(limit, max_total),
                max_total=max_total,
                seekable_size=None if compressed else file_size,
            )
    except _STREAM_ERRORS as e:
        raise UnreadableError(f"{path}: the archive is truncated or damaged ({e})") from None
    metadata: Member | None = None
    disk: Member | None = None
    seen: set[str] = set()
    order: list[str] = []
    try:
        with _open_tar(path, compressed) as tar:
            for info in tar:
                name = _check_member(info, path)
                key = _normalised(name)
                if key in seen:
                    raise ArchiveError(f"{path}: member '{name}' appears twice; refusing an ambiguous archive")
                seen.add(key)
                member = Member(
                    name,
                    info.offset,
                    info.offset_data,
                    info.size,
                    info.sparse is not None or info.type == tarfile.GNUTYPE_SPARSE,
                )
                if key == METADATA_NAME.casefold():
                    if info.size > MAX_METADATA:
                        raise ArchiveError(f"{path}: {METADATA_NAME} is {info.size} bytes; the limit is 1 MiB")
                    metadata = member
                elif key.endswith(".qcow2") and disk is None:
                    disk = member
                else:
                    raise ArchiveError(
                        f"{path}: unexpected member '{name}'; a .oci archive holds {METADATA_NAME} and one .qcow2 disk"
                    )
                order.append(key)
                if member is disk and info.size > limit:
                    raise ArchiveError(f"{path}: disk member of {info.size} bytes is larger than the limit")
    except tarfile.TarError as e:
        raise UnreadableError(f"{path}: not a readable tar archive ({e}); it may be truncated") from None
    except _STREAM_ERRORS as e:
        raise UnreadableError(f"{path}: the archive is truncated or damaged ({e})") from None
    if metadata is None:
        raise ArchiveError(
            f"{path}: no {METADATA_NAME} member", code="archive.no-metadata", remedy=Remedy.STATE_METADATA
        )
    if disk is None:
        raise ArchiveError(f"{path}: no .qcow2 disk member")
    return OciLayout(path, compressed, metadata, disk, order[0] == METADATA_NAME.casefold())


# What a damaged stream or crafted header can raise from tarfile, gzip or zlib, beyond TarError.
_STREAM_ERRORS = (EOFError, OSError, zlib.error, ValueError, IndexError, OverflowError, MemoryError, UnicodeError)


@contextlib.contextmanager
def _open_stream(path: Path, compressed: bool) -> Iterator[BinaryIO]:
    """The tar bytes: the file, or its gzip content (GzipFile checks the CRC and reads multi-member files)."""
    with open(path, "rb") as raw:
        if not compressed:
            yield raw
            return
        with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
            yield stream  # type: ignore[misc]


@contextlib.contextmanager
def _open_tar(path: Path, compressed: bool) -> Iterator[tarfile.TarFile]:
    # Streaming mode for gzip: headers are read in one forward pass, never seeking back through the stream.
    with (
        _open_stream(path, compressed) as stream,
        tarfile.open(fileobj=stream, mode="r|" if compressed else "r:") as tar,
    ):
        yield tar


def read_member(layout: OciLayout, member: Member, *, limit: int) -> bytes:
    """A small member's bytes (the metadata), reading at most `limit` bytes."""
    if member.size > limit:
        raise ArchiveError(f"{layout.path}: member '{member.name}' is larger than {limit} bytes")
    if not layout.compressed and not member.sparse:
        with ByteSource(layout.path, offset=member.data_offset, size=member.size) as src:
            data = src.read(0, member.size)
        if len(data) != member.size:
            raise ArchiveError(f"{layout.path}: member '{member.name}' is truncated")
        return data
    with _open_tar(layout.path, layout.compressed) as tar:
        for info in tar:
            if info.offset == member.header_offset:
                stream = tar.extractfile(info)
                assert stream is not None
                return stream.read(limit)
    raise ArchiveError(f"{layout.path}: member '{member.name}' vanished while reading")


def extract_member(
    layout: OciLayout,
    member: Member,
    out_fd: int,
    out_offset: int,
    *,
    limit: int,
    after_first_chunk: Callable[[], int] | None = None,
) -> int:
    """Stream one member (from a gzip-wrapped archive, or a sparse member) into `out_fd` at `out_offset`,
    refusing to write more than `limit` bytes, and returns the bytes it holds. Runs of zeroes are left as
    holes, so a member of zeroes costs no disk. `after_first_chunk` may check what was written so far and
    return a tighter limit (what the disk's own header says it can need)."""
    try:
        with _open_tar(layout.path, layout.compressed) as tar:
            for info in tar:
                if info.offset != member.header_offset:
                    continue
                stream = tar.extractfile(info)
                assert stream is not None
                return write_stream_sparse(
                    stream,  # type: ignore[arg-type]
                    out_fd,
                    out_offset,
                    limit=limit,
                    too_large=lambda n: ArchiveError(f"{layout.path}: member '{member.name}' expands past {n} bytes"),
                    after_first_chunk=after_first_chunk,
                )
    except (tarfile.TarError, *_STREAM_ERRORS) as e:
        if isinstance(e, OSError) and e.filename is None and e.errno is not None:
            raise ArchiveError(f"{layout.path}: extracting '{member.name}' failed: {e.strerror}") from None
        raise UnreadableError(f"{layout.path}: the archive is truncated or damaged ({e})") from None
    raise ArchiveError(f"{layout.path}: member '{member.name}' vanished while reading")


# --- writing -------------------------------------------------------------------------------------------


def member_header(name: str, size: int, mtime: int) -> bytes:
    """One 512-byte header. GNU format keeps sizes of 8 GiB and more in base-256 inside the same block,
    so the data offset is known before the disk's final size is."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = mtime
    header = info.tobuf(tarfile.GNU_FORMAT, "utf-8", "strict")
    assert len(header) == BLOCK, "member names are short: one header block"
    return header


def disk_data_offset(metadata_size: int) -> int:
    """Where our layout puts the disk member's data: after the metadata, its slack, and the disk's header."""
    needed = BLOCK + metadata_size + METADATA_SLACK + BLOCK
    return -(-needed // ALIGN) * ALIGN


def metadata_region(metadata: bytes, data_offset: int, mtime: int) -> bytes:
    """Header and data of the metadata member, padded with JSON whitespace to end where the disk header starts."""
    room = data_offset - 2 * BLOCK
    if len(metadata) > room:
        raise ValueError("metadata does not fit before the disk member")
    padded = metadata.rstrip(b"\n") + b"\n" + b" " * (room - len(metadata.rstrip(b"\n")) - 2) + b"\n"
    return member_header(METADATA_NAME, len(padded), mtime) + padded


def trailer(end_of_data: int) -> bytes:
    """Zero padding to the block, the two zero blocks that end a tar, and padding to a whole record."""
    pad = -end_of_data % BLOCK
    total = end_of_data + pad + 2 * BLOCK
    return bytes(pad + 2 * BLOCK + (-total % RECORD))


def write_archive(fd: int, metadata: bytes, *, mtime: int, write_disk: Callable[[int], None]) -> int:
    """Our layout in the empty file `fd`: the metadata member, padded to where the disk's data starts; the disk's
    data, which `write_disk(data_offset)` puts there; then the disk's header, once its size is known, and the
    trailer. Returns the disk member's size."""
    data_offset = disk_data_offset(len(metadata))
    os.pwrite(fd, metadata_region(metadata, data_offset, mtime), 0)
    write_disk(data_offset)
    disk_size = os.fstat(fd).st_size - data_offset
    os.pwrite(fd, member_header(DISK_NAME, disk_size, mtime), data_offset - BLOCK)
    os.pwrite(fd, trailer(data_offset + disk_size), data_offset + disk_size)
    return disk_size
