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
# zstd and lz4 files may begin with skippable frames (pzstd writes one): 4 bytes of magic whose low four bits are
# free, 4 of size. What follows them says which the file is; past this many, the file is taken to be zstd (whose
# own walk then checks every frame).
_SKIPPABLE = 0x184D2A50
_MAX_SKIPPED = 4096

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
    if _is_skippable(head):
        found.append(_after_skippable_frames(src))
    if head[:3] == b"BZh" and head[3:4].isdigit() and head[4:10] in (_BZIP2_BLOCK, _BZIP2_EMPTY):
        found.append(Container.BZIP2)
    if head[257:262] == b"ustar":
        found.append(Container.TAR)
    if src.read(0x8001, 5) == b"CD001":
        found.append(Container.ISO)
    return found


def _is_skippable(head: bytes) -> bool:
    return len(head) >= 8 and int.from_bytes(head[:4], "little") & 0xFFFFFFF0 == _SKIPPABLE


def _after_skippable_frames(src: ByteSource) -> Container:
    """LZ4 when the first frame after the skippable ones is an lz4 frame; zstd otherwise (`zstd -t` accepts a file
    of skippable frames alone, and refuses anything else after them, as the zstd reader does)."""
    pos = 0
    for _ in range(_MAX_SKIPPED):
        head = src.read(pos, 8)
        if not _is_skippable(head):
            break
        pos += 8 + int.from_bytes(head[4:8], "little")
    return Container.LZ4 if src.read(pos, 4) == _STREAM_MAGIC[Container.LZ4] else Container.ZSTD
