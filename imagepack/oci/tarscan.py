"""A strict first pass over an untrusted tar stream, before Python's tarfile parses it.

tarfile reads a whole extended header (PAX, GNU long name) into memory, parses PAX records with a regular
expression that is slow on crafted input (CVE-2024-6232 in older Pythons), skips a member by reading as
many bytes as its header claims, stops silently at a damaged header where GNU tar and bsdtar read on, and
accepts negative sizes. This pass bounds all of that and reads each block once, forward only, so it works
on a gzip stream too."""

from __future__ import annotations

import tarfile
from typing import BinaryIO

from imagepack.errors import ArchiveError, UnreadableError

BLOCK = 512
MAX_EXTENDED_HEADER = 8 * 1024  # real PAX and long-name headers are a few hundred bytes
MAX_SPARSE_EXTENSIONS = 1024
_EXTENDED_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)


def _pax_size(body: bytes, label: object) -> int | None:
    """The `size` record of a PAX header, parsed without regular expressions."""
    size = None
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
        if key == b"size":
            if not value.isdigit() or len(value) > 20:
                raise UnreadableError(f"{label}: PAX size record {value[:30]!r} is not a size")
            size = int(value)
        pos += length
    return size


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
    stream: BinaryIO, *, label: object, member_limit: int, seekable_size: int | None = None, max_total: int
) -> None:
    """Check the header chain: bounded extended headers, sizes from 0 to `member_limit`, every member whole,
    at most `max_total` bytes in all, and nothing but zero blocks after the end marker. Raises
    UnreadableError or ArchiveError."""
    reader = _Reader(stream, seekable_size, max_total, label)
    pending_size: int | None = None
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
        size = pending_size if pending_size is not None else info.size
        pending_size = None
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
                pending_size = _pax_size(body[:size], label)
            continue
        if info.type == tarfile.GNUTYPE_SPARSE and block[482]:
            for _ in range(MAX_SPARSE_EXTENSIONS):
                extension = reader.read(BLOCK)
                if len(extension) < BLOCK:
                    raise UnreadableError(f"{label}: the archive ends inside a sparse map; it is truncated")
                if not extension[504]:
                    break
            else:
                raise ArchiveError(f"{label}: sparse map of more than {MAX_SPARSE_EXTENSIONS} blocks; refusing it")
        if size > member_limit:
            raise ArchiveError(f"{label}: member '{info.name}' claims {size} bytes, more than this archive can hold")
        reader.skip(stored, label)


def _check_only_zeros(reader: _Reader, label: object) -> None:
    """After the end marker only zero padding may follow: GNU tar and bsdtar would read members hidden there."""
    while chunk := reader.read(1024 * 1024):
        if chunk.count(0) != len(chunk):
            raise ArchiveError(f"{label}: data after the end of the tar archive; refusing a hidden member")
