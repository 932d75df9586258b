"""How a stream-optimized VMDK's grains are compressed: each grain is a zlib stream of its own (RFC 1950, the full
32 KiB window), which is what VMware, qemu, libvmdk and 7-Zip inflate. Which encoder writes that stream is ours to
choose, and zlib's own is the slowest there is: libdeflate writes smaller streams about three times faster at the
same level, and ISA-L about five times faster again where a level asks for raw speed.

`--level` picks the encoder and its level:
  1       ISA-L level 1: raw speed (about 10% larger than zlib's level 6)
  2 - 12  libdeflate at that level; 6, the default, is smaller than zlib's (and qemu-img's) level 6
Both encoders let go of the interpreter while they compress, so grains are compressed on every core."""

from __future__ import annotations

from collections.abc import Callable

import deflate
from isal import isal_zlib

from imagepack.errors import InvalidValueError

LOWEST, HIGHEST, DEFAULT = 1, 12, 6
GrainCodec = Callable[[bytes], bytes | bytearray]  # libdeflate answers in a bytearray
ISAL_LEVEL = 1  # ISA-L's fastest level that still finds matches (its 0 is barely more than Huffman coding)


def grain_codec(level: int | None) -> GrainCodec:
    """The function that compresses one grain into a zlib stream at `level` (the default when None)."""
    level = DEFAULT if level is None else level
    if not LOWEST <= level <= HIGHEST:
        raise InvalidValueError(f"level {level}: a stream-optimized vmdk takes {LOWEST} to {HIGHEST}")
    if level == 1:
        return lambda data: isal_zlib.compress(data, ISAL_LEVEL)
    return lambda data: deflate.zlib_compress(data, level)


def codec_name(level: int | None) -> str:
    """What writes the grains at `level`, as the README and `--verbose` name it."""
    level = DEFAULT if level is None else level
    return f"ISA-L level {ISAL_LEVEL}" if level == 1 else f"libdeflate level {level}"
