"""Moving a GPT to the end of a disk that was grown: the backup entries and header go to the new last sectors, the
primary header's backup LBA and last usable LBA follow with fresh CRC32s, and the protective MBR covers the new
size, so that a partitioning tool sees one whole table and the new space as free."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from imagepack.core.errors import InputError
from imagepack.formats.partitions import MBR_PROTECTIVE

# signature, revision, header size, header CRC, reserved, my LBA, alternate LBA, first usable, last usable,
# disk GUID, entries LBA, entry count, entry size, entries CRC: the 92 bytes UEFI defines.
_HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")
_MAX_ENTRIES_BYTES = 1024**2  # 128 entries of 128 bytes is the norm; a table claiming more is not one we move


@dataclass(frozen=True)
class GptHeader:
    signature: bytes
    revision: int
    header_size: int
    header_crc: int
    reserved: int
    my_lba: int
    alternate_lba: int
    first_usable: int
    last_usable: int
    disk_guid: bytes
    entries_lba: int
    entry_count: int
    entry_size: int
    entries_crc: int

    def to_bytes(self, sector: bytes) -> bytes:
        """This header over the sector it came from (bytes past header_size kept), its CRC32 recomputed."""
        fields = _HEADER.pack(*(replace(self, header_crc=0).__dict__.values()))
        crc = zlib.crc32(fields[: self.header_size] + sector[_HEADER.size : self.header_size])
        packed = _HEADER.pack(*(replace(self, header_crc=crc).__dict__.values()))
        return packed + sector[_HEADER.size :]


def _cannot(path: Path, why: str) -> InputError:
    return InputError(
        f"{path}: its GPT cannot be moved to the grown end safely ({why}); grow a raw copy of the disk "
        "('qemu-img resize -f raw COPY SIZE' then 'sgdisk -e COPY') and convert that",
        code="gpt.cannot-move",
    )


def move_gpt_to_end(path: Path, *, old_size: int, new_size: int, shown: Path | None = None) -> bool:
    """In the flat disk `path` (guest byte N is file byte N, as in a raw file or a fixed VHD before its footer),
    grown from `old_size` to `new_size` bytes, move the GPT's backup to the new end. Returns False when the disk
    has no GPT (an MBR needs nothing moved); raises InputError when the table is not one that can be rewritten
    safely (a damaged header, a CRC that does not match). `shown` is the name errors give."""
    shown = shown or path
    with open(path, "r+b") as f:
        mbr = bytearray(_read(f, 0, 512))
        if mbr[510:512] != b"\x55\xaa" or not any(mbr[446 + 16 * i + 4] == MBR_PROTECTIVE for i in range(4)):
            return False
        for sector_size in (512, 4096):
            sector = _read(f, sector_size, sector_size)
            if sector[:8] == b"EFI PART":
                break
        else:
            return False
        header = GptHeader(*_HEADER.unpack_from(sector))
        if not _HEADER.size <= header.header_size <= sector_size:
            raise _cannot(shown, f"header size {header.header_size}")
        if header.to_bytes(sector)[: header.header_size] != sector[: header.header_size]:
            raise _cannot(shown, "the primary header's CRC32 does not match")
        entries_bytes = header.entry_count * header.entry_size
        if header.my_lba != 1 or header.entry_size < 128 or header.entry_size % 8 or entries_bytes > _MAX_ENTRIES_BYTES:
            raise _cannot(shown, "the primary header's fields are not those of a table in use")
        entries = _read(f, header.entries_lba * sector_size, entries_bytes)
        if zlib.crc32(entries) != header.entries_crc:
            raise _cannot(shown, "the partition entries' CRC32 does not match")
        if old_size % sector_size or new_size % sector_size or new_size < old_size:
            raise _cannot(shown, f"the sizes are not whole {sector_size}-byte sectors")
        entry_sectors = -(-entries_bytes // sector_size)
        last = new_size // sector_size - 1
        backup_entries_lba = last - entry_sectors
        if backup_entries_lba - 1 < header.last_usable:
            raise _cannot(shown, "the new end would overlap the usable sectors")

        # The old backup (at the old end, or wherever the header says) becomes free space inside the disk:
        # cleared, so that no tool finds a stale second table there.
        old_backup_lba = header.alternate_lba
        if header.last_usable < old_backup_lba < old_size // sector_size:
            old_backup = _read(f, old_backup_lba * sector_size, sector_size)
            if old_backup[:8] == b"EFI PART":
                old = GptHeader(*_HEADER.unpack_from(old_backup))
                if header.last_usable < old.entries_lba < old_backup_lba:
                    _write(f, old.entries_lba * sector_size, bytes(entries_bytes))
                _write(f, old_backup_lba * sector_size, bytes(sector_size))

        primary = replace(header, alternate_lba=last, last_usable=backup_entries_lba - 1)
        backup = replace(primary, my_lba=last, alternate_lba=1, entries_lba=backup_entries_lba)
        blank = sector[: header.header_size].ljust(sector_size, b"\0")
        _write(f, backup_entries_lba * sector_size, entries)
        _write(f, last * sector_size, backup.to_bytes(blank))
        _write(f, sector_size, primary.to_bytes(sector))
        for i in range(4):
            if mbr[446 + 16 * i + 4] == MBR_PROTECTIVE:
                struct.pack_into("<I", mbr, 446 + 16 * i + 12, min(new_size // sector_size - 1, 0xFFFFFFFF))
        _write(f, 0, bytes(mbr))
    return True


def _read(f: BinaryIO, offset: int, length: int) -> bytes:
    f.seek(offset)
    data: bytes = f.read(length)
    return data.ljust(length, b"\0")


def _write(f: BinaryIO, offset: int, data: bytes) -> None:
    f.seek(offset)
    f.write(data)
