"""How one qcow2 cluster is compressed, as qemu reads it back (block/qcow2-threads.c).

zlib clusters are raw deflate that qemu inflates with `inflateInit2(-12)`: a 4 KiB window, so no match may
reach further back than 4 KiB. ISA-L's deflate honours that window (`wbits=-12`) at several times the speed of
zlib's (level 6, memLevel 9, as qemu compresses), for output a few percent larger. libdeflate cannot be used
here: it always matches across a 32 KiB window, which qemu's inflate refuses ("invalid distance too far back").

zstd clusters are one zstd frame each, at zstd's default level 3 as qemu writes them: the frame records its
content size and no checksum, and qemu's reader takes any frame that decodes to the cluster.

Every function here is called on many threads at once and releases the GIL while it compresses."""

from __future__ import annotations

import threading
from collections.abc import Callable

import zstandard
from isal import isal_zlib  # type: ignore[import-untyped,unused-ignore]

from imagepack.writers.qcow2.layout import CompressionType

QEMU_WBITS = -12  # raw deflate, 4 KiB window: what qemu's inflateInit2 takes
ISAL_LEVEL = 3  # ISA-L's best ratio; still several times zlib 6's speed
ZSTD_LEVEL = 3  # ZSTD_CLEVEL_DEFAULT: qemu sets no level

Compressor = Callable[[bytes], bytes]


def _deflate_isal(data: bytes) -> bytes:
    return bytes(isal_zlib.compress(data, ISAL_LEVEL, QEMU_WBITS))


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
    return _deflate_isal
