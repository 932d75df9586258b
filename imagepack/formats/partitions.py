"""The partition table at the start of a guest disk: none, MBR or GPT, and whether it has an EFI system
partition (which decides whether the image boots with BIOS or UEFI firmware)."""

from __future__ import annotations

import dataclasses
import struct
import uuid
from dataclasses import dataclass
from enum import StrEnum

HEAD_BYTES = 64 * 1024  # MBR, the GPT header and the first 128 partition entries for 512- and 4096-byte sectors
ESP_GUID = uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
BIOS_BOOT_GUID = uuid.UUID("21686148-6449-6e6f-744e-656564454649")
MBR_PROTECTIVE = 0xEE
MBR_EFI = 0xEF


class PartitionTable(StrEnum):
    NONE = "none"
    MBR = "mbr"
    GPT = "gpt"


class Firmware(StrEnum):
    BIOS = "BIOS"
    UEFI_64 = "UEFI_64"


@dataclass(frozen=True)
class PartitionLayout:
    table: PartitionTable
    partitions: int = 0
    has_esp: bool = False
    has_bios_boot: bool = False
    # The byte just past the last sector the table claims (GPT: its backup header, last usable LBA and
    # partitions; MBR: the furthest partition); a disk shorter than this has lost its end.
    table_end: int | None = None
    # Whether the MBR holds boot code (its first 440 bytes are not all zero) behind a valid signature: what a
    # BIOS runs. A GPT disk made for UEFI only has an empty protective MBR.
    mbr_boot_code: bool = False

    @property
    def firmware_guess(self) -> Firmware | None:
        """UEFI when there is an EFI system partition, BIOS for any other table, unknown without one."""
        if self.has_esp:
            return Firmware.UEFI_64
        if self.table is PartitionTable.NONE:
            return None
        return Firmware.BIOS


def read_partition_layout(head: bytes) -> PartitionLayout:
    """Parse the first bytes of a disk; anything malformed reads as the simplest table it can be."""
    if len(head) < 512 or head[510:512] != b"\x55\xaa":
        return PartitionLayout(PartitionTable.NONE)
    entries = [head[446 + 16 * i : 462 + 16 * i] for i in range(4)]
    types = [entry[4] for entry in entries]
    boot_code = any(head[:440])
    if MBR_PROTECTIVE in types:
        for sector in (512, 4096):
            gpt = _read_gpt(head, sector)
            if gpt is not None:
                return dataclasses.replace(gpt, mbr_boot_code=boot_code)
    used = [t for t in types if t != 0]
    return PartitionLayout(
        PartitionTable.MBR, len(used), has_esp=MBR_EFI in used, table_end=_mbr_end(entries), mbr_boot_code=boot_code
    )


def _mbr_end(entries: list[bytes]) -> int | None:
    # A boot sector that is not a partition table (a FAT or NTFS volume's own) has code here; only a status
    # byte of 0x00 or 0x80 in every slot makes the entries a table whose sizes mean anything.
    if any(entry[0] not in (0x00, 0x80) for entry in entries):
        return None
    ends = [
        (start + count) * 512
        for entry in entries
        if entry[4] not in (0, MBR_PROTECTIVE)
        for start, count in [struct.unpack_from("<II", entry, 8)]
        if count
    ]
    return max(ends, default=None)


def _read_gpt(head: bytes, sector: int) -> PartitionLayout | None:
    header = head[sector : sector + 92]
    if len(header) < 92 or header[:8] != b"EFI PART":
        return None
    backup_lba, _first_usable, last_usable = struct.unpack_from("<QQQ", header, 32)
    entries_lba, count, entry_size = struct.unpack_from("<QII", header, 72)
    if entry_size < 128 or entry_size > 4096 or count > 4096:
        return None
    partitions = 0
    has_esp = has_bios_boot = False
    last_lba = max(backup_lba, last_usable)
    start = entries_lba * sector
    for i in range(count):
        entry = head[start + i * entry_size : start + i * entry_size + 48]
        if len(entry) < 48:
            break  # entries beyond what we read; the first ones carry the boot partitions in practice
        if entry[:16] == bytes(16):
            continue
        partitions += 1
        guid = uuid.UUID(bytes_le=entry[:16])
        has_esp |= guid == ESP_GUID
        has_bios_boot |= guid == BIOS_BOOT_GUID
        last_lba = max(last_lba, struct.unpack_from("<Q", entry, 40)[0])
    return PartitionLayout(PartitionTable.GPT, partitions, has_esp, has_bios_boot, (last_lba + 1) * sector)


@dataclass(frozen=True)
class PartitionEntry:
    """One slot of a partition table: where it is and what its table says it holds."""

    number: int  # as the guest's kernel numbers it (GPT: the slot from 1; MBR: 1-4, logical ones from 5)
    start: int  # bytes from the start of the disk
    size: int  # bytes
    type: str  # GPT: the type GUID; MBR: the type byte as two hex digits
    partuuid: str | None = None  # GPT: the unique GUID; MBR: the disk signature and number, as Linux names it
    name: str | None = None  # GPT's partition name
    bootable: bool = False  # MBR's active flag


MBR_EXTENDED = (0x05, 0x0F, 0x85)


def mbr_entries(sector: bytes, base: int = 0) -> list[tuple[int, int, int, bool]]:
    """(type, start, size, active) of the used slots of one MBR or extended boot record, in bytes; starts are
    relative to `base` sectors. A slot whose status byte is neither 0x00 nor 0x80 makes the sector no table."""
    if len(sector) < 512 or sector[510:512] != b"\x55\xaa":
        return []
    slots = [sector[446 + 16 * i : 462 + 16 * i] for i in range(4)]
    if any(slot[0] not in (0x00, 0x80) for slot in slots):
        return []
    found = []
    for slot in slots:
        start, count = struct.unpack_from("<II", slot, 8)
        if slot[4] and count:
            found.append((slot[4], (base + start) * 512, count * 512, slot[0] == 0x80))
    return found


def gpt_entries(head: bytes) -> tuple[int, list[PartitionEntry]] | None:
    """The logical sector size and the used entries of the GPT in `head` (512- or 4096-byte sectors), else None.
    Entries past the end of `head` are not read."""
    for sector in (512, 4096):
        header = head[sector : sector + 92]
        if len(header) < 92 or header[:8] != b"EFI PART":
            continue
        entries_lba, count, entry_size = struct.unpack_from("<QII", header, 72)
        if entry_size < 128 or entry_size > 4096 or count > 4096:
            return None
        found = []
        base = entries_lba * sector
        for i in range(count):
            entry = head[base + i * entry_size : base + i * entry_size + 128]
            if len(entry) < 128:
                break
            if entry[:16] == bytes(16):
                continue
            first, last = struct.unpack_from("<QQ", entry, 32)
            if last < first:
                continue
            name = entry[56:128].decode("utf-16-le", "replace").split("\0", 1)[0]
            found.append(
                PartitionEntry(
                    i + 1,
                    first * sector,
                    (last - first + 1) * sector,
                    str(uuid.UUID(bytes_le=entry[:16])),
                    str(uuid.UUID(bytes_le=entry[16:32])),
                    name or None,
                )
            )
        return sector, found
    return None
