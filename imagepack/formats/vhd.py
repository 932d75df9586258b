"""VHD (qemu's 'vpc'): the 512-byte footer, at the end of fixed disks and also at the start of dynamic ones."""

from __future__ import annotations

import struct

from imagepack.core.problems import Problem
from imagepack.formats.base import (
    ByteSource,
    FormatInspector,
    ImageFormat,
    Inspection,
    SafetyPolicy,
    VhdSize,
    check_virtual_size,
)

COOKIE = b"conectix"
DYNAMIC_COOKIE = b"cxsparse"
DISK_TYPES = {2: "fixed", 3: "dynamic", 4: "differencing"}
# qemu reads the whole block table into memory: 2 MiB blocks (what every writer uses) need 1 Mi entries for the
# largest VHD (2040 GiB); allow 16 Mi (64 MiB of table) and no more, whatever the block size.
MAX_TABLE_ENTRIES = 1 << 24
# qemu 7.2 (block/vpc.c) sizes the disk by its CHS geometry unless one of these wrote it, or the geometry is the
# maximum; VirtualBox ('vbox') and Virtual PC ('vpc ') VHDs then read short when current_size is larger.
CURRENT_SIZE_CREATORS = ("win ", "qem2", "d2v ", "CTXS", "tap\0")
MAX_GEOMETRY_SIZE = 65535 * 16 * 255 * 512


def vhd_checksum(block: bytes, field_offset: int) -> int:
    """Ones' complement of the byte sum, the checksum field itself counted as zero."""
    total = sum(block) - sum(block[field_offset : field_offset + 4])
    return ~total & 0xFFFFFFFF


def _footer(src: ByteSource) -> tuple[bytes, bool]:
    """The footer to trust, and whether it was found at the start (dynamic) rather than only at the end."""
    start = src.read(0, 512)
    if start[:8] == COOKIE:
        return start, True
    return src.read(src.size - 512, 512), False


class VhdInspector(FormatInspector):
    format = ImageFormat.VHD

    @classmethod
    def matches(cls, src: ByteSource) -> bool:
        return src.read(0, 8) == COOKIE or (src.size >= 512 and src.read(src.size - 512, 8) == COOKIE)

    @classmethod
    def inspect(cls, src: ByteSource, policy: SafetyPolicy) -> Inspection:
        footer, at_start = _footer(src)
        if len(footer) < 85:
            return Inspection(cls.format, 0, problems=[Problem("vhd.truncated", "vhd footer is truncated")])
        (data_offset,) = struct.unpack_from(">Q", footer, 16)
        (current_size,) = struct.unpack_from(">Q", footer, 48)
        cylinders, heads, sectors, disk_type, checksum = struct.unpack_from(">HBBII", footer, 56)
        result = Inspection(cls.format, current_size, DISK_TYPES.get(disk_type, f"type {disk_type}"))
        result.details["creator"] = footer[28:32].decode("ascii", "replace")
        result.details["geometry_size"] = cylinders * heads * sectors * 512
        problems = result.problems
        if vhd_checksum(footer, 64) != checksum:
            problems.append(Problem("vhd.damaged", "vhd footer checksum is wrong; the file is damaged or crafted"))
        if disk_type == 4:
            problems.append(Problem("vhd.parent", "vhd is a differencing disk that reads from a parent file"))
        elif disk_type not in DISK_TYPES:
            problems.append(Problem("vhd.unsupported", f"vhd disk type {disk_type} is unknown"))
        if disk_type == 3:
            disk_size = max(current_size, result.details["geometry_size"])
            cls._check_dynamic_header(src, data_offset, disk_size, result)
        elif disk_type == 2 and at_start:
            problems.append(Problem("vhd.header", "fixed vhd has a footer at its start as well as its end"))
        # qemu may size the disk from the CHS geometry rather than current_size; both must fit the cap.
        result.virtual_size = max(current_size, result.details["geometry_size"])
        check_virtual_size(result, policy)
        result.virtual_size = current_size
        return result

    @staticmethod
    def _check_dynamic_header(src: ByteSource, offset: int, size: int, result: Inspection) -> None:
        header = src.read(offset, 1024)
        if len(header) < 1024 or header[:8] != DYNAMIC_COOKIE:
            result.problems.append(Problem("vhd.truncated", "dynamic vhd header is missing or truncated"))
            return
        max_entries, block_size, checksum = struct.unpack_from(">III", header, 28)
        if vhd_checksum(header, 36) != checksum:
            result.problems.append(
                Problem("vhd.damaged", "dynamic vhd header checksum is wrong; the file is damaged or crafted")
            )
        if block_size < 512 or block_size > 256 * 1024 * 1024 or block_size & (block_size - 1):
            result.problems.append(Problem("vhd.header", f"dynamic vhd block size {block_size} is not valid"))
            return
        result.cluster_size = block_size
        # The block table is loaded whole into memory: it may map the disk (qemu's size may come from either
        # the footer or the geometry, so the larger) and one block more, but no more, and never a huge table.
        if max_entries > MAX_TABLE_ENTRIES or max_entries * block_size > size + block_size:
            result.problems.append(
                Problem(
                    "vhd.tables",
                    f"dynamic vhd block table of {max_entries} entries is too large for a {size}-byte disk",
                )
            )


def sizes_disagree(inspection: Inspection) -> bool:
    """Whether the footer's current_size and its CHS geometry name different disk sizes. The maximum geometry
    (what qemu writes with force_size=on) means "no geometry": qemu then always takes current_size."""
    geometry = inspection.details.get("geometry_size")
    return geometry not in (inspection.virtual_size, MAX_GEOMETRY_SIZE)


def qemu_uses_geometry(inspection: Inspection) -> bool:
    """Whether qemu, left alone, sizes this VHD by its CHS geometry rather than its current_size."""
    return sizes_disagree(inspection) and inspection.details.get("creator") not in CURRENT_SIZE_CREATORS


def size_driver_options(inspection: Inspection, choice: VhdSize) -> tuple[tuple[str, str], ...]:
    """qemu's force_size_calc option where qemu's own choice of size would differ from `choice`."""
    if not sizes_disagree(inspection) or qemu_uses_geometry(inspection) == (choice is VhdSize.CHS):
        return ()
    return (("force_size_calc", "current_size" if choice is VhdSize.CURRENT else "chs"),)
