"""ISA-L's deflate, shared by the two compressed writers (a stream-optimized VMDK's grains, a qcow2's clusters):
its fastest level, and what it answers for data that does not compress, which spares a slower encoder's search."""

from __future__ import annotations

from isal import isal_zlib

ISAL_LEVEL = 1  # ISA-L's fastest level that still finds matches (its 0 is barely more than Huffman coding)
PROBE = 4096  # bytes of a grain or cluster tried first: an incompressible sample marks one worth trying whole


def isal_compress(data: bytes, wbits: int) -> bytes:
    """`data` compressed by ISA-L at ISAL_LEVEL, in the deflate format `wbits` names (as zlib's)."""
    return isal_zlib.compress(data, ISAL_LEVEL, wbits)


def stored_if_incompressible(data: bytes, *, wbits: int) -> bytes | None:
    """ISA-L's output for `data` (in the deflate format `wbits` names, as zlib's) where it is no smaller than
    `data`, else None. A sample is tried first, and the whole only where the sample does not shrink, so this costs
    little on data that compresses; on data that does not (a disk's random or encrypted regions), it spares the
    slow encoder the work that would otherwise take most of the time for nothing. The answer depends on the
    data alone, never on the threads."""
    if len(isal_compress(data[:PROBE], wbits)) < PROBE:
        return None
    stored = isal_compress(data, wbits)
    return stored if len(stored) >= len(data) else None
