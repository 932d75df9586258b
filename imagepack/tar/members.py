"""Walking the members of an untrusted tar (a .oci archive, an OVA, a GCE image tarball) without trusting it:
the strict header pass first, then tarfile's headers, each member checked to be a regular file with a plain,
unique name. Nothing is extracted here except on request, bounded, into a file the caller opened."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import tarfile
import unicodedata
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

from imagepack.core.errors import ArchiveError, UnreadableError
from imagepack.files.sparse import STREAM_CHUNK, write_stream_sparse
from imagepack.formats import ByteSource, Detection, detect
from imagepack.tar.scan import scan_tar

RECORD = 20 * 512  # tar's default record; GNU tar and tarfile pad archives to it
DEFLATE_MAX_RATIO = 1032  # deflate cannot expand data more than this, so a gzip's size bounds its content

# What a damaged stream or crafted header can raise from tarfile, gzip or zlib, beyond TarError.
STREAM_ERRORS = (EOFError, OSError, zlib.error, ValueError, IndexError, OverflowError, MemoryError, UnicodeError)


@dataclass(frozen=True)
class Member:
    name: str
    header_offset: int
    data_offset: int  # in the (decompressed) tar stream
    size: int
    sparse: bool = False


class TarLocation(Protocol):
    """Where a checked tar is, and whether it is gzip-wrapped (a layout of any kind of archive)."""

    @property
    def path(self) -> Path: ...

    @property
    def compressed(self) -> bool: ...


def normalised(name: str) -> str:
    """The key two names share when an extractor could write them to the same file."""
    return unicodedata.normalize("NFC", name.removeprefix("./")).casefold()


def check_member(info: tarfile.TarInfo, label: Path, *, holds: str) -> str:
    """The member's name if it is a plain file we accept; ArchiveError otherwise. `holds` says what the archive
    should hold, for the message ("a .oci archive holds two regular files only")."""
    name = info.name
    if not (info.isreg() or info.type == tarfile.GNUTYPE_SPARSE):
        kind = "directory" if info.isdir() else "link" if (info.issym() or info.islnk()) else "special file"
        raise ArchiveError(f"{label}: member '{name}' is a {kind}; {holds}")
    plain = name.removeprefix("./")
    if name.startswith("/") or ".." in plain.split("/") or "/" in plain or "\\" in plain or not plain:
        raise ArchiveError(f"{label}: member name '{name}' is not a plain file name; refusing it")
    if any(ord(c) < 32 for c in plain):
        raise ArchiveError(f"{label}: member name {name!r} has control characters; refusing it")
    return plain


def sniff(path: Path) -> tuple[Detection, int]:
    """What an archive's first bytes are, and its size; a file that cannot be read is refused as the archive."""
    try:
        with ByteSource(path) as src:
            return detect(src), src.size
    except OSError as e:
        raise ArchiveError(f"{path}: cannot read: {e.strerror}") from None


def scan(path: Path, *, compressed: bool, file_size: int, member_limit: int) -> None:
    """The strict header pass over the whole tar, bounded by what the file's size allows it to hold."""
    max_total = file_size * DEFLATE_MAX_RATIO + RECORD if compressed else file_size
    try:
        with open_stream(path, compressed) as stream:
            scan_tar(
                stream,
                label=path,
                member_limit=min(member_limit, max_total),
                max_total=max_total,
                real_limit=member_limit,
                seekable_size=None if compressed else file_size,
            )
    except STREAM_ERRORS as e:
        raise UnreadableError(f"{path}: the archive is truncated or damaged ({e})") from None


def members(path: Path, *, compressed: bool, holds: str) -> Iterator[tuple[tarfile.TarInfo, Member]]:
    """Each member in order, checked (plain regular file, name not seen before); run `scan` first."""
    seen: set[str] = set()
    try:
        with open_tar(path, compressed) as tar:
            for info in tar:
                name = check_member(info, path, holds=holds)
                key = normalised(name)
                if key in seen:
                    raise ArchiveError(f"{path}: member '{name}' appears twice; refusing an ambiguous archive")
                seen.add(key)
                sparse = info.sparse is not None or info.type == tarfile.GNUTYPE_SPARSE
                yield info, Member(name, info.offset, info.offset_data, info.size, sparse)
    except tarfile.TarError as e:
        raise UnreadableError(f"{path}: not a readable tar archive ({e}); it may be truncated") from None
    except STREAM_ERRORS as e:
        raise UnreadableError(f"{path}: the archive is truncated or damaged ({e})") from None


@contextlib.contextmanager
def open_stream(path: Path, compressed: bool) -> Iterator[BinaryIO]:
    """The tar bytes: the file, or its gzip content (GzipFile checks the CRC and reads multi-member files)."""
    with open(path, "rb") as raw:
        if not compressed:
            yield raw
            return
        with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
            yield stream  # type: ignore[misc]


@contextlib.contextmanager
def open_tar(path: Path, compressed: bool) -> Iterator[tarfile.TarFile]:
    # Streaming mode for gzip: headers are read in one forward pass, never seeking back through the stream.
    with (
        open_stream(path, compressed) as stream,
        tarfile.open(fileobj=stream, mode="r|" if compressed else "r:") as tar,
    ):
        yield tar


def read_member(layout: TarLocation, member: Member, *, limit: int) -> bytes:
    """A small member's bytes (metadata, a descriptor, a manifest), reading at most `limit` bytes."""
    if member.size > limit:
        raise ArchiveError(f"{layout.path}: member '{member.name}' is larger than {limit} bytes")
    if not layout.compressed and not member.sparse:
        with ByteSource(layout.path, offset=member.data_offset, size=member.size) as src:
            data = src.read(0, member.size)
        if len(data) != member.size:
            raise ArchiveError(f"{layout.path}: member '{member.name}' is truncated")
        return data
    with open_tar(layout.path, layout.compressed) as tar:
        for info in tar:
            if info.offset == member.header_offset:
                stream = tar.extractfile(info)
                assert stream is not None
                return stream.read(limit)
    raise ArchiveError(f"{layout.path}: member '{member.name}' vanished while reading")


@contextlib.contextmanager
def member_stream(layout: TarLocation, member: Member) -> Iterator[BinaryIO]:
    """The member's bytes as a stream, however it is stored (in place, sparse, or in a gzip-wrapped tar)."""
    with open_tar(layout.path, layout.compressed) as tar:
        for info in tar:
            if info.offset == member.header_offset:
                stream = tar.extractfile(info)
                assert stream is not None
                yield stream  # type: ignore[misc]
                return
    raise ArchiveError(f"{layout.path}: member '{member.name}' vanished while reading")


def extract_member(
    layout: TarLocation,
    member: Member,
    out_fd: int,
    out_offset: int,
    *,
    limit: int,
    after_first_chunk: Callable[[], int] | None = None,
) -> int:
    """Stream one member (from a gzip-wrapped archive, or a sparse member) into `out_fd` at `out_offset`,
    refusing to write more than `limit` bytes, and returns the bytes it holds. Runs of zeroes are left as
    holes, so a member of zeroes costs no disk, and a sparse member's holes are never read at all: its stored
    runs are written where its map puts them. `after_first_chunk` may check what was written so far and
    return a tighter limit (what the disk's own header says it can need)."""

    def too_large(n: int) -> ArchiveError:
        return ArchiveError(f"{layout.path}: member '{member.name}' expands past {n} bytes")

    try:
        extents = None
        with open_tar(layout.path, layout.compressed) as tar:
            for info in tar:
                if info.offset != member.header_offset:
                    continue
                if info.sparse is not None:
                    pairs = cast("list[tuple[int, int]]", info.sparse)
                    extents = [(offset, size) for offset, size in pairs if size]
                    break
                stream = tar.extractfile(info)
                assert stream is not None
                return write_stream_sparse(
                    stream,  # type: ignore[arg-type]
                    out_fd,
                    out_offset,
                    limit=limit,
                    too_large=too_large,
                    after_first_chunk=after_first_chunk,
                )
        if extents is None:
            raise ArchiveError(f"{layout.path}: member '{member.name}' vanished while reading")
        return _extract_by_map(layout, member, extents, out_fd, out_offset, limit, too_large, after_first_chunk)
    except (tarfile.TarError, *STREAM_ERRORS) as e:
        if isinstance(e, OSError) and e.filename is None and e.errno is not None:
            raise ArchiveError(f"{layout.path}: extracting '{member.name}' failed: {e.strerror}") from None
        raise UnreadableError(f"{layout.path}: the archive is truncated or damaged ({e})") from None


def _extract_by_map(
    layout: TarLocation,
    member: Member,
    extents: list[tuple[int, int]],
    out_fd: int,
    out_offset: int,
    limit: int,
    too_large: Callable[[int], ArchiveError],
    after_first_chunk: Callable[[], int] | None,
) -> int:
    """A sparse member's stored runs (its map checked by the header pass: in order, inside its size, adding up
    to what is stored), each written at its place; the holes between cost neither reading nor disk."""
    if member.size > limit:
        raise too_large(limit)
    with open_stream(layout.path, layout.compressed) as stream:
        stream.seek(member.data_offset)  # forward only: a gzip stream decodes up to it, once
        for offset, size in extents:
            window = io.BufferedReader(_Window(stream, size))
            copied = write_stream_sparse(window, out_fd, out_offset + offset, limit=size, too_large=too_large)
            if copied != size:
                raise UnreadableError(f"{layout.path}: member '{member.name}' is cut short; the archive is truncated")
            if after_first_chunk is not None and offset + size >= STREAM_CHUNK:
                limit = min(limit, _check_so_far(out_fd, out_offset + offset + size, after_first_chunk))
                after_first_chunk = None
                if member.size > limit:
                    raise too_large(limit)
    end = out_offset + member.size
    if os.fstat(out_fd).st_size < end:
        os.ftruncate(out_fd, end)
    if after_first_chunk is not None and member.size > _check_so_far(out_fd, end, after_first_chunk):
        raise too_large(limit)
    return member.size


def _check_so_far(out_fd: int, end: int, check: Callable[[], int]) -> int:
    """The check given the output's length up to `end`, so a trailing hole is part of what it sees."""
    if os.fstat(out_fd).st_size < end:
        os.ftruncate(out_fd, end)
    return check()


class _Window(io.RawIOBase):
    """The next `size` bytes of a stream, and no more."""

    def __init__(self, stream: BinaryIO, size: int) -> None:
        super().__init__()
        self.stream = stream
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.stream.read(min(len(view), self.left))
        view[: len(data)] = data
        self.left -= len(data)
        return len(data)
