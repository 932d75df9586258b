"""qcow2 headers (versions 2 and 3): what the file claims, and what makes it unsafe to hand to qemu-img."""

from __future__ import annotations

import struct
from typing import NamedTuple

from imagepack.core.problems import Problem, Remedy
from imagepack.formats.base import (
    ByteSource,
    FormatInspector,
    ImageFormat,
    Inspection,
    SafetyPolicy,
    check_virtual_size,
)

MAGIC = b"QFI\xfb"

INCOMPAT_DIRTY = 1 << 0
INCOMPAT_CORRUPT = 1 << 1
INCOMPAT_DATA_FILE = 1 << 2
INCOMPAT_COMPRESSION = 1 << 3
INCOMPAT_EXTL2 = 1 << 4
# Feature bits qemu 7.2 itself writes; anything else is a feature we cannot vouch for.
KNOWN_INCOMPAT = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2

# qemu's own limits (block/qcow2.h); a header past them is crafted, and tables this large cost memory.
MAX_L1_BYTES = 32 * 1024 * 1024
MAX_REFTABLE_BYTES = 8 * 1024 * 1024
MAX_SNAPSHOTS = 65536
COMPRESSION_TYPES = {0: "zlib", 1: "zstd"}
SNAPSHOT_ENTRY_MIN = 40  # the fixed part of a snapshot table entry; its id and name follow


class Qcow2Inspector(FormatInspector):
    format = ImageFormat.QCOW2

    @classmethod
    def matches(cls, src: ByteSource) -> bool:
        head = src.read(0, 8)
        # Version 1 is qemu's older qcow, a format of its own (formats/foreign.py).
        return head[:4] == MAGIC and head[4:8] != b"\0\0\0\x01"

    @classmethod
    def inspect(cls, src: ByteSource, policy: SafetyPolicy) -> Inspection:
        header = src.read(0, 112)
        if len(header) < 72:
            return Inspection(cls.format, 0, problems=[Problem("qcow2.truncated", "qcow2 header is truncated")])
        fields = _Header._make(struct.unpack_from(_HEADER, header, 4))
        result = Inspection(cls.format, fields.size, subformat=None)
        incompatible = _read_version(result, fields.version, header)
        if incompatible is None:
            return result
        if not 9 <= fields.cluster_bits <= 21:
            result.problems.append(Problem("qcow2.header", f"qcow2 cluster_bits {fields.cluster_bits} is outside 9-21"))
            return result
        result.cluster_size = 1 << fields.cluster_bits
        _check_features(result, src, fields, incompatible, policy)
        _check_tables(result, fields, incompatible)
        result.details["snapshots"] = fields.nb_snapshots
        check_virtual_size(result, policy)
        _check_complete(result, src, fields)
        return result


class _Header(NamedTuple):
    """The fields of a qcow2 header common to versions 2 and 3 (after the magic)."""

    version: int
    backing_offset: int
    backing_size: int
    cluster_bits: int
    size: int
    crypt_method: int
    l1_size: int
    l1_offset: int
    refcount_offset: int
    refcount_clusters: int
    nb_snapshots: int
    snapshots_offset: int


_HEADER = ">IQIIQIIQQIIQ"


def _read_version(result: Inspection, version: int, header: bytes) -> int | None:
    """The version's subformat and (version 3) its extra fields into `result`; the incompatible feature bits, or
    None when nothing more can be read (an unknown version, a truncated version 3 header)."""
    incompatible = 0
    compression = "zlib"
    problems = result.problems
    if version == 2:
        result.subformat = "compat=0.10"
    elif version == 3:
        result.subformat = "compat=1.1"
        if len(header) < 104:
            problems.append(Problem("qcow2.truncated", "qcow2 v3 header is truncated"))
            return None
        incompatible, compatible, _autoclear, refcount_order, header_length = struct.unpack_from(">QQQII", header, 72)
        result.details.update(refcount_bits=1 << refcount_order if refcount_order < 7 else None)
        if refcount_order > 6:
            problems.append(Problem("qcow2.header", f"qcow2 refcount order {refcount_order} is above 6"))
        if header_length < 104:
            shorter = f"qcow2 v3 header length {header_length} is shorter than 104 bytes"
            problems.append(Problem("qcow2.header", shorter))
        if header_length > 104 and len(header) > 104:
            compression = COMPRESSION_TYPES.get(header[104], f"unknown ({header[104]})")
        result.details["extended_l2"] = bool(incompatible & INCOMPAT_EXTL2)
        result.details["lazy_refcounts"] = bool(compatible & 1)
    else:
        problems.append(Problem("qcow2.unsupported", f"qcow2 version {version} is not supported (only 2 and 3)"))
        return None
    result.details["compression_type"] = compression
    return incompatible


def _check_features(
    result: Inspection, src: ByteSource, fields: _Header, incompatible: int, policy: SafetyPolicy
) -> None:
    """What the image needs besides its own clusters (a backing file, a key, a data file) or cannot vouch for."""
    problems = result.problems
    if fields.backing_offset or fields.backing_size:
        name = src.read(fields.backing_offset, min(fields.backing_size, 1023)) if fields.backing_offset else b""
        result.details["backing_file"] = name.decode("utf-8", "replace")
        if not policy.allow_backing:
            problems.append(Problem("qcow2.backing-file", "qcow2 image names a backing file", Remedy.ALLOW_BACKING))
    if fields.crypt_method:
        problems.append(
            Problem(
                "qcow2.encrypted",
                f"qcow2 image is encrypted (method {fields.crypt_method}); imagepack cannot read it",
            )
        )
    if incompatible & INCOMPAT_DATA_FILE:
        problems.append(Problem("qcow2.data-file", "qcow2 image keeps its data in an external data file"))
    if incompatible & INCOMPAT_CORRUPT:
        problems.append(
            Problem("qcow2.damaged", "qcow2 image is marked corrupt; repair it with 'qemu-img check -r all' first")
        )
    compression = result.details["compression_type"]
    if compression.startswith("unknown"):
        problems.append(Problem("qcow2.header", f"qcow2 compression type is {compression}"))
    unknown = incompatible & ~KNOWN_INCOMPAT
    if unknown:
        problems.append(Problem("qcow2.unsupported", f"qcow2 image uses unknown incompatible features 0x{unknown:x}"))


def _check_tables(result: Inspection, fields: _Header, incompatible: int) -> None:
    """Tables past qemu's own limits, and an L1 table too small for the virtual size."""
    problems = result.problems
    cluster_size = result.cluster_size
    assert cluster_size is not None
    l1_size, size = fields.l1_size, fields.size
    if l1_size * 8 > MAX_L1_BYTES:
        problems.append(Problem("qcow2.tables", f"qcow2 L1 table of {l1_size} entries is larger than qemu allows"))
    if fields.refcount_clusters * cluster_size > MAX_REFTABLE_BYTES:
        problems.append(
            Problem("qcow2.tables", f"qcow2 refcount table of {fields.refcount_clusters} clusters is too large")
        )
    if fields.nb_snapshots > MAX_SNAPSHOTS:
        problems.append(Problem("qcow2.tables", f"qcow2 image claims {fields.nb_snapshots} snapshots"))
    # Each L1 entry maps cluster_size/8 clusters (half that with extended L2); too few entries for the
    # virtual size means a header that lies about one or the other.
    l2_entries = cluster_size // (16 if incompatible & INCOMPAT_EXTL2 else 8)
    needed = -(-size // (l2_entries * cluster_size)) if size else 0
    if l1_size < needed:
        problems.append(Problem("qcow2.tables", f"qcow2 L1 table ({l1_size} entries) cannot map {size} bytes"))


def _check_complete(result: Inspection, src: ByteSource, fields: _Header) -> None:
    """An interrupted download keeps the header and loses what follows it: a table the header places past the end
    of the file is the cheap sign (qemu-img check, run before any conversion, finds the rest)."""
    cluster_size = result.cluster_size
    assert cluster_size is not None
    tables = (
        ("L1 table", fields.l1_offset, fields.l1_size * 8),
        ("refcount table", fields.refcount_offset, fields.refcount_clusters * cluster_size),
        ("snapshot table", fields.snapshots_offset, fields.nb_snapshots * SNAPSHOT_ENTRY_MIN),
    )
    for table, offset, length in tables:
        if length and offset + length > src.size:
            result.problems.append(
                Problem(
                    "qcow2.truncated",
                    f"the image is truncated: its qcow2 {table} ends at byte {offset + length} but the file "
                    f"has {src.size} bytes; get a complete copy of it",
                )
            )
            return
