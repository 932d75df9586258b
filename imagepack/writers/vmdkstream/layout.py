"""The bytes of a stream-optimized VMDK as VMware's format defines them (Virtual Disk Format 5.0, "Stream-Optimized
Compressed Sparse Extents"): a header whose grain directory is at the end, the embedded descriptor, grains each
behind its own marker, then grain tables, the grain directory, a footer and an end-of-stream marker, so that the
file is written front to back in one pass.

The header fields are those VMware's own stream writer (open-vmdk) and qemu set: version 3, which ESXi requires of
a stream; new-line detection, compressed grains and markers; deflate; 64 KiB grains; 512 entries per grain table."""

from __future__ import annotations

import struct
from collections.abc import Mapping

from imagepack.core.errors import InvalidValueError
from imagepack.formats import ImageFormat
from imagepack.formats.create_options import option_value

SECTOR = 512
GRAIN_SECTORS = 128
GRAIN = GRAIN_SECTORS * SECTOR  # 64 KiB
GT_ENTRIES = 512  # grains a grain table maps: 32 MiB of disk
GT_SECTORS = GT_ENTRIES * 4 // SECTOR
DESCRIPTOR_OFFSET = 1
DESCRIPTOR_SECTORS = 20  # as qemu reserves
FIRST_GRAIN = GRAIN_SECTORS  # grains start on a grain boundary, as VMware's streams have them

_MAGIC = 0x564D444B  # "KDMV" as written
_VERSION = 3
_FLAG_NEWLINE_DETECT = 1 << 0
_FLAG_COMPRESSED = 1 << 16
_FLAG_MARKERS = 1 << 17
_DEFLATE = 1
GD_AT_END = 0xFFFFFFFFFFFFFFFF

MARKER_EOS = 0
MARKER_GT = 1
MARKER_GD = 2
MARKER_FOOTER = 3

_HEADER = struct.Struct("<IIIQQQQIQQQB4sH")
_GRAIN_MARKER = struct.Struct("<QI")  # the grain's first sector, the compressed length; the data follows
_MARKER = struct.Struct("<QII")  # sectors that follow, 0, the marker's type


def header(capacity: int, gd_offset: int) -> bytes:
    """The sparse extent header (also the footer's body); `capacity` in sectors, `gd_offset` in sectors or
    GD_AT_END while the grain directory is still to be written."""
    packed = _HEADER.pack(
        _MAGIC,
        _VERSION,
        _FLAG_NEWLINE_DETECT | _FLAG_COMPRESSED | _FLAG_MARKERS,
        capacity,
        GRAIN_SECTORS,
        DESCRIPTOR_OFFSET,
        DESCRIPTOR_SECTORS,
        GT_ENTRIES,
        0,  # no redundant grain directory in a stream
        gd_offset,
        FIRST_GRAIN,  # overHead: the sectors before the first grain
        0,  # uncleanShutdown
        b"\n \r\n",  # lets a reader see a file mangled by a text-mode transfer
        _DEFLATE,
    )
    return packed.ljust(SECTOR, b"\0")


def marker(kind: int, sectors: int) -> bytes:
    return _MARKER.pack(sectors, 0, kind).ljust(SECTOR, b"\0")


def end_of_stream() -> bytes:
    return bytes(SECTOR)


def grain(lba: int, compressed: bytes | bytearray) -> bytes:
    """A grain behind its marker, padded to whole sectors; `lba` is the grain's first sector on the disk."""
    framed = _GRAIN_MARKER.pack(lba, len(compressed)) + compressed
    return framed + bytes(-len(framed) % SECTOR)


def descriptor(name: str, capacity: int, options: Mapping[str, str], cid: int) -> bytes:
    """The embedded descriptor, padded to its reserved sectors. `name` is the file's final name (the extent line
    names the file itself); the options are qemu's vmdk create options (adapter_type, hwversion, compat6,
    toolsversion), with qemu's defaults and its geometry: 16 heads for IDE, 255 for the SCSI adapters, 63
    sectors, cylinders from the size."""
    if any(c in name for c in '"\\') or not name.isprintable():
        raise InvalidValueError(f"{name!r}: a vmdk names its own file in its descriptor; choose a name without quotes")
    # Each value written into the text is checked again here, whoever called: a quote or a newline in one would
    # add lines of its own (an extent naming a host file).
    adapter = option_value(ImageFormat.VMDK, "adapter_type", options.get("adapter_type", "ide"))
    compat6 = option_value(ImageFormat.VMDK, "compat6", options.get("compat6", "off")) == "on"
    hwversion = "6" if compat6 else option_value(ImageFormat.VMDK, "hwversion", options.get("hwversion", "4"))
    tools = option_value(ImageFormat.VMDK, "toolsversion", options.get("toolsversion", "2147483647"))
    heads = 16 if adapter == "ide" else 255
    cylinders = min(capacity // (63 * heads), 65535)
    text = (
        "# Disk DescriptorFile\n"
        "version=1\n"
        'encoding="UTF-8"\n'
        f"CID={cid:08x}\n"
        "parentCID=ffffffff\n"
        'createType="streamOptimized"\n'
        "\n"
        "# Extent description\n"
        f'RW {capacity} SPARSE "{name}"\n'
        "\n"
        "# The Disk Data Base\n"
        "#DDB\n"
        "\n"
        f'ddb.virtualHWVersion = "{hwversion}"\n'
        f'ddb.geometry.cylinders = "{cylinders}"\n'
        f'ddb.geometry.heads = "{heads}"\n'
        'ddb.geometry.sectors = "63"\n'
        f'ddb.adapterType = "{adapter}"\n'
        f'ddb.toolsVersion = "{tools}"\n'
    ).encode()
    if len(text) > DESCRIPTOR_SECTORS * SECTOR:
        raise InvalidValueError(f"{name!r}: the name is too long for a vmdk descriptor")
    return text.ljust(DESCRIPTOR_SECTORS * SECTOR, b"\0")


def sectors_of(length: int) -> int:
    return -(-length // SECTOR)
