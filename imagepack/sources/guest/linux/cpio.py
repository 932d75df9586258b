"""The member names of an initramfs: one or more newc cpio archives, each raw or compressed, one after the other
(an early-microcode archive first, then the main one), walked the way the kernel unpacks them, with the
decompressed bytes, the number of members and every header field bounded. File contents are skipped, never kept."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from imagepack.sources.guest.linux.codecs import CHUNK, ERRORS, Compression, compression_at, decoder

NEWC = (b"070701", b"070702")  # newc, and newc with checksums
HEADER = 110
TRAILER = "TRAILER!!!"
NAME_MOST = 4096  # PATH_MAX: the kernel refuses a longer name too
EXPANDED_MOST = 1024 * 1024 * 1024  # decompressed bytes across all segments
MEMBERS_MOST = 200_000
NONZERO = re.compile(rb"[^\x00]")


class CpioError(ValueError):
    pass


@dataclass
class Initramfs:
    """What an initramfs holds: its member names, the segments it is made of, and why reading stopped early."""

    names: list[str] = field(default_factory=list)
    segments: list[str] = field(default_factory=list)  # "cpio" or "cpio+gzip" ..., in order
    problem: str | None = None


class _Stream:
    """Bytes pulled from chunks, counted against a bound shared by every segment."""

    def __init__(self, chunks: Iterator[bytes], budget: list[int]) -> None:
        self.chunks, self.budget = chunks, budget
        self.buf = bytearray()
        self.pos = 0
        self.taken = 0  # bytes pulled from `chunks`

    def _fill(self, n: int) -> bool:
        while len(self.buf) - self.pos < n:
            chunk = next(self.chunks, None)
            if chunk is None:
                return False
            self.taken += len(chunk)
            self.budget[0] -= len(chunk)
            if self.budget[0] < 0:
                raise CpioError("it decompresses to more than an initramfs can hold (a decompression bomb?)")
            if self.pos > CHUNK:
                del self.buf[: self.pos]
                self.pos = 0
            self.buf += chunk
        return True

    @property
    def offset(self) -> int:
        return self.taken - (len(self.buf) - self.pos)

    def read(self, n: int) -> bytes:
        if not self._fill(n):
            raise CpioError("it ends inside a cpio member")
        out = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return out

    def skip(self, n: int) -> None:
        while n > 0:
            step = min(n, CHUNK)
            self.read(step)
            n -= step

    def skip_zeros(self) -> bool:
        """Skip the zero padding between archives; False at the end of the stream."""
        while True:
            if not self._fill(1):
                return False
            found = NONZERO.search(self.buf, self.pos)
            if found:
                self.pos = found.start()
                return True
            self.pos = len(self.buf)

    def peek(self, n: int) -> bytes:
        self._fill(n)
        return bytes(self.buf[self.pos : self.pos + n])


def _archive(stream: _Stream, names: list[str]) -> None:
    """One cpio archive, up to and including its trailer."""
    while True:
        header = stream.read(HEADER)
        if header[:6] not in NEWC:
            raise CpioError(f"a member header does not start with the newc magic 070701 (found {header[:6]!r})")
        try:
            fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        except ValueError:
            raise CpioError("a member header has a field that is not hexadecimal") from None
        size, name_size = fields[6], fields[11]
        if not 1 <= name_size <= NAME_MOST:
            raise CpioError(f"a member's name length is {name_size} bytes, beyond the {NAME_MOST}-byte limit")
        name = stream.read(name_size).rstrip(b"\0").decode("utf-8", errors="replace")
        stream.skip((-(HEADER + name_size)) % 4)
        if name == TRAILER:
            return
        if len(names) >= MEMBERS_MOST:
            raise CpioError(f"it holds more than {MEMBERS_MOST} members")
        names.append(name.removeprefix("./").lstrip("/"))
        stream.skip(size + (-size % 4))


def _archives(stream: _Stream, names: list[str]) -> None:
    """Every cpio archive in a stream, one after the other, with zero padding between them."""
    while stream.skip_zeros():
        magic = stream.peek(6)
        if magic not in NEWC:
            raise CpioError(_not_newc(magic, f"offset {stream.offset} of a decompressed segment"))
        _archive(stream, names)


def read_initramfs(data: bytes, expanded_most: int = EXPANDED_MOST) -> Initramfs:
    """The member names of every segment of an initramfs image held in `data`, decompressing at most
    `expanded_most` bytes in all."""
    found = Initramfs()
    view = memoryview(data)
    budget = [expanded_most]
    at = 0
    try:
        while at < len(view):
            if view[at] == 0:
                found_at = NONZERO.search(data, at)
                at = found_at.start() if found_at else len(view)
                continue
            if bytes(view[at : at + 6]) in NEWC:
                stream = _Stream(_pieces(view[at:]), [len(view)])
                _archive(stream, found.names)
                found.segments.append("cpio")
                at += stream.offset
                continue
            kind = compression_at(view[at:])
            if kind is None:
                raise CpioError(_not_newc(bytes(view[at : at + 6]), f"offset {at}"))
            at += _compressed(view[at:], kind, budget, found)
    except CpioError as e:
        found.problem = str(e)
    return found


def _not_newc(magic: bytes, where: str) -> str:
    if magic.startswith(b"0707") or magic.startswith(b"\xc7\x71") or magic.startswith(b"\x71\xc7"):
        return f"a cpio archive at {where} is not in the newc format (magic {magic!r}), the only one the kernel reads"
    return f"unrecognised data at {where} (neither a newc cpio archive nor a known compression)"


def _pieces(view: memoryview) -> Iterator[bytes]:
    for start in range(0, len(view), CHUNK):
        yield bytes(view[start : start + CHUNK])


def _compressed(view: memoryview, kind: Compression, budget: list[int], found: Initramfs) -> int:
    codec = decoder(view, kind)
    stream = _Stream(codec.chunks(), budget)
    try:
        _archives(stream, found.names)
    except CpioError:
        raise
    except ERRORS as e:
        raise CpioError(f"its {kind.value} segment cannot be decompressed: {e}") from None
    found.segments.append(f"cpio+{kind.value}")
    return max(codec.consumed, 1)
