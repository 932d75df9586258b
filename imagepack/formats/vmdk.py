"""VMDK: sparse and stream-optimized headers, their embedded descriptor, and text descriptors naming extents."""

from __future__ import annotations

import re
import struct

from imagepack.formats.base import (
    ByteSource,
    FormatInspector,
    ImageFormat,
    Inspection,
    Problem,
    SafetyPolicy,
    check_virtual_size,
)

SPARSE_MAGIC = b"KDMV"
COWD_MAGIC = b"COWD"  # VMware 3 sparse, which qemu reads but nobody should still be shipping
DESCRIPTOR_MAGIC = b"# Disk DescriptorFile"
GD_AT_END = 0xFFFFFFFFFFFFFFFF
MAX_DESCRIPTOR = 1024 * 1024  # qemu refuses larger descriptor files too
SINGLE_FILE_TYPES = ("monolithicSparse", "streamOptimized")
FLAG_COMPRESSED = 1 << 16
FLAG_MARKERS = 1 << 17

_EXTENT = re.compile(r'^(RW|RDONLY|NOACCESS)\s+(\d+)\s+(\w+)(?:\s+"([^"]*)")?', re.MULTILINE)
_KEY = re.compile(r'^\s*([\w.]+)\s*=\s*"?([^"\n]*)"?\s*$', re.MULTILINE)


def parse_descriptor(text: str) -> tuple[dict[str, str], list[tuple[str, int, str, str | None]]]:
    """The descriptor's key/value pairs and its extent lines (access, sectors, type, file name)."""
    keys = {m.group(1): m.group(2) for m in _KEY.finditer(text)}
    extents = [(m.group(1), int(m.group(2)), m.group(3), m.group(4)) for m in _EXTENT.finditer(text)]
    return keys, extents


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
            return Inspection(cls.format, 0, "vmdk3", problems=[Problem("VMware 3 (COWD) vmdk is not supported")])
        if head[:4] == SPARSE_MAGIC:
            return cls._inspect_sparse(src, head, policy)
        return cls._inspect_descriptor_file(src, policy)

    @classmethod
    def _inspect_sparse(cls, src: ByteSource, head: bytes, policy: SafetyPolicy) -> Inspection:
        if len(head) < 79:
            return Inspection(cls.format, 0, problems=[Problem("vmdk header is truncated")])
        (version, flags, capacity, grain, desc_offset, desc_size, gtes_per_gt, _rgd, gd_offset) = (
            struct.unpack_from("<IIQQQQIQQ", head, 4)
        )
        compress_algorithm = struct.unpack_from("<H", head, 77)[0]
        result = Inspection(cls.format, capacity * 512)
        problems = result.problems
        if version not in (1, 2, 3):
            problems.append(Problem(f"vmdk version {version} is not supported"))
        if grain < 1 or grain > 2048 or grain & (grain - 1):
            problems.append(Problem(f"vmdk grain size of {grain} sectors is not a power of two up to 1 MiB"))
        else:
            result.cluster_size = grain * 512
        if not 1 <= gtes_per_gt <= 65536:
            problems.append(Problem(f"vmdk header claims {gtes_per_gt} entries per grain table"))

        if gd_offset == GD_AT_END:
            cls._check_stream_footer(src, capacity, grain, problems)
        result.details["compressed"] = bool(flags & FLAG_COMPRESSED and compress_algorithm)

        if desc_offset == 0 or desc_size == 0:
            result.subformat = "streamOptimized" if flags & FLAG_MARKERS else "monolithicSparse"
            check_virtual_size(result, policy)
            return result
        if desc_size * 512 > MAX_DESCRIPTOR:
            problems.append(Problem(f"vmdk embedded descriptor of {desc_size * 512} bytes is too large"))
            return result
        text = src.read(desc_offset * 512, desc_size * 512).split(b"\0", 1)[0]
        keys, extents = parse_descriptor(text.decode("utf-8", "replace"))
        create_type = keys.get("createType")
        result.subformat = create_type
        result.details["adapter_type"] = keys.get("ddb.adapterType")
        if create_type not in SINGLE_FILE_TYPES:
            problems.append(
                Problem(
                    f"vmdk is one extent of a '{create_type}' disk, not a single-file vmdk; "
                    "convert its descriptor file instead",
                    "--allow-backing",
                )
            )
        cls._check_parent(keys, policy, problems)
        if len(extents) != 1 or extents[0][2] != "SPARSE":
            problems.append(Problem(f"vmdk descriptor lists {len(extents)} extents; a single-file vmdk has one"))
        else:
            name = extents[0][3] or ""
            if "/" in name or "\\" in name or ":" in name:
                problems.append(Problem(f"vmdk extent names another file: '{name}'", "--allow-backing"))
        check_virtual_size(result, policy)
        return result

    @classmethod
    def _inspect_descriptor_file(cls, src: ByteSource, policy: SafetyPolicy) -> Inspection:
        if src.size > MAX_DESCRIPTOR:
            return Inspection(cls.format, 0, problems=[Problem("vmdk descriptor file is larger than 1 MiB")])
        keys, extents = parse_descriptor(src.read(0, MAX_DESCRIPTOR).decode("utf-8", "replace"))
        result = Inspection(cls.format, sum(sectors for _, sectors, _, _ in extents) * 512, keys.get("createType"))
        result.details["extent_files"] = [name for *_, name in extents if name]
        if result.details["extent_files"] and not policy.allow_backing:
            names = ", ".join(result.details["extent_files"][:3])
            result.problems.append(
                Problem(f"vmdk descriptor reads its data from other files ({names})", "--allow-backing")
            )
        cls._check_parent(keys, policy, result.problems)
        check_virtual_size(result, policy)
        return result

    @staticmethod
    def _check_parent(keys: dict[str, str], policy: SafetyPolicy, problems: list[Problem]) -> None:
        has_parent = keys.get("parentCID", "ffffffff").lower() != "ffffffff" or "parentFileNameHint" in keys
        if has_parent and not policy.allow_backing:
            hint = keys.get("parentFileNameHint", "")
            problems.append(Problem(f"vmdk is a delta disk of a parent '{hint}'", "--allow-backing"))

    @staticmethod
    def _check_stream_footer(src: ByteSource, capacity: int, grain: int, problems: list[Problem]) -> None:
        footer = src.read(src.size - 1024, 512)
        if len(footer) < 79 or footer[:4] != SPARSE_MAGIC:
            problems.append(Problem("stream-optimized vmdk has no footer; the file is truncated"))
            return
        f_capacity, f_grain = struct.unpack_from("<QQ", footer, 12)
        f_gd = struct.unpack_from("<Q", footer, 56)[0]
        if (f_capacity, f_grain) != (capacity, grain) or f_gd == GD_AT_END or f_gd * 512 >= src.size:
            problems.append(Problem("stream-optimized vmdk footer disagrees with its header"))
