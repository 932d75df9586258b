"""How one qcow2 cluster is compressed, as qemu reads it back (block/qcow2-threads.c).

zlib clusters are raw deflate that qemu inflates with `inflateInit2(-12)`: a 4 KiB window, so no match may
reach further back than 4 KiB. They are written by zlib at qemu's own settings (level 6, the 4 KiB window), so
the file is no larger than qemu-img's: the upload is what a user waits for. ISA-L honours that window at eight
times the speed but writes about 8% more, and libdeflate cannot be used here: it always matches across a 32 KiB
window, which qemu's inflate refuses ("invalid distance too far back").

zstd clusters are one zstd frame each, at zstd's default level 3 as qemu writes them: the frame records its
content size and no checksum, and qemu's reader takes any frame that decodes to the cluster.

Every function here is called on many threads at once and releases the GIL while it compresses."""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable

import zstandard

from imagepack.writers.qcow2.layout import CompressionType

QEMU_WBITS = -12  # raw deflate, 4 KiB window: what qemu's inflateInit2 takes
ZLIB_LEVEL = 6  # what qemu compresses with (Z_DEFAULT_COMPRESSION)
ZSTD_LEVEL = 3  # ZSTD_CLEVEL_DEFAULT: qemu sets no level

Compressor = Callable[[bytes], bytes]


def _deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(ZLIB_LEVEL, zlib.DEFLATED, QEMU_WBITS)
    return compressor.compress(data) + compressor.flush()


_local = threading.local()


def _zstd(data: bytes) -> bytes:
    # A ZstdCompressor must not be used by two threads at once: one per thread.
    compressor: zstandard.ZstdCompressor | None = getattr(_local, "zstd", None)
    if compressor is None:
        compressor = _local.zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=False)
    return compressor.compress(data)


def compressor_for(kind: CompressionType) -> Compressor:
    if kind is CompressionType.ZSTD:
        return _zstd
    return _deflate
