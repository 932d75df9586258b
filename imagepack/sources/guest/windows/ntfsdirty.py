"""Whether an NTFS volume is marked dirty: the VOLUME_IS_DIRTY flag (0x0001) of the $VOLUME_INFORMATION
attribute of $Volume (MFT record 3), which Windows sets while the volume is in use and clears at a clean
shut-down, and which makes it run chkdsk at the next boot. pyfsntfs reads that attribute but does not expose its
flags, so the one MFT record is read here, with every offset checked against the record it is in."""

from __future__ import annotations

import struct
from typing import Protocol

VOLUME_RECORD = 3
VOLUME_INFORMATION = 0x70
END_OF_ATTRIBUTES = 0xFFFFFFFF
VOLUME_IS_DIRTY = 0x0001
FIXUP_STRIDE = 512


class VolumeReader(Protocol):
    """A seekable binary reader of the volume's bytes (the file object pyfsntfs reads too)."""

    def seek(self, offset: int, whence: int = 0, /) -> int: ...

    def read(self, size: int = -1, /) -> bytes: ...


def _read_at(volume: VolumeReader, offset: int, size: int) -> bytes | None:
    volume.seek(offset)
    data = volume.read(size)
    return data if len(data) == size else None


def _geometry(boot: bytes) -> tuple[int, int] | None:
    """(byte offset of the MFT, MFT record size) from the boot sector, or None when it is not NTFS's."""
    if boot[3:11] != b"NTFS    ":
        return None
    sector, per_cluster = struct.unpack_from("<HB", boot, 0x0B)
    if sector not in (256, 512, 1024, 2048, 4096) or per_cluster == 0:
        return None
    cluster = sector * (per_cluster if per_cluster <= 0x80 else 1 << (256 - per_cluster))
    (mft_cluster,) = struct.unpack_from("<Q", boot, 0x30)
    (per_record,) = struct.unpack_from("<b", boot, 0x40)
    record = per_record * cluster if per_record > 0 else 1 << -per_record
    if not 512 <= record <= 65536 or record & (record - 1) or not 0 < cluster <= 2 * 1024**2:
        return None
    return mft_cluster * cluster, record


def _apply_fixups(record: bytearray) -> bool:
    """Put back the last two bytes of each 512-byte block, which NTFS swaps for the update sequence number."""
    usa_offset, usa_count = struct.unpack_from("<HH", record, 4)
    if usa_count != len(record) // FIXUP_STRIDE + 1 or usa_offset + 2 * usa_count > len(record):
        return False
    check = record[usa_offset : usa_offset + 2]
    for block in range(1, usa_count):
        end = block * FIXUP_STRIDE
        if record[end - 2 : end] != check:
            return False  # a torn write: the record is not whole
        record[end - 2 : end] = record[usa_offset + 2 * block : usa_offset + 2 * block + 2]
    return True


def _volume_flags(record: bytes) -> int | None:
    """The flags of the resident $VOLUME_INFORMATION attribute in an MFT record, or None when there is none."""
    (offset,) = struct.unpack_from("<H", record, 0x14)
    while offset + 16 <= len(record):
        kind, length = struct.unpack_from("<II", record, offset)
        if kind == END_OF_ATTRIBUTES or length < 16 or offset + length > len(record):
            return None
        if kind == VOLUME_INFORMATION:
            if record[offset + 8] != 0 or length < 24:
                return None  # non-resident: not how NTFS stores it
            size, start = struct.unpack_from("<IH", record, offset + 0x10)
            if size < 12 or start + size > length:
                return None
            (flags,) = struct.unpack_from("<H", record, offset + start + 10)
            return int(flags)
        offset += length
    return None


def ntfs_volume_dirty(volume: VolumeReader) -> bool | None:
    """True when the volume is marked dirty, False when it is clean, None when its $Volume record cannot be
    read (not NTFS, or damaged)."""
    boot = _read_at(volume, 0, 512)
    geometry = _geometry(boot) if boot else None
    if geometry is None:
        return None
    mft, size = geometry
    data = _read_at(volume, mft + VOLUME_RECORD * size, size)
    if data is None or data[:4] != b"FILE":
        return None
    record = bytearray(data)
    (number,) = struct.unpack_from("<I", record, 0x2C)  # NTFS 3.1 states each record's own number
    (in_use,) = struct.unpack_from("<H", record, 0x16)
    if number != VOLUME_RECORD or not in_use & 1 or not _apply_fixups(record):
        return None
    flags = _volume_flags(bytes(record))
    return None if flags is None else bool(flags & VOLUME_IS_DIRTY)
