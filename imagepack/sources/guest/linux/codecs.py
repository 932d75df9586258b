"""The compressed segments of an initramfs, decompressed in bounded pieces: each decoder yields chunks of at
most CHUNK bytes and says, once exhausted, how many input bytes its stream took (so the segment after it can
be found, as the kernel finds it)."""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Iterator
from enum import StrEnum
from typing import Protocol

import zstandard

from imagepack.sources.guest.linux.lz4legacy import MAGIC as LZ4_LEGACY
from imagepack.sources.guest.linux.lz4legacy import Lz4Error, Lz4Legacy

CHUNK = 1024 * 1024
INPUT_STEP = 64 * 1024
XZ_MEMORY = 256 * 1024 * 1024  # an xz dictionary above this is refused, not allocated
ZSTD_WINDOW = 128 * 1024 * 1024


class Compression(StrEnum):
    GZIP = "gzip"
    XZ = "xz"
    LZMA = "lzma"
    ZSTD = "zstd"
    LZ4 = "lz4"
    BZIP2 = "bzip2"


MAGICS: tuple[tuple[bytes, Compression], ...] = (
    (b"\x1f\x8b", Compression.GZIP),
    (b"\xfd7zXZ\x00", Compression.XZ),
    (b"\x28\xb5\x2f\xfd", Compression.ZSTD),
    (LZ4_LEGACY, Compression.LZ4),
    (b"BZh", Compression.BZIP2),
    (b"\x5d\x00\x00", Compression.LZMA),
)

ERRORS = (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError, zstandard.ZstdError, Lz4Error, MemoryError)


def compression_at(data: memoryview) -> Compression | None:
    head = bytes(data[:6])
    return next((kind for magic, kind in MAGICS if head.startswith(magic)), None)


class Decoder(Protocol):
    consumed: int

    def chunks(self) -> Iterator[bytes]: ...


class _Stdlib:
    """gzip, xz, lzma and bzip2 through the standard library's decompressors, whose output `max_length` bounds."""

    def __init__(self, data: memoryview, kind: Compression) -> None:
        self.data, self.kind, self.consumed = data, kind, 0

    def chunks(self) -> Iterator[bytes]:
        return self._gzip() if self.kind is Compression.GZIP else self._other()

    def _gzip(self) -> Iterator[bytes]:
        d = zlib.decompressobj(wbits=31)
        fed = 0
        while not d.eof:
            piece = d.unconsumed_tail
            if not piece:
                piece = bytes(self.data[fed : fed + INPUT_STEP])
                fed += len(piece)
                if not piece:
                    raise EOFError("the gzip stream is cut off")
            if out := d.decompress(piece, CHUNK):
                yield out
        self.consumed = fed - len(d.unused_data)

    def _other(self) -> Iterator[bytes]:
        d: lzma.LZMADecompressor | bz2.BZ2Decompressor
        if self.kind is Compression.BZIP2:
            d = bz2.BZ2Decompressor()
        else:
            fmt = lzma.FORMAT_XZ if self.kind is Compression.XZ else lzma.FORMAT_ALONE
            d = lzma.LZMADecompressor(format=fmt, memlimit=XZ_MEMORY)
        fed = 0
        while not d.eof:
            piece = b""
            if d.needs_input:
                piece = bytes(self.data[fed : fed + INPUT_STEP])
                fed += len(piece)
                if not piece:
                    raise EOFError(f"the {self.kind.value} stream is cut off")
            if out := d.decompress(piece, CHUNK):
                yield out
        self.consumed = fed - len(d.unused_data)


class _Zstd:
    """zstd frames (read across frames to the end of the input: a zstd segment is always the last one)."""

    def __init__(self, data: memoryview) -> None:
        self.data, self.consumed = data, 0

    def chunks(self) -> Iterator[bytes]:
        dctx = zstandard.ZstdDecompressor(max_window_size=ZSTD_WINDOW)
        trimmed = self.data[: _before_zeros(self.data)]  # the zero padding after the last frame
        with dctx.stream_reader(trimmed, read_across_frames=True) as reader:
            while out := reader.read(CHUNK):
                yield out
        self.consumed = len(self.data)


def _before_zeros(data: memoryview) -> int:
    """Where the zero bytes that end `data` begin, found from the end without copying it."""
    end = len(data)
    while end > 0:
        start = max(0, end - INPUT_STEP)
        piece = bytes(data[start:end]).rstrip(b"\0")
        if piece:
            return start + len(piece)
        end = start
    return 0


def decoder(data: memoryview, kind: Compression) -> Decoder:
    if kind is Compression.ZSTD:
        return _Zstd(data)
    if kind is Compression.LZ4:
        return Lz4Legacy(data)
    return _Stdlib(data, kind)
