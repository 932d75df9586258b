"""How one qcow2 cluster is compressed, as qemu reads it back (block/qcow2-threads.c), and at which level.

zlib clusters are raw deflate that qemu inflates with `inflateInit2(-12)`: a 4 KiB window, so no match may
reach further back than 4 KiB. `level` picks the encoder, as it does for a stream vmdk's grains:
  1      ISA-L level 1 in the 4 KiB window: raw speed (about eight times zlib's, about 8% larger)
  2 - 9  zlib at that level in the 4 KiB window; 6, the default, is qemu's own, so the file is no larger than
         qemu-img's: the upload is what a user waits for. A cluster that ISA-L cannot shrink (random or encrypted
         data) is stored as it is without zlib's slow search through it
libdeflate cannot be used here: it always matches across a 32 KiB window, which qemu's inflate refuses ("invalid
distance too far back").

zstd clusters are one zstd frame each, at zstd's level 1 to 22; the default, 3, is qemu's (it sets no level), so
the clusters are byte for byte qemu's. The frame records its content size and no checksum, and qemu's reader
takes any frame that decodes to the cluster.

Every function here is called on many threads at once and releases the GIL while it compresses."""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable

import zstandard

from imagepack.core.errors import InvalidValueError
from imagepack.writers.isal_deflate import isal_compress, stored_if_incompressible
from imagepack.writers.qcow2.layout import CompressionType

QEMU_WBITS = -12  # raw deflate, 4 KiB window: what qemu's inflateInit2 takes
# (lowest, highest, default) of each cluster codec; the defaults are qemu's: Z_DEFAULT_COMPRESSION, ZSTD_CLEVEL_DEFAULT
LEVELS = {CompressionType.ZLIB: (1, 9, 6), CompressionType.ZSTD: (1, 22, 3)}

Compressor = Callable[[bytes], bytes]


def _deflate(level: int) -> Compressor:
    def compress(data: bytes) -> bytes:
        if stored_if_incompressible(data, wbits=QEMU_WBITS) is not None:
            return data  # no smaller compressed, so stored as it is; zlib would search it for matches for nothing
        compressor = zlib.compressobj(level, zlib.DEFLATED, QEMU_WBITS)
        return compressor.compress(data) + compressor.flush()

    return compress


def _isal(data: bytes) -> bytes:
    return isal_compress(data, QEMU_WBITS)


_local = threading.local()


def _zstd(level: int) -> Compressor:
    def compress(data: bytes) -> bytes:
        # A ZstdCompressor must not be used by two threads at once: one per thread (and level).
        compressors: dict[int, zstandard.ZstdCompressor] = _local.__dict__.setdefault("zstd", {})
        compressor = compressors.get(level)
        if compressor is None:
            compressor = compressors[level] = zstandard.ZstdCompressor(level=level, write_checksum=False)
        return compressor.compress(data)

    return compress


def check_level(kind: CompressionType, level: int | None) -> int:
    """`level`, or the codec's default when None; a level the codec has not is refused."""
    lowest, highest, default = LEVELS[kind]
    if level is None:
        return default
    if not lowest <= level <= highest:
        raise InvalidValueError(
            f"level {level}: a compressed qcow2's {kind.name.lower()} clusters take {lowest} to {highest}"
        )
    return level


def compressor_for(kind: CompressionType, level: int | None = None) -> Compressor:
    """The function that compresses one cluster with `kind` at `level` (the codec's default when None)."""
    level = check_level(kind, level)
    if kind is CompressionType.ZSTD:
        return _zstd(level)
    return _isal if level == 1 else _deflate(level)
