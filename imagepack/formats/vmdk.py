"""VMDK: sparse and stream-optimized headers, their embedded descriptor, and text descriptors naming extents."""

from __future__ import annotations

import re
import struct

from imagepack.core.problems import Problem, Remedy
from imagepack.formats.base import (
    ByteSource,
    FormatInspector,
    ImageFormat,
    Inspection,
    SafetyPolicy,
    check_virtual_size,
)

SPARSE_MAGIC = b"KDMV"
COWD_MAGIC = b"COWD"  # VMware 3 sparse, which qemu reads but nobody should still be shipping
DESCRIPTOR_MAGIC = b"# Disk DescriptorFile"
GD_AT_END = 0xFFFFFFFFFFFFFFFF
MAX_DESCRIPTOR = 1024 * 1024  # qemu reads no more of a descriptor than this
DESCRIPTOR_PAST_END = (
    "vmdk descriptor offset points past the end of the file; the header is damaged or the file cut short"
)
SINGLE_FILE_TYPES = ("monolithicSparse", "streamOptimized")
FLAG_COMPRESSED = 1 << 16
FLAG_MARKERS = 1 << 17
COMPRESSION_DEFLATE = 1  # qemu calls a sparse file streamOptimized exactly when this is set
MAX_GTES_PER_GT = 512  # qemu: "L2 table size too big" above this
MARKER_END_OF_STREAM = 0
MARKER_FOOTER = 3
# Where and how much qemu searches for a parent (and, in a sparse file, its CIDs): 20 sectors from sector 1 of a
# sparse file (whatever the header says about its descriptor) or from the start of a descriptor file.
PARENT_SEARCH_AT = 512
PARENT_SEARCH_BYTES = 20 * 512
PARENT_KEY = b"parentFileNameHint"
# qemu opens a sparse file only when that same area holds both CIDs: it finds each with strstr, skips the name and
# one more character (normally '='), and reads a hexadecimal number with sscanf.
_CID_KEYS = (b"CID", b"parentCID")
_SCANF_HEX = re.compile(rb"\s*[+-]?[0-9a-fA-F]")

# qemu reads extent lines with sscanf, which skips leading blanks.
_EXTENT = re.compile(r'^[ \t]*(RW|RDONLY|NOACCESS)\s+(\d+)\s+(\w+)(?:\s+"([^"\r\n]*)")?', re.MULTILINE)
_KEY = re.compile(r'^\s*([\w.]+)\s*=\s*"?([^"\n]*)"?\s*$', re.MULTILINE)


Extent = tuple[str, int, str, str | None]  # access, sectors, type, file name


def parse_descriptor(text: str) -> tuple[dict[str, str], list[Extent]]:
    """The descriptor's key/value pairs and its extent lines (access, sectors, type, file name)."""
    keys = {m.group(1): m.group(2) for m in _KEY.finditer(text)}
    extents = [(m.group(1), int(m.group(2)), m.group(3), m.group(4)) for m in _EXTENT.finditer(text)]
    return keys, extents


def parent_hint(area: bytes) -> str | None:
    """The parent qemu would open, found its way: 'parentFileNameHint' anywhere before the first NUL (comments
    included), the name starting two bytes after the key (past '="') and ending at the next quote."""
    text = area.split(b"\0", 1)[0]
    at = text.find(PARENT_KEY)
    if at < 0:
        return None
    start = at + len(PARENT_KEY) + 2
    end = text.find(b'"', start)
    return text[start : end if end >= 0 else None].decode("utf-8", "replace")


def qemu_can_read_cids(area: bytes) -> bool:
    """Whether qemu finds the CID and parentCID it needs to open a sparse file in its descriptor area."""
    text = area[: PARENT_SEARCH_BYTES - 1].split(b"\0", 1)[0]  # qemu ends the area with a NUL of its own
    for key in _CID_KEYS:
        at = text.find(key)
        if at < 0 or not _SCANF_HEX.match(text, at + len(key) + 1):
            return False
    return True


class VmdkInspector(FormatInspector):
    format = ImageFormat.VMDK

    @classmethod
    def matches(cls, src: ByteSource) -> bool:
        head = src.read(0, len(DESCRIPTOR_MAGIC))
        return head[:4] in (SPARSE_MAGIC, COWD_MAGIC) or head == DESCRIPTOR_MAGIC

    @classmethod
    def inspect(cls, src: ByteSource, policy: SafetyPolicy) -> Inspection:
        head = src.read(0, 512)
        if head[:4] == COWD_MAGIC:
            return Inspection(
                cls.format, 0, "vmdk3", problems=[Problem("vmdk.unsupported", "VMware 3 (COWD) vmdk is not supported")]
            )
        if head[:4] == SPARSE_MAGIC:
            return cls._inspect_sparse(src, head, policy)
        return cls._inspect_descriptor_file(src, policy)

    @classmethod
    def _inspect_sparse(cls, src: ByteSource, head: bytes, policy: SafetyPolicy) -> Inspection:
        if len(head) < 79:
            return Inspection(cls.format, 0, problems=[Problem("vmdk.truncated", "vmdk header is truncated")])
        (version, flags, capacity, grain, desc_offset, desc_size, gtes_per_gt, _rgd, gd_offset) = struct.unpack_from(
            "<IIQQQQIQQ", head, 4
        )
        compress_algorithm = struct.unpack_from("<H", head, 77)[0]
        parent_area = src.read(PARENT_SEARCH_AT, PARENT_SEARCH_BYTES)
        if capacity == 0 and desc_offset:
            # qemu then opens the embedded descriptor as a descriptor file, extents and all.
            if desc_offset * 512 >= src.size:
                return Inspection(cls.format, 0, problems=[Problem("vmdk.header", DESCRIPTOR_PAST_END)])
            text = src.read(desc_offset * 512, MAX_DESCRIPTOR)
            return cls._inspect_descriptor_text(text, parent_area, policy, embedded=True)
        result = Inspection(cls.format, capacity * 512)
        problems = result.problems
        if version not in (1, 2, 3):
            problems.append(Problem("vmdk.unsupported", f"vmdk version {version} is not supported"))
        if grain < 1 or grain > 2048 or grain & (grain - 1):
            problems.append(
                Problem("vmdk.header", f"vmdk grain size of {grain} sectors is not a power of two up to 1 MiB")
            )
        else:
            result.cluster_size = grain * 512
        if not 1 <= gtes_per_gt <= MAX_GTES_PER_GT:
            problems.append(Problem("vmdk.tables", f"vmdk header claims {gtes_per_gt} entries per grain table"))

        if gd_offset == GD_AT_END:
            cls._check_stream_footer(src, head, problems)
        result.details["compressed"] = bool(flags & FLAG_COMPRESSED and compress_algorithm)
        # qemu ignores the embedded createType: the compression field alone decides.
        result.subformat = "streamOptimized" if compress_algorithm == COMPRESSION_DEFLATE else "monolithicSparse"

        text = _embedded_descriptor(src, desc_offset, desc_size, problems)
        if not text.strip():
            # Writers differ in what the header records (no offset, no size); qemu reads sector 1 whatever it says.
            text = parent_area.split(b"\0", 1)[0]
        keys, extents = parse_descriptor(text.decode("utf-8", "replace"))
        cls._check_parent(parent_area, keys, policy, problems)
        if not qemu_can_read_cids(parent_area):
            if parent_area.split(b"\0", 1)[0].strip():
                why = "vmdk descriptor at sector 1 lacks the CID or parentCID that qemu needs to open the file"
            else:
                # qemu leaves that area empty in the extents of a split disk, whose data goes on in other files.
                why = (
                    "vmdk has no descriptor at sector 1, where qemu reads it; "
                    "if this is one extent of a split disk, convert the disk's descriptor file instead"
                )
            problems.append(Problem("vmdk.header", why))
            check_virtual_size(result, policy)
            return result
        result.details["adapter_type"] = keys.get("ddb.adapterType")
        _check_single_file(keys, extents, policy, problems)
        check_virtual_size(result, policy)
        return result

    @classmethod
    def _inspect_descriptor_file(cls, src: ByteSource, policy: SafetyPolicy) -> Inspection:
        if src.size > MAX_DESCRIPTOR:
            return Inspection(
                cls.format, 0, problems=[Problem("vmdk.external-files", "vmdk descriptor file is larger than 1 MiB")]
            )
        text = src.read(0, MAX_DESCRIPTOR)
        return cls._inspect_descriptor_text(text, text[:PARENT_SEARCH_BYTES], policy, embedded=False)

    @classmethod
    def _inspect_descriptor_text(
        cls, raw: bytes, parent_area: bytes, policy: SafetyPolicy, *, embedded: bool
    ) -> Inspection:
        keys, extents = parse_descriptor(raw.split(b"\0", 1)[0].decode("utf-8", "replace"))
        result = Inspection(cls.format, sum(sectors for _, sectors, _, _ in extents) * 512, keys.get("createType"))
        result.details["extent_files"] = [name for *_, name in extents if name]
        if not policy.allow_backing:
            # qemu opens a descriptor only for the multi-file types (monolithicFlat, twoGbMaxExtent*, vmfs*,
            # seSparse): every descriptor reads other files, whether or not our parser sees its extent lines.
            names = ", ".join(result.details["extent_files"][:3]) or f"a '{keys.get('createType')}' disk"
            where = (
                "vmdk header has no capacity, so qemu reads its embedded descriptor, which"
                if embedded
                else ("vmdk descriptor")
            )
            result.problems.append(
                Problem(
                    "vmdk.external-files", f"{where} reads its data from other files ({names})", Remedy.ALLOW_BACKING
                )
            )
        cls._check_parent(parent_area, keys, policy, result.problems)
        check_virtual_size(result, policy)
        return result

    @staticmethod
    def _check_parent(area: bytes, keys: dict[str, str], policy: SafetyPolicy, problems: list[Problem]) -> None:
        hint = parent_hint(area)
        has_parent = hint is not None or keys.get("parentCID", "ffffffff").lower() != "ffffffff"
        if has_parent and not policy.allow_backing:
            problems.append(
                Problem("vmdk.parent", f"vmdk is a delta disk of a parent '{hint or ''}'", Remedy.ALLOW_BACKING)
            )

    @staticmethod
    def _check_stream_footer(src: ByteSource, head: bytes, problems: list[Problem]) -> None:
        """qemu takes every header field from the footer instead: it must hold the same values, so that the
        checks made on the header (the size cap first) are the ones that count."""
        end = src.size - src.size % 512  # qemu counts whole sectors
        tail = src.read(end - 1536, 1536) if end >= 2048 else b""
        if len(tail) < 1536 or tail[512:516] != SPARSE_MAGIC:
            problems.append(Problem("vmdk.truncated", "stream-optimized vmdk has no footer; the file is truncated"))
            return
        footer = tail[512:1024]
        markers = struct.unpack_from("<II", tail, 8) + struct.unpack_from("<QII", tail, 1024)
        if markers != (0, MARKER_FOOTER, 0, 0, MARKER_END_OF_STREAM):
            problems.append(
                Problem("vmdk.truncated", "stream-optimized vmdk lacks its footer or end-of-stream marker; truncated?")
            )
            return

        def fields(block: bytes) -> tuple[int, ...]:
            # version, flags, capacity, grain, descriptor offset and size, entries per grain table, compression
            return struct.unpack_from("<IIQQQQI", block, 4) + struct.unpack_from("<H", block, 77)

        f_gd = struct.unpack_from("<Q", footer, 56)[0]
        if fields(footer) != fields(head) or f_gd == GD_AT_END or f_gd * 512 >= src.size:
            problems.append(Problem("vmdk.header", "stream-optimized vmdk footer disagrees with its header"))


def _embedded_descriptor(src: ByteSource, desc_offset: int, desc_size: int, problems: list[Problem]) -> bytes:
    """The descriptor the sparse header places in the file (empty when it places none, or one out of bounds)."""
    if desc_offset and desc_size * 512 > MAX_DESCRIPTOR:
        problems.append(Problem("vmdk.tables", f"vmdk embedded descriptor of {desc_size * 512} bytes is too large"))
    elif desc_offset and desc_offset * 512 >= src.size:
        problems.append(Problem("vmdk.header", DESCRIPTOR_PAST_END))
    elif desc_offset and desc_size:
        return src.read(desc_offset * 512, desc_size * 512).split(b"\0", 1)[0]
    return b""


def _check_single_file(
    keys: dict[str, str], extents: list[Extent], policy: SafetyPolicy, problems: list[Problem]
) -> None:
    """A sparse extent that is the whole disk: one extent, itself, and no other file named."""
    create_type = keys.get("createType")
    if create_type is not None and create_type not in SINGLE_FILE_TYPES and not policy.allow_backing:
        problems.append(
            Problem(
                "vmdk.external-files",
                f"vmdk is one extent of a '{create_type}' disk, not a single-file vmdk; "
                "convert its descriptor file instead",
                Remedy.ALLOW_BACKING,
            )
        )
    if len(extents) != 1 or extents[0][2] != "SPARSE":
        problems.append(
            Problem("vmdk.external-files", f"vmdk descriptor lists {len(extents)} extents; a single-file vmdk has one")
        )
    else:
        name = extents[0][3] or ""
        if ("/" in name or "\\" in name or ":" in name) and not policy.allow_backing:
            problems.append(
                Problem("vmdk.external-files", f"vmdk extent names another file: '{name}'", Remedy.ALLOW_BACKING)
            )
