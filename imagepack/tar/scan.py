"""A strict first pass over an untrusted tar stream, before Python's tarfile parses it.

tarfile reads a whole extended header (PAX, GNU long name) into memory, parses PAX records with a regular
expression that is slow on crafted input (CVE-2024-6232 in older Pythons), skips a member by reading as
many bytes as its header claims, stops silently at a damaged header where GNU tar and bsdtar read on, and
accepts negative sizes. This pass bounds all of that and reads each block once, forward only, so it works
on a gzip stream too."""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from typing import BinaryIO

from imagepack.core.errors import ArchiveError, UnreadableError
from imagepack.tar.sparse import (
    SparseMap,
    check_map,
    number,
    old_gnu_real_size,
    old_gnu_slots,
    pax_0x_map,
    pax_10_map,
    pax_sparse_version,
)

BLOCK = 512
MAX_EXTENDED_HEADER = 8 * 1024  # real PAX and long-name headers are a few hundred bytes
MAX_SPARSE_EXTENSIONS = 1024
_EXTENDED_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)


@dataclass(frozen=True)
class _Pax:
    """A PAX header's records in order, and by key as tarfile keeps them (the last one wins)."""

    pairs: list[tuple[bytes, bytes]]

    @property
    def records(self) -> dict[bytes, bytes]:
        return dict(self.pairs)

    def size(self, label: object) -> int | None:
        value = self.records.get(b"size")
        return None if value is None else number(value, "PAX size record", label)


def _pax(body: bytes, label: object) -> _Pax:
    """The records of a PAX header, parsed without regular expressions."""
    pairs = []
    pos = 0
    while pos < len(body) and body[pos] != 0:
        space = body.find(b" ", pos, pos + 20)
        if space < 0 or not body[pos:space].isdigit():
            raise UnreadableError(f"{label}: malformed PAX header record")
        length = int(body[pos:space])
        record = body[space + 1 : pos + length]
        if length <= space - pos or pos + length > len(body) or not record.endswith(b"\n"):
            raise UnreadableError(f"{label}: malformed PAX header record")
        key, sep, value = record[:-1].partition(b"=")
        if not sep:
            raise UnreadableError(f"{label}: malformed PAX header record")
        pairs.append((key, value))
        pos += length
    return _Pax(pairs)


class _Reader:
    """Forward reads with a count, skipping by seek where the stream allows it."""

    def __init__(self, stream: BinaryIO, seekable_size: int | None, max_total: int, label: object) -> None:
        self.stream = stream
        self.size = seekable_size  # the file's size when it is a plain file we can seek in
        self.max_total = max_total  # for a decompressed stream: what its compressed size can honestly expand to
        self.label = label
        self.offset = 0

    def read(self, n: int) -> bytes:
        data = self.stream.read(n)
        self.offset += len(data)
        if self.offset > self.max_total:
            raise ArchiveError(f"{self.label}: the archive expands past {self.max_total} bytes; refusing it")
        return data

    def skip(self, n: int, label: object) -> None:
        if self.size is not None:
            if self.offset + n > self.size:
                raise UnreadableError(f"{label}: a member runs past the end of the file; the archive is truncated")
            self.offset += n
            self.stream.seek(self.offset)
            return
        while n:
            chunk = self.read(min(n, 1024 * 1024))
            if not chunk:
                raise UnreadableError(f"{label}: a member runs past the end of the stream; the archive is truncated")
            n -= len(chunk)


def scan_tar(
    stream: BinaryIO,
    *,
    label: object,
    member_limit: int,
    seekable_size: int | None = None,
    max_total: int,
    real_limit: int | None = None,
) -> None:
    """Check the header chain: bounded extended headers, sizes from 0 to `member_limit`, every member whole,
    every sparse map valid and its real size at most `real_limit` (`member_limit` by default), at most
    `max_total` bytes in all, and nothing but zero blocks after the end marker. Raises UnreadableError or
    ArchiveError."""
    reader = _Reader(stream, seekable_size, max_total, label)
    pending: _Pax | None = None
    while True:
        at = reader.offset
        block = reader.read(BLOCK)
        if not block:
            return  # no end marker: tolerated, as GNU tar does; a cut inside a member is caught below
        if len(block) < BLOCK:
            raise UnreadableError(f"{label}: the archive ends inside a header; it is truncated")
        if block == bytes(BLOCK):
            _check_only_zeros(reader, label)
            return
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as e:
            raise UnreadableError(f"{label}: damaged tar header at byte {at} ({e})") from None
        pax, pending = pending, None
        stated = pax.size(label) if pax is not None else None
        size = stated if stated is not None else info.size
        if size < 0:
            raise UnreadableError(f"{label}: tar header at byte {at} has a negative size")
        stored = -(-size // BLOCK) * BLOCK
        if info.type in _EXTENDED_TYPES:
            if size > MAX_EXTENDED_HEADER:
                raise ArchiveError(f"{label}: extended tar header of {size} bytes at byte {at}; refusing it")
            body = reader.read(stored)
            if len(body) < stored:
                raise UnreadableError(f"{label}: the archive ends inside a header; it is truncated")
            if info.type == tarfile.XHDTYPE:
                pending = _pax(body[:size], label)
            elif info.type == tarfile.XGLTYPE:
                _check_global(_pax(body[:size], label), label)
            continue
        sparse, used = _sparse_map(reader, block, info, pax, size, label)
        if sparse is not None:
            name = (pax.records.get(b"GNU.sparse.name") if pax else None) or info.name.encode(errors="replace")
            check_map(sparse, size - used, name.decode(errors="replace"), label)
            if sparse.real_size > (member_limit if real_limit is None else real_limit):
                raise ArchiveError(f"{label}: member '{info.name}' claims {sparse.real_size} bytes; refusing it")
        if size > member_limit:
            raise ArchiveError(f"{label}: member '{info.name}' claims {size} bytes, more than this archive can hold")
        reader.skip(stored - used, label)


def _sparse_map(
    reader: _Reader, header: bytes, info: tarfile.TarInfo, pax: _Pax | None, size: int, label: object
) -> tuple[SparseMap | None, int]:
    """The member's sparse map, if it has one (reading the extension blocks of an old-GNU one, and the map at the
    start of a PAX 1.0 one's data), and how many of its `size` bytes the map took."""
    version = pax_sparse_version(pax.records, {k for k, _ in pax.pairs}, label) if pax is not None else None
    if info.type == tarfile.GNUTYPE_SPARSE:
        if version is not None or (pax is not None and b"size" in pax.records):
            raise ArchiveError(f"{label}: old-GNU sparse member '{info.name}' with PAX size or sparse records")
        return SparseMap(old_gnu_real_size(header, label), _old_gnu_extents(reader, header, label)), 0
    if version is None or pax is None:
        return None, 0
    if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        raise ArchiveError(f"{label}: GNU sparse records on member '{info.name}', which is not a regular file")
    if version != "1.0":
        return pax_0x_map(version, pax.records, pax.pairs, label), 0
    return pax_10_map(pax.records, reader.read, size, label)


def _old_gnu_extents(reader: _Reader, header: bytes, label: object) -> list[tuple[int, int]]:
    """The four slots of an old-GNU sparse header, then those of its extension blocks (21 each)."""
    extents, ended = old_gnu_slots(header, 386, 4, label)
    more = bool(header[482])
    for _ in range(MAX_SPARSE_EXTENSIONS):
        if not more:
            return extents
        if ended:
            raise ArchiveError(f"{label}: GNU sparse map continues after its end; refusing it")
        extension = reader.read(BLOCK)
        if len(extension) < BLOCK:
            raise UnreadableError(f"{label}: the archive ends inside a sparse map; it is truncated")
        found, ended = old_gnu_slots(extension, 0, 21, label)
        extents += found
        more = bool(extension[504])
    raise ArchiveError(f"{label}: sparse map of more than {MAX_SPARSE_EXTENSIONS} blocks; refusing it")


def _check_global(pax: _Pax, label: object) -> None:
    """A global PAX header applies to every member after it, in tarfile's reading but not in this pass's."""
    for key, _ in pax.pairs:
        if key in (b"size", b"path", b"linkpath") or key.startswith(b"GNU."):
            raise ArchiveError(f"{label}: global PAX header sets '{key.decode(errors='replace')}'; refusing it")


def _check_only_zeros(reader: _Reader, label: object) -> None:
    """After the end marker only zero padding may follow: GNU tar and bsdtar would read members hidden there."""
    while chunk := reader.read(1024 * 1024):
        if chunk.count(0) != len(chunk):
            raise ArchiveError(f"{label}: data after the end of the tar archive; refusing a hidden member")
