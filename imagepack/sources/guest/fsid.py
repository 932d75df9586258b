"""What a region of a disk holds, from the signature at its start: a file system, swap, an encrypted container or
an LVM physical volume, with its UUID and label as blkid states them. Only fixed offsets are read (the first
PROBE_BYTES); nothing is guessed: a region no signature matches is 'unknown', one whose first PROBE_BYTES are all
zeroes 'empty' (a partition made and never formatted)."""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

PROBE_BYTES = 68 * 1024  # btrfs' superblock is at 64 KiB

READABLE = frozenset({"ext2", "ext3", "ext4", "xfs", "ntfs", "vfat"})
EMPTY = "empty"  # the first PROBE_BYTES all zeroes: no file system starts here
BIOS_BOOT = "BIOS_boot"  # a GPT BIOS boot partition: GRUB's core image (core.img), raw, in no file system
# What holds no file system, so that nothing is missed unread: swap, an LVM physical volume (its logical volumes
# are read), a BIOS boot partition, a region of zeroes.
NO_FILES = frozenset({"swap", "LVM2_member", BIOS_BOOT, EMPTY})


@dataclass(frozen=True)
class Identified:
    type: str  # ext2 ext3 ext4 xfs ntfs vfat swap crypto_LUKS BitLocker LVM2_member btrfs BIOS_boot empty unknown
    uuid: str | None = None
    label: str | None = None
    version: str | None = None

    @property
    def readable(self) -> bool:
        return self.type in READABLE

    @property
    def unread(self) -> bool:
        """A file system (or what may be one) imagepack has no reader for."""
        return self.type not in READABLE and self.type not in NO_FILES


def _text(raw: bytes) -> str | None:
    value = raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip()
    return value or None


def _uuid(raw: bytes) -> str | None:
    return None if raw == bytes(16) else str(uuid.UUID(bytes=raw))


def identify(head: bytes) -> Identified:
    """The first PROBE_BYTES (or fewer) of a region."""
    if not head.strip(b"\0"):
        return Identified(EMPTY)
    for probe in (_bitlocker, _ntfs, _luks, _lvm, _xfs, _ext, _btrfs, _swap, _fat):
        found = probe(head)
        if found is not None:
            return found
    return Identified("unknown")


def _bitlocker(head: bytes) -> Identified | None:
    return Identified("BitLocker") if head[3:11] == b"-FVE-FS-" else None


def _ntfs(head: bytes) -> Identified | None:
    if head[3:11] != b"NTFS    " or len(head) < 0x50:
        return None
    return Identified("ntfs", head[0x48:0x50][::-1].hex().upper())


def _luks(head: bytes) -> Identified | None:
    if head[:6] != b"LUKS\xba\xbe" or len(head) < 208:
        return None
    (version,) = struct.unpack_from(">H", head, 6)
    label = _text(head[24:72]) if version == 2 else None
    return Identified("crypto_LUKS", _text(head[168:208]), label, str(version))


def _lvm(head: bytes) -> Identified | None:
    for sector in range(4):
        label = head[sector * 512 : sector * 512 + 512]
        if label[:8] == b"LABELONE" and label[24:32] == b"LVM2 001":
            raw = label[32:64].decode("ascii", "replace")
            parts = (raw[:6], raw[6:10], raw[10:14], raw[14:18], raw[18:22], raw[22:26], raw[26:32])
            return Identified("LVM2_member", "-".join(parts), version="LVM2 001")
    return None


def _xfs(head: bytes) -> Identified | None:
    if head[:4] != b"XFSB" or len(head) < 120:
        return None
    return Identified("xfs", _uuid(head[32:48]), _text(head[108:120]))


def _ext(head: bytes) -> Identified | None:
    sb = head[1024:2048]
    if len(sb) < 0x88 or sb[0x38:0x3A] != b"\x53\xef":
        return None
    compat, incompat, ro_compat = struct.unpack_from("<III", sb, 0x5C)
    kind = "ext2"
    if compat & 0x4:  # a journal
        kind = "ext3"
    if incompat & 0x2C0 or ro_compat & 0x478:  # extents, 64bit, flex_bg; huge_file, gdt_csum, dir_nlink, ...
        kind = "ext4"
    return Identified(kind, _uuid(sb[0x68:0x78]), _text(sb[0x78:0x88]))


def _btrfs(head: bytes) -> Identified | None:
    sb = head[0x10000 : 0x10000 + 0x22B]
    if sb[0x40:0x48] != b"_BHRfS_M":
        return None
    return Identified("btrfs", _uuid(sb[0x20:0x30]), _text(sb[0x12B:0x22B]))


def _swap(head: bytes) -> Identified | None:
    for page in (4096, 8192, 16384, 65536):
        if head[page - 10 : page] in (b"SWAPSPACE2", b"SWAP-SPACE"):
            return Identified("swap", _uuid(head[0x40C:0x41C]), _text(head[0x41C:0x42C]))
    return None


def _fat(head: bytes) -> Identified | None:
    if len(head) < 512 or head[510:512] != b"\x55\xaa":
        return None
    for kind_at, serial_at in ((82, 67), (54, 39)):
        if head[kind_at : kind_at + 3] == b"FAT":
            (serial,) = struct.unpack_from("<I", head, serial_at)
            label = _text(head[serial_at + 4 : serial_at + 15])
            version = head[kind_at : kind_at + 5].decode("ascii", "replace")
            return Identified(
                "vfat", f"{serial >> 16:04X}-{serial & 0xFFFF:04X}", None if label == "NO NAME" else label, version
            )
    return None
