"""A file of compressed streams one after another (xz, bzip2), read as the format's own tool reads it: each stream
whole and checked, the padding the format allows between and after them skipped, and anything else after a stream
refused. Python's own readers (lzma.LZMAFile, bz2.BZ2File) instead stop without a word where what follows a stream
does not decode as the start of another, and leave the rest out: a damaged second stream, or garbage, is dropped."""

from __future__ import annotations

import bz2
import lzma
from collections.abc import Callable
from typing import BinaryIO, Protocol

from imagepack.compression.xzblocks import HEADER_MAGIC, KNOWN_CHECKS

SEQUENTIAL_READ = 1024**2  # of the compressed file at a time, and of output at most
BZIP2_MAGIC = b"BZh"


class Decoder(Protocol):
    @property
    def eof(self) -> bool: ...
    @property
    def needs_input(self) -> bool: ...
    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


class TrailingData(ValueError):
    """Bytes after a stream that are neither the padding the format allows nor another stream."""


class Streams:
    """The content of every stream, read forward; each read returns at most what was asked for, b"" is the end.

    `new_decoder` makes the decoder of one stream; `padding`: zero bytes may follow a stream in groups of this
    many (xz's stream padding), or none at all (0); `magic`: how a stream begins; `finished`: called with each
    stream's decoder once it ends (to check what the decoder does not)."""

    def __init__(
        self,
        raw: BinaryIO,
        new_decoder: Callable[[], Decoder],
        *,
        padding: int,
        magic: bytes,
        finished: Callable[[Decoder], None] | None = None,
    ) -> None:
        self.raw = raw
        self.new_decoder = new_decoder
        self.padding = padding
        self.magic = magic
        self.finished = finished
        self.decoder = new_decoder()
        self.feed = b""  # read from the file, for the next decoder
        self.done = False

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            return b"".join(iter(lambda: self.read(SEQUENTIAL_READ), b""))
        if n == 0:
            return b""
        while not self.done:
            if self.decoder.eof:
                self._next_stream()
                continue
            data = b""
            if self.decoder.needs_input:
                data, self.feed = self.feed or self.raw.read(SEQUENTIAL_READ), b""
                if not data:
                    raise EOFError("it ends inside a stream")
            if out := self.decoder.decompress(data, max_length=n):
                return out
        return b""

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer)) if len(buffer) else b""
        buffer[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def __enter__(self) -> Streams:
        return self

    def __exit__(self, *exc: object) -> None:
        self.done = True  # the file is the caller's to close

    def _next_stream(self) -> None:
        if self.finished is not None:
            self.finished(self.decoder)
        rest = self.decoder.unused_data
        zeros = 0
        while True:
            stripped = rest.lstrip(b"\0") if self.padding else rest
            zeros += len(rest) - len(stripped)
            if stripped or not (rest := self.raw.read(SEQUENTIAL_READ)):
                break
        if self.padding and zeros % self.padding:
            raise TrailingData(f"stream padding of a length that is not a multiple of {self.padding}")
        if not stripped:
            self.done = True
            return
        if not stripped.startswith(self.magic[: len(stripped)]):
            raise TrailingData("bytes after a stream that are not another stream")
        self.decoder = self.new_decoder()
        self.feed = stripped


def xz_streams(raw: BinaryIO, *, memlimit: int) -> Streams:
    """An xz file's streams, as `xz -d` reads them: stream padding (zero bytes, a multiple of four) skipped, and
    no stream decoded past `memlimit` bytes of decoder memory."""
    return Streams(
        raw,
        lambda: lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=memlimit),
        padding=4,
        magic=HEADER_MAGIC,
        finished=_known_check,
    )


def _known_check(decoder: Decoder) -> None:
    check = getattr(decoder, "check", lzma.CHECK_NONE)
    if check not in KNOWN_CHECKS:  # liblzma decodes such a stream without checking it
        raise lzma.LZMAError(f"an integrity check of a kind xz does not know (ID {check})")


def bzip2_streams(raw: BinaryIO) -> Streams:
    """A bzip2 file's streams (pbzip2 and lbzip2 write several), each checked against its own combined CRC by
    libbz2. `bzip2 -t` warns of anything after the last stream and leaves it out; it is refused here."""
    return Streams(raw, bz2.BZ2Decompressor, padding=0, magic=BZIP2_MAGIC)
