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
