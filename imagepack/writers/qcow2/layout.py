"""The bytes of a qcow2 version 3 image as qemu's docs/interop/qcow2.txt defines them: the header (with the
compression_type field of the extended header), L1 and L2 entries, compressed cluster descriptors, refcount
blocks of 16-bit entries and the refcount table that points at them.

All numbers are big-endian. Clusters are 64 KiB (cluster_bits 16), qemu's default."""

from __future__ import annotations

import struct
import sys
from array import array
from enum import IntEnum

CLUSTER_BITS = 16
CLUSTER = 1 << CLUSTER_BITS  # 64 KiB
L2_ENTRIES = CLUSTER // 8  # an L2 table maps 8192 clusters: 512 MiB of disk
REFCOUNT_ORDER = 4  # 16-bit refcounts, qemu's default
REFCOUNTS_PER_BLOCK = CLUSTER * 8 >> REFCOUNT_ORDER  # a refcount block counts 32768 clusters: 2 GiB of file
COMPRESSED_SECTOR = 512  # compressed data is addressed in 512-byte sectors, whatever the cluster size

OFLAG_COPIED = 1 << 63  # the cluster's refcount is exactly 1
OFLAG_COMPRESSED = 1 << 62
# A compressed cluster descriptor: the host offset in bits 0..x-1, the sectors beyond the first in x..61,
# x = 62 - (cluster_bits - 8).
CSIZE_SHIFT = 62 - (CLUSTER_BITS - 8)
CSIZE_MASK = (1 << (CLUSTER_BITS - 8)) - 1
COFFSET_MASK = (1 << CSIZE_SHIFT) - 1

_MAGIC = b"QFI\xfb"
_VERSION = 3
_INCOMPAT_COMPRESSION_TYPE = 1 << 3  # compression_type is not zlib: readers that do not know it must refuse
HEADER_LENGTH = 112  # 104 bytes of version 3 header, the compression_type byte, padding to a multiple of 8
_HEADER = struct.Struct(">4sIQIIQIIQQIIQQQQIIB7x")


class CompressionType(IntEnum):
    ZLIB = 0
    ZSTD = 1


def header(
    *,
    size: int,
    l1_entries: int,
    l1_offset: int,
    refcount_table_offset: int,
    refcount_table_clusters: int,
    compression: CompressionType,
) -> bytes:
    """The header followed by the end of the header extensions (a zero type and length)."""
    packed = _HEADER.pack(
        _MAGIC,
        _VERSION,
        0,  # backing_file_offset: none
        0,  # backing_file_size
        CLUSTER_BITS,
        size,
        0,  # crypt_method: none
        l1_entries,
        l1_offset,
        refcount_table_offset,
        refcount_table_clusters,
        0,  # nb_snapshots
        0,  # snapshots_offset
        _INCOMPAT_COMPRESSION_TYPE if compression is not CompressionType.ZLIB else 0,
        0,  # compatible_features: no lazy refcounts, every refcount is written
        0,  # autoclear_features
        REFCOUNT_ORDER,
        HEADER_LENGTH,
        compression,
    )
    assert len(packed) == HEADER_LENGTH
    return packed + bytes(8)


def compressed_descriptor(offset: int, length: int) -> int:
    """The L2 entry of a cluster whose `length` compressed bytes start at host `offset`: the offset, and the
    number of 512-byte sectors the data reaches into beyond the one holding its first byte."""
    more = (offset + length - 1) // COMPRESSED_SECTOR - offset // COMPRESSED_SECTOR
    assert more <= CSIZE_MASK and offset <= COFFSET_MASK
    return OFLAG_COMPRESSED | more << CSIZE_SHIFT | offset


def compressed_span(offset: int, length: int) -> range:
    """The host clusters a compressed cluster's descriptor covers (its last sector whole), each of which counts
    one reference for it, as qemu-img check counts them."""
    end = -(-(offset + length) // COMPRESSED_SECTOR) * COMPRESSED_SECTOR
    return range(offset // CLUSTER, (end - 1) // CLUSTER + 1)


def clusters_of(size: int) -> int:
    return -(-size // CLUSTER)


def l1_entries_for(virtual_size: int) -> int:
    return -(-clusters_of(virtual_size) // L2_ENTRIES)


def refcount_clusters(clusters: int) -> tuple[int, int]:
    """(refcount blocks, refcount table clusters) that count `clusters` others and themselves."""
    blocks = table = 0
    while True:
        need_blocks = -(-(clusters + blocks + table) // REFCOUNTS_PER_BLOCK)
        need_table = max(1, -(-need_blocks * 8 // CLUSTER))
        if (need_blocks, need_table) == (blocks, table):
            return blocks, table
        blocks, table = need_blocks, need_table


def be64(values: array[int] | list[int]) -> bytes:
    """Big-endian 64-bit entries (an L1 or L2 table, the refcount table)."""
    packed = array("Q", values)
    if sys.byteorder == "little":
        packed.byteswap()
    return packed.tobytes()


def be16(values: array[int]) -> bytes:
    """Big-endian 16-bit entries (a refcount block)."""
    packed = array("H", values)
    if sys.byteorder == "little":
        packed.byteswap()
    return packed.tobytes()
