"""VHDX (Hyper-V): the file identifier, the two headers, the region table and the metadata items that give the
disk's size and block size. A differencing disk (parent locator) and a log that needs replaying are refused."""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator

from imagepack.core.problems import Problem
from imagepack.formats.base import (
    ByteSource,
    FormatInspector,
    ImageFormat,
    Inspection,
    SafetyPolicy,
    check_virtual_size,
)

SIGNATURE = b"vhdxfile"
KiB = 1024
MiB = 1024**2
HEADER_OFFSETS = (64 * KiB, 128 * KiB)
HEADER_SIZE = 4 * KiB
REGION_TABLE_OFFSET = 192 * KiB
REGION_TABLE_SIZE = 64 * KiB
MAX_ENTRIES = 2047
MAX_LOG = 64 * MiB  # qemu writes 1 MiB; Hyper-V the same
LOG_SECTOR = 4 * KiB  # the format's own limit, for region and metadata tables alike

BAT_REGION = uuid.UUID("2DC27766-F623-4200-9D64-115E9BFD4A08")
METADATA_REGION = uuid.UUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")
FILE_PARAMETERS = uuid.UUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
VIRTUAL_DISK_SIZE = uuid.UUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
LOGICAL_SECTOR_SIZE = uuid.UUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
PHYSICAL_SECTOR_SIZE = uuid.UUID("CDA348C7-445D-4471-9CC9-E9885251C556")
PAGE_83_DATA = uuid.UUID("BECA12AB-B2E6-4523-93EF-C309E000C746")
PARENT_LOCATOR = uuid.UUID("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
KNOWN_ITEMS = {FILE_PARAMETERS, VIRTUAL_DISK_SIZE, LOGICAL_SECTOR_SIZE, PHYSICAL_SECTOR_SIZE, PAGE_83_DATA}
LEAVE_BLOCKS_ALLOCATED = 1 << 0
HAS_PARENT = 1 << 1


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), which VHDX uses for its headers and tables."""
    crc = 0xFFFFFFFF
    table = _CRC32C
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _checksum_ok(block: bytes) -> bool:
    stored: int = struct.unpack_from("<I", block, 4)[0]
    return crc32c(block[:4] + bytes(4) + block[8:]) == stored


class VhdxInspector(FormatInspector):
    format = ImageFormat.VHDX

    @classmethod
    def matches(cls, src: ByteSource) -> bool:
        return src.read(0, 8) == SIGNATURE

    @classmethod
    def inspect(cls, src: ByteSource, policy: SafetyPolicy) -> Inspection:
        result = Inspection(cls.format, 0)
        problems = result.problems
        creator = src.read(8, 512).decode("utf-16-le", "replace").split("\0", 1)[0]
        result.details["creator"] = creator or None
        header = cls._current_header(src)
        if header is None:
            problems.append(
                Problem("vhdx.damaged", "vhdx headers are missing or damaged (bad signature or checksum); truncated?")
            )
            return result
        (version,) = struct.unpack_from("<H", header, 66)
        if version != 1:
            problems.append(Problem("vhdx.unsupported", f"vhdx version {version} is not supported"))
            return result
        if header[48:64] != bytes(16) and cls._log_has_entries(src, header, problems):
            problems.append(
                Problem(
                    "vhdx.log-replay",
                    "vhdx has a log that must be replayed before the disk can be read (it was not closed "
                    "cleanly); open it once in Hyper-V, or replay it on a copy with 'qemu-img check -r all'",
                )
            )
        if problems:
            return result
        regions = cls._regions(src, problems)
        if regions is None:
            return result
        metadata = regions.get(METADATA_REGION)
        bat = regions.get(BAT_REGION)
        if metadata is None or bat is None:
            problems.append(Problem("vhdx.header", "vhdx region table lacks its block table or metadata region"))
            return result
        items = cls._metadata_items(src, *metadata, problems)
        if items is None:
            return result
        cls._read_items(src, metadata[0], items, result)
        if not problems:
            cls._check_block_table(bat[1], result)
        check_virtual_size(result, policy)
        return result

    @staticmethod
    def _current_header(src: ByteSource) -> bytes | None:
        """The valid header with the higher sequence number, as every reader chooses."""
        best: tuple[int, bytes] | None = None
        for offset in HEADER_OFFSETS:
            block = src.read(offset, HEADER_SIZE)
            if len(block) < HEADER_SIZE or block[:4] != b"head" or not _checksum_ok(block):
                continue
            (sequence,) = struct.unpack_from("<Q", block, 8)
            if best is None or sequence > best[0]:
                best = (sequence, block)
        return best[1] if best else None

    @staticmethod
    def _log_has_entries(src: ByteSource, header: bytes, problems: list[Problem]) -> bool:
        """Whether the log holds an entry of the header's log GUID with a good checksum: what qemu replays (and
        what a read-only open refuses). A log GUID over an empty log is only a file that was opened for writing."""
        log_guid = header[48:64]
        length, offset = struct.unpack_from("<IQ", header, 68)
        if length > MAX_LOG or offset % MiB or length % MiB:
            problems.append(
                Problem("vhdx.unsupported", f"vhdx log of {length} bytes at {offset} is not one imagepack reads")
            )
            return False
        for at in range(offset, offset + length, LOG_SECTOR):
            entry = src.read(at, 64)
            if entry[:4] != b"loge" or entry[32:48] != log_guid:
                continue
            (entry_length,) = struct.unpack_from("<I", entry, 8)
            if 0 < entry_length <= offset + length - at and _checksum_ok(src.read(at, entry_length)):
                return True
        return False

    @staticmethod
    def _regions(src: ByteSource, problems: list[Problem]) -> dict[uuid.UUID, tuple[int, int]] | None:
        table = src.read(REGION_TABLE_OFFSET, REGION_TABLE_SIZE)
        if len(table) < REGION_TABLE_SIZE or table[:4] != b"regi" or not _checksum_ok(table):
            problems.append(
                Problem("vhdx.damaged", "vhdx region table is missing or damaged; the file is truncated or crafted")
            )
            return None
        count = _count(table, "<I", 8, "region", problems)
        if count is None:
            return None
        regions: dict[uuid.UUID, tuple[int, int]] = {}
        for kind, offset, length, required in _entries(table, "<16sQII", 16, count):
            if kind not in (BAT_REGION, METADATA_REGION):
                if required & 1:
                    problems.append(
                        Problem("vhdx.unsupported", f"vhdx needs a region imagepack does not know ({kind})")
                    )
                    return None
                continue
            if offset % MiB or offset < MiB or length % MiB:
                problems.append(
                    Problem("vhdx.damaged", "vhdx region is not aligned to 1 MiB; the file is damaged or crafted")
                )
                return None
            if offset + length > src.size:
                problems.append(
                    Problem("vhdx.truncated", "vhdx region lies past the end of the file; the file is truncated")
                )
                return None
            regions[kind] = (offset, length)
        return regions

    @staticmethod
    def _metadata_items(
        src: ByteSource, offset: int, length: int, problems: list[Problem]
    ) -> dict[uuid.UUID, tuple[int, int]] | None:
        head = src.read(offset, 64 * KiB)
        if head[:8] != b"metadata":
            problems.append(Problem("vhdx.damaged", "vhdx metadata table is missing or damaged"))
            return None
        count = _count(head, "<H", 10, "metadata", problems)
        if count is None:
            return None
        items: dict[uuid.UUID, tuple[int, int]] = {}
        for kind, item_offset, item_length, flags in _entries(head, "<16sIII", 32, count):
            if kind == PARENT_LOCATOR:
                problems.append(Problem("vhdx.parent", "vhdx is a differencing disk that reads from a parent file"))
                return None
            if kind not in KNOWN_ITEMS:
                if flags & 4:  # IsRequired
                    problems.append(
                        Problem("vhdx.unsupported", f"vhdx needs a metadata item imagepack does not know ({kind})")
                    )
                    return None
                continue
            if item_offset + item_length > length:
                problems.append(
                    Problem("vhdx.damaged", "vhdx metadata item lies outside its region; damaged or crafted")
                )
                return None
            items[kind] = (item_offset, item_length)
        for needed in (FILE_PARAMETERS, VIRTUAL_DISK_SIZE, LOGICAL_SECTOR_SIZE):
            if needed not in items:
                problems.append(Problem("vhdx.header", "vhdx metadata lacks its size, block size or sector size"))
                return None
        return items

    @staticmethod
    def _read_items(src: ByteSource, base: int, items: dict[uuid.UUID, tuple[int, int]], result: Inspection) -> None:
        def item(kind: uuid.UUID, fmt: str) -> tuple[int, ...]:
            offset, length = items[kind]
            data = src.read(base + offset, length)
            if length < struct.calcsize(fmt) or len(data) < struct.calcsize(fmt):
                result.problems.append(Problem("vhdx.truncated", "vhdx metadata item is truncated"))
                return (0,) * len(fmt.lstrip("<"))
            return struct.unpack_from(fmt, data)

        block_size, flags = item(FILE_PARAMETERS, "<II")
        (result.virtual_size,) = item(VIRTUAL_DISK_SIZE, "<Q")
        (sector,) = item(LOGICAL_SECTOR_SIZE, "<I")
        result.subformat = "fixed" if flags & LEAVE_BLOCKS_ALLOCATED else "dynamic"
        result.details["logical_sector_size"] = sector
        if flags & HAS_PARENT:
            result.problems.append(Problem("vhdx.parent", "vhdx is a differencing disk that reads from a parent file"))
        if block_size < MiB or block_size > 256 * MiB or block_size & (block_size - 1):
            result.problems.append(
                Problem("vhdx.header", f"vhdx block size {block_size} is not a power of two from 1 to 256 MiB")
            )
        else:
            result.cluster_size = block_size
        if sector not in (512, 4096):
            result.problems.append(Problem("vhdx.unsupported", f"vhdx logical sector size {sector} is not 512 or 4096"))
        if result.virtual_size % max(sector, 1):
            result.problems.append(Problem("vhdx.header", "vhdx virtual size is not a whole number of sectors"))

    @staticmethod
    def _check_block_table(length: int, result: Inspection) -> None:
        """The block table must map the whole disk: one entry per block, and one per chunk for its bitmaps."""
        block = result.cluster_size or MiB
        sector = int(result.details["logical_sector_size"])
        chunk_ratio = (1 << 23) * sector // block
        blocks = -(-result.virtual_size // block)
        entries = blocks + (blocks - 1) // chunk_ratio if blocks else 0
        if entries * 8 > length:
            result.problems.append(
                Problem("vhdx.tables", f"vhdx block table of {length} bytes cannot map {result.virtual_size} bytes")
            )


def _count(table: bytes, fmt: str, at: int, what: str, problems: list[Problem]) -> int | None:
    """How many entries a region or metadata table claims, or None (a problem told) when more than VHDX allows."""
    (count,) = struct.unpack_from(fmt, table, at)
    if count > MAX_ENTRIES:
        problems.append(Problem("vhdx.tables", f"vhdx {what} table claims {count} entries"))
        return None
    return int(count)


def _entries(table: bytes, fmt: str, first: int, count: int) -> Iterator[tuple[uuid.UUID, int, int, int]]:
    """The table's 32-byte entries, one at a time: its GUID, then its offset, length and flags."""
    for i in range(count):
        guid, offset, length, flags = struct.unpack_from(fmt, table, first + 32 * i)
        yield uuid.UUID(bytes_le=guid), offset, length, flags
