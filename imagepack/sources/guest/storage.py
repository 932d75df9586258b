"""A guest disk's storage: its partition table, each partition with what its signature says it holds, and the
logical volumes of the LVM volume groups on it (read through by libvslvm). Each place a file system can be is a
Block: the byte reader to open it on, and what identified it."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import pyvslvm  # type: ignore[import-not-found]

from imagepack.formats.partitions import HEAD_BYTES, MBR_EXTENDED, PartitionEntry, gpt_entries, mbr_entries
from imagepack.sources.guest.blockio import Reader, VolumeReader, Window
from imagepack.sources.guest.fsid import BIOS_BOOT, EMPTY, PROBE_BYTES, Identified, identify

MAX_LOGICAL = 128  # logical partitions followed along an extended partition's chain
MAX_LVS = 256
MAX_GPT_BYTES = 17 * 1024**2  # 4096 entries of 4096 bytes after the header: the largest table gpt_entries takes

BIOS_BOOT_TYPE = "21686148-6449-6e6f-744e-656564454649"  # GRUB's core image on GPT, read by the MBR's boot code
GPT_TYPES = {
    "c12a7328-f81f-11d2-ba4b-00a0c93ec93b": "EFI System",
    BIOS_BOOT_TYPE: "BIOS boot",
    "0fc63daf-8483-4772-8e79-3d69d8477de4": "Linux filesystem",
    "4f68bce3-e8cd-4db1-96e7-fbcaf984b709": "Linux root (x86-64)",
    "bc13c2ff-59e6-4262-a352-b275fd6f7172": "Linux extended boot",
    "e6d6d379-f507-44c2-a23c-238f2a3df928": "Linux LVM",
    "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f": "Linux swap",
    "a19d880f-05fc-4d3b-a006-743f0f84911e": "Linux RAID",
    "ca7d7ccb-63ed-4c53-861c-1742536059cc": "Linux LUKS",
    "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7": "Microsoft basic data",
    "e3c9e316-0b5c-4db8-817d-f92df00215ae": "Microsoft reserved",
    "de94bba4-06d1-4d40-a16a-bfd50179d6ac": "Windows recovery",
}
MBR_TYPES = {
    0x01: "FAT12", 0x04: "FAT16", 0x05: "Extended", 0x06: "FAT16", 0x07: "NTFS/exFAT", 0x0B: "FAT32",
    0x0C: "FAT32 (LBA)", 0x0E: "FAT16 (LBA)", 0x0F: "Extended (LBA)", 0x27: "Windows recovery",
    0x82: "Linux swap", 0x83: "Linux", 0x85: "Linux extended", 0x8E: "Linux LVM", 0xEE: "GPT protective",
    0xEF: "EFI System", 0xFD: "Linux RAID",
}  # fmt: skip
ESP_TYPES = ("c12a7328-f81f-11d2-ba4b-00a0c93ec93b", "ef")


@dataclass
class Block:
    """Somewhere a file system can be: a partition, a logical volume or the whole disk."""

    name: str  # how the report names it: 'partition 2', 'lv vg0/root', 'disk'
    reader: Reader
    offset: int
    size: int
    found: Identified
    facts: dict[str, Any] = field(default_factory=dict)  # what the report says of it besides the file system

    def window(self) -> Window:
        return Window(self.reader, self.offset, self.size)

    def to_json(self) -> dict[str, Any]:
        fs = self.found
        return {
            "name": self.name,
            **self.facts,
            "offset": self.offset,
            "size": self.size,
            "filesystem": fs.type,
            "filesystem_version": fs.version,
            "uuid": fs.uuid,
            "label": fs.label,
            "readable": fs.readable,
        }


def _probe(reader: Reader, offset: int, size: int) -> Identified:
    return identify(reader.read(offset, min(PROBE_BYTES, size)))


def partitions(disk: Reader, head: bytes) -> tuple[str, list[PartitionEntry]]:
    """The table's kind ('gpt', 'mbr' or 'none') and its partitions, logical ones included."""
    gpt = gpt_entries(head)
    if gpt is not None:
        return "gpt", gpt[1]
    slots = mbr_entries(head[:512])
    if not slots or any(kind == 0xEE for kind, *_ in slots):
        return "none", []
    signature = head[440:444][::-1].hex()
    found = []
    extended: tuple[int, int] | None = None
    for number, (kind, start, size, active) in enumerate(slots, 1):
        if kind in MBR_EXTENDED:
            extended = (start, size)
        found.append(PartitionEntry(number, start, size, f"{kind:02x}", f"{signature}-{number:02x}", None, active))
    if extended is not None:
        found += _logical(disk, extended[0], signature)
    return "mbr", found


def _logical(disk: Reader, base: int, signature: str) -> list[PartitionEntry]:
    """The chain of extended boot records from `base`: each names one logical partition and the next record."""
    found: list[PartitionEntry] = []
    at, seen = base, set()
    while at not in seen and len(found) < MAX_LOGICAL:
        seen.add(at)
        slots = mbr_entries(disk.read(at, 512), 0)
        data = [s for s in slots if s[0] not in MBR_EXTENDED]
        if data:
            kind, start, size, _active = data[0]
            number = 5 + len(found)
            found.append(PartitionEntry(number, at + start, size, f"{kind:02x}", f"{signature}-{number:02x}"))
        nxt = [s for s in slots if s[0] in MBR_EXTENDED]
        if not nxt:
            break
        at = base + nxt[0][1]
    return found


def _gpt_extent(head: bytes) -> int:
    """How far from the start of the disk a GPT's entry array reaches (at most MAX_GPT_BYTES), so that a table
    with more entries than the usual 128 is read whole; 0 without a GPT."""
    for sector in (512, 4096):
        header = head[sector : sector + 92]
        if len(header) == 92 and header[:8] == b"EFI PART":
            entries_lba, count, entry_size = struct.unpack_from("<QII", header, 72)
            return int(min(entries_lba * sector + count * entry_size, MAX_GPT_BYTES))
    return 0


def blocks(disk: Reader) -> tuple[dict[str, Any], list[Block]]:
    """The storage part of the report, and every block a file system may be on."""
    head = disk.read(0, HEAD_BYTES)
    head = disk.read(0, _gpt_extent(head)) if _gpt_extent(head) > len(head) else head
    table, entries = partitions(disk, head)
    found: list[Block] = []
    for entry in entries:
        if entry.type in ("05", "0f", "85"):
            continue
        size = max(0, min(entry.size, disk.size - entry.start))
        names = GPT_TYPES if table == "gpt" else {f"{k:02x}": v for k, v in MBR_TYPES.items()}
        facts = {
            "number": entry.number,
            "type": entry.type,
            "type_name": names.get(entry.type),
            "partuuid": entry.partuuid,
            "partition_name": entry.name,
            "bootable": entry.bootable,
            "esp": entry.type in ESP_TYPES,
            "beyond_disk": entry.start + entry.size > disk.size,
        }
        probed = _probe(disk, entry.start, size)
        if table == "gpt" and entry.type == BIOS_BOOT_TYPE and probed.type in ("unknown", EMPTY):
            probed = Identified(BIOS_BOOT)  # no file system's signature: GRUB's core image, a known kind
        found.append(Block(f"partition {entry.number}", disk, entry.start, size, probed, facts))
    if table == "none":
        found.append(Block("disk", disk, 0, disk.size, _probe(disk, 0, disk.size)))
    groups = [lvm_group(block) for block in found if block.found.type == "LVM2_member"]
    lvs = [lv for _, members in groups for lv in members]
    storage = {"partition_table": table, "size": disk.size, "volume_groups": [g for g, _ in groups if g]}
    return storage, found + lvs


def lvm_group(pv: Block) -> tuple[dict[str, Any], list[Block]]:
    """The volume group on physical volume `pv` and a block for each of its logical volumes. A group spread
    over physical volumes that are not all on this disk is reported with what is missing."""
    window = pv.window()
    handle = pyvslvm.handle()
    try:
        handle.open_file_object(window)
        handle.open_physical_volume_files_as_file_objects([window])
        group = handle.get_volume_group()
        info: dict[str, Any] = {"name": group.name, "uuid": group.identifier, "physical_volume": pv.name}
        info["physical_volumes"] = group.number_of_physical_volumes
        volumes: list[Block] = []
        info["logical_volumes"] = []
        for index in range(min(group.number_of_logical_volumes, MAX_LVS)):
            lv = group.get_logical_volume(index)
            reader = VolumeReader(lv, int(lv.size))
            block = Block(f"lv {group.name}/{lv.name}", reader, 0, reader.size, _probe(reader, 0, reader.size))
            block.facts = {"volume_group": group.name, "logical_volume": lv.name, "lv_uuid": lv.identifier}
            volumes.append(block)
            info["logical_volumes"].append(lv.name)
    except (OSError, MemoryError) as e:
        return {"physical_volume": pv.name, "error": str(e).split(". ", 1)[0][:200]}, []
    return info, volumes
