"""Files that are not disks, recognised by their bytes so that one is never converted as a raw disk: archives,
compressed streams, ISO 9660 images, programs, and (when nothing else matched) text."""

from __future__ import annotations

import codecs

from imagepack.formats.base import ByteSource, Container

# Magic at offset 0; the streams exclude one another.
_STREAM_MAGIC = {
    Container.GZIP: b"\x1f\x8b\x08",
    Container.ZSTD: b"\x28\xb5\x2f\xfd",
    Container.XZ: b"\xfd7zXZ\x00",
    Container.LZ4: b"\x04\x22\x4d\x18",
}
# Archives and programs, by the magic at offset 0 their own tools look for.
_FILE_MAGIC = {
    Container.ZIP: (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"),  # a member, an empty archive, a spanned one
    Container.SEVENZIP: (b"7z\xbc\xaf\x27\x1c",),
    Container.RAR: (b"Rar!\x1a\x07\x00", b"Rar!\x1a\x07\x01\x00"),
    Container.CPIO: (b"070701", b"070702", b"070707"),  # newc, crc, odc (the old binary one has 2 bytes: too few)
    Container.AR: (b"!<arch>\n",),  # a .deb, a static library
    Container.ELF: (b"\x7fELF",),
}
TEXT_SAMPLE = 64 * 1024  # every file system, partition table and boot sector has a zero byte well before this
# Control characters text may hold: tab, line feed, vertical tab, form feed, carriage return, escape.
_TEXT_CONTROLS = frozenset("\t\n\v\f\r\x1b")
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
    Container.ZIP: "a zip archive",
    Container.SEVENZIP: "a 7-Zip archive",
    Container.RAR: "a RAR archive",
    Container.CPIO: "a cpio archive",
    Container.AR: "an ar archive",
    Container.ELF: "an ELF program or library",
    Container.TEXT: "a text file",
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
    found.extend(kind for kind, magics in _FILE_MAGIC.items() if head.startswith(magics))
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


def is_text(src: ByteSource) -> bool:
    """Whether the file starts as text does: UTF-8 (ASCII included) with no zero byte and no control character
    but whitespace, over its first TEXT_SAMPLE bytes. Asked only of bytes no other signature matched: a disk
    always has zero bytes there, and a vmdk's text descriptor is recognised as a vmdk first."""
    sample = src.read(0, TEXT_SAMPLE)
    if not sample:
        return False
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(sample, final=len(sample) == src.size)
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in _TEXT_CONTROLS for c in text)
