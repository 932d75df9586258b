"""Non-disk files we recognise by their bytes, so that a tar or an ISO is never mistaken for a disk."""

from __future__ import annotations

from imagepack.formats.base import ByteSource, Container


def detect_container(src: ByteSource) -> Container | None:
    head = src.read(0, 512)
    if head[:3] == b"\x1f\x8b\x08":
        return Container.GZIP
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return Container.ZSTD
    if head[257:262] == b"ustar":
        return Container.TAR
    if src.read(0x8001, 5) == b"CD001":
        return Container.ISO
    return None
