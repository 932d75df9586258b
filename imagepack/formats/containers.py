"""Files that are not disks, recognised by their bytes so that one is never converted as a raw disk: archives,
compressed streams, ISO 9660 images."""

from __future__ import annotations

from imagepack.formats.base import ByteSource, Container

# Magic at offset 0; the streams exclude one another.
_STREAM_MAGIC = {
    Container.GZIP: b"\x1f\x8b\x08",
    Container.ZSTD: b"\x28\xb5\x2f\xfd",
    Container.XZ: b"\xfd7zXZ\x00",
    Container.LZ4: b"\x04\x22\x4d\x18",
}
_BZIP2_BLOCK = b"1AY&SY"  # the first block's magic, or the end-of-stream magic of an empty stream
_BZIP2_EMPTY = b"\x17rE8P\x90"

DESCRIPTIONS = {
    Container.ISO: "an ISO 9660 image",
    Container.TAR: "a tar archive",
    Container.GZIP: "a gzip-compressed file",
    Container.ZSTD: "a zstd-compressed file",
    Container.XZ: "an xz-compressed file",
    Container.BZIP2: "a bzip2-compressed file",
    Container.LZ4: "an lz4-compressed file",
}
# The command that gives back what a compressed file holds.
DECOMPRESS = {
    Container.GZIP: "gunzip -k",
    Container.ZSTD: "zstd -d",
    Container.XZ: "xz -dk",
    Container.BZIP2: "bunzip2 -k",
    Container.LZ4: "lz4 -d",
}


def detect_containers(src: ByteSource) -> list[Container]:
    """Every non-disk type whose signature the bytes carry (an ISO signature can sit beside any other)."""
    head = src.read(0, 512)
    found = [kind for kind, magic in _STREAM_MAGIC.items() if head.startswith(magic)]
    if head[:3] == b"BZh" and head[3:4].isdigit() and head[4:10] in (_BZIP2_BLOCK, _BZIP2_EMPTY):
        found.append(Container.BZIP2)
    if head[257:262] == b"ustar":
        found.append(Container.TAR)
    if src.read(0x8001, 5) == b"CD001":
        found.append(Container.ISO)
    return found
