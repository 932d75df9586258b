"""How a stream-optimized VMDK's grains are compressed: each grain is a zlib stream of its own (RFC 1950, the full
32 KiB window), which is what VMware, qemu, libvmdk and 7-Zip inflate. Which encoder writes that stream is ours to
choose, and zlib's own is the slowest there is: libdeflate writes smaller streams about three times faster at the
same level, and ISA-L about five times faster again where a level asks for raw speed.

`--level` picks the encoder and its level:
  1       ISA-L level 1: raw speed (about 10% larger than zlib's level 6)
  2 - 12  libdeflate at that level; 6, the default, is smaller than zlib's (and qemu-img's) level 6 (a grain
          that does not compress is stored by ISA-L instead: as large as libdeflate's, and faster)
Both encoders let go of the interpreter while they compress, so grains are compressed on every core."""

from __future__ import annotations

from collections.abc import Callable

import deflate

from imagepack.core.errors import InvalidValueError
from imagepack.writers.isal_deflate import ISAL_LEVEL, isal_compress, stored_if_incompressible

LOWEST, HIGHEST, DEFAULT = 1, 12, 6
GrainCodec = Callable[[bytes], bytes | bytearray]  # libdeflate answers in a bytearray
ZLIB_WBITS = 15  # a zlib stream (RFC 1950) with the full 32 KiB window, as zlib's wbits name it


def grain_codec(level: int | None) -> GrainCodec:
    """The function that compresses one grain into a zlib stream at `level` (the default when None)."""
    level = DEFAULT if level is None else level
    if not LOWEST <= level <= HIGHEST:
        raise InvalidValueError(f"level {level}: a stream-optimized vmdk takes {LOWEST} to {HIGHEST}")
    if level == 1:
        return lambda data: isal_compress(data, ZLIB_WBITS)
    return lambda data: _deflate(data, level)


def _deflate(data: bytes, level: int) -> bytes | bytearray:
    """libdeflate's grain, but for a grain that does not compress (encrypted, already compressed) ISA-L's stored
    one (see `stored_if_incompressible`), the same size as libdeflate's at about twelve times the speed."""
    stored = stored_if_incompressible(data, wbits=ZLIB_WBITS)
    return stored if stored is not None else deflate.zlib_compress(data, level)


def codec_name(level: int | None) -> str:
    """What writes the grains at `level`, as the README and `--verbose` name it."""
    level = DEFAULT if level is None else level
    return f"ISA-L level {ISAL_LEVEL}" if level == 1 else f"libdeflate level {level}"
