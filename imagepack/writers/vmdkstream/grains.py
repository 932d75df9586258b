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
from isal import isal_zlib

from imagepack.core.errors import InvalidValueError

LOWEST, HIGHEST, DEFAULT = 1, 12, 6
GrainCodec = Callable[[bytes], bytes | bytearray]  # libdeflate answers in a bytearray
ISAL_LEVEL = 1  # ISA-L's fastest level that still finds matches (its 0 is barely more than Huffman coding)
PROBE = 4096  # bytes of a grain tried first: an incompressible sample marks a grain worth trying with ISA-L


def grain_codec(level: int | None) -> GrainCodec:
    """The function that compresses one grain into a zlib stream at `level` (the default when None)."""
    level = DEFAULT if level is None else level
    if not LOWEST <= level <= HIGHEST:
        raise InvalidValueError(f"level {level}: a stream-optimized vmdk takes {LOWEST} to {HIGHEST}")
    if level == 1:
        return lambda data: isal_zlib.compress(data, ISAL_LEVEL)
    return lambda data: _deflate(data, level)


def _deflate(data: bytes, level: int) -> bytes | bytearray:
    """libdeflate's grain, but for a grain that does not compress (encrypted, already compressed) ISA-L's stored
    one (see `stored_if_incompressible`), the same size as libdeflate's at about twelve times the speed."""
    stored = stored_if_incompressible(data, wbits=15)
    return stored if stored is not None else deflate.zlib_compress(data, level)


def stored_if_incompressible(data: bytes, *, wbits: int) -> bytes | None:
    """ISA-L's output for `data` (in the deflate format `wbits` names, as zlib's) where it is no smaller than
    `data`, else None. A sample is tried first, and the whole only where the sample does not shrink, so this costs
    little on data that compresses; on data that does not (a disk's random or encrypted regions), it spares the
    slow encoder the work that would otherwise take most of the time for nothing. The answer depends on the
    data alone, never on the threads."""
    if len(isal_zlib.compress(data[:PROBE], ISAL_LEVEL, wbits)) < PROBE:
        return None
    stored = isal_zlib.compress(data, ISAL_LEVEL, wbits)
    return stored if len(stored) >= len(data) else None


def codec_name(level: int | None) -> str:
    """What writes the grains at `level`, as the README and `--verbose` name it."""
    level = DEFAULT if level is None else level
    return f"ISA-L level {ISAL_LEVEL}" if level == 1 else f"libdeflate level {level}"
