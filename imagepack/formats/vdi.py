"""VDI (VirtualBox): the fixed header after the 64-byte banner."""

from __future__ import annotations

import struct

from imagepack.core.problems import Problem
from imagepack.formats.base import (
    ByteSource,
    FormatInspector,
    ImageFormat,
    Inspection,
    SafetyPolicy,
    check_virtual_size,
)

SIGNATURE = 0xBEDA107F
IMAGE_TYPES = {1: "dynamic", 2: "static", 3: "undo", 4: "differencing"}
BLOCK_SIZE = 1024 * 1024  # the only block size qemu (and VirtualBox) write


class VdiInspector(FormatInspector):
    format = ImageFormat.VDI

    @classmethod
    def matches(cls, src: ByteSource) -> bool:
        head = src.read(64, 4)
        return len(head) == 4 and struct.unpack("<I", head)[0] == SIGNATURE

    @classmethod
    def inspect(cls, src: ByteSource, policy: SafetyPolicy) -> Inspection:
        header = src.read(0, 456)
        if len(header) < 456:
            return Inspection(cls.format, 0, problems=[Problem("vdi.truncated", "vdi header is truncated")])
        version, header_size, image_type = struct.unpack_from("<III", header, 68)
        (data_offset,) = struct.unpack_from("<I", header, 344)
        disk_size, block_size, _extra, blocks, allocated = struct.unpack_from("<QIIII", header, 368)
        result = Inspection(cls.format, disk_size, IMAGE_TYPES.get(image_type, f"type {image_type}"))
        result.cluster_size = block_size
        problems = result.problems
        if version >> 16 != 1:
            problems.append(Problem("vdi.unsupported", f"vdi version 0x{version:08x} is not supported"))
        if image_type not in (1, 2):
            problems.append(
                Problem("vdi.parent", f"vdi image type '{result.subformat}' is not supported (it needs a parent)")
            )
        if header[424:456].strip(b"\0"):  # the link UUID and the parent's modification UUID
            problems.append(Problem("vdi.parent", "vdi image links to a parent image"))
        (sector_size,) = struct.unpack_from("<I", header, 360)
        if sector_size != 512:
            problems.append(Problem("vdi.unsupported", f"vdi sector size {sector_size} is not 512"))
        if block_size != BLOCK_SIZE:
            problems.append(Problem("vdi.header", f"vdi block size {block_size} is not 1 MiB"))
        elif blocks * block_size < disk_size:
            problems.append(Problem("vdi.tables", f"vdi block map of {blocks} blocks cannot hold {disk_size} bytes"))
        elif blocks * block_size > disk_size + block_size:
            problems.append(Problem("vdi.tables", f"vdi block map of {blocks} blocks is larger than the disk"))
        if header_size < 0x180:
            problems.append(Problem("vdi.header", f"vdi header size {header_size} is too small"))
        check_virtual_size(result, policy)
        # A download cut short keeps the header and loses blocks; qemu-img check does not compare the blocks
        # with the file's size, and qemu reads the missing ones as zeroes.
        if allocated and data_offset + allocated * block_size > src.size:
            problems.append(
                Problem(
                    "vdi.truncated",
                    f"the image is truncated: its {allocated} vdi blocks end at byte "
                    f"{data_offset + allocated * block_size} but the file has {src.size} bytes; get a complete copy",
                )
            )
        return result
