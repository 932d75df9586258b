"""Format options for the images we write (`-o KEY=VALUE`), checked before qemu-img runs."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from imagepack.errors import UsageError
from imagepack.formats.base import ImageFormat

_BOOL = ("on", "off")
# None: free text or a number checked below. Multi-file vmdk subformats are left out on purpose:
# their descriptor names its extents, which a temporary name and a rename would break.
CREATE_OPTIONS: dict[ImageFormat, dict[str, tuple[str, ...] | None]] = {
    ImageFormat.QCOW2: {
        "compat": ("0.10", "1.1", "v2", "v3"),
        "cluster_size": None,
        "compression_type": ("zlib", "zstd"),
        "preallocation": ("off", "metadata", "falloc", "full"),
        "lazy_refcounts": _BOOL,
        "extended_l2": _BOOL,
        "refcount_bits": ("1", "2", "4", "8", "16", "32", "64"),
    },
    ImageFormat.VMDK: {
        "subformat": ("monolithicSparse", "streamOptimized"),
        "adapter_type": ("ide", "lsilogic", "buslogic", "legacyESX"),
        "hwversion": None,
        "toolsversion": None,
        "compat6": _BOOL,
        "zeroed_grain": _BOOL,
    },
    ImageFormat.VHD: {"subformat": ("dynamic", "fixed"), "force_size": _BOOL},
    ImageFormat.VDI: {"static": _BOOL},
    ImageFormat.RAW: {"preallocation": ("off", "falloc", "full")},
}

# What we write unless told otherwise: a VHD keeps the exact virtual size instead of qemu's CHS rounding.
DEFAULT_OPTIONS: dict[ImageFormat, dict[str, str]] = {ImageFormat.VHD: {"force_size": "on"}}

_SIZE = re.compile(r"^(\d+)([kKmM]?)$")


def parse_option_pairs(pairs: Iterable[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in pairs:
        for item in pair.split(","):  # accept qemu's own comma-joined form as well as repeated -o
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise UsageError(f"-o {item!r}: expected KEY=VALUE")
            options[key.strip()] = value.strip()
    return options


def _cluster_size(value: str) -> int:
    match = _SIZE.match(value)
    if not match:
        raise UsageError(f"cluster_size={value}: expected a size such as 65536, 64k or 2M")
    return int(match[1]) * {"": 1, "k": 1024, "m": 1024**2}[match[2].lower()]


def create_options(fmt: ImageFormat, given: Mapping[str, str], *, compress: bool = False) -> dict[str, str]:
    """The defaults for `fmt` overlaid with `given`, every key and value checked; raises UsageError."""
    allowed = CREATE_OPTIONS[fmt]
    for key, value in given.items():
        if key not in allowed:
            keys = ", ".join(allowed) or "none"
            raise UsageError(f"-o {key}: not an option of {fmt.value} (its options: {keys})")
        choices = allowed[key]
        if choices is not None and value not in choices:
            raise UsageError(f"-o {key}={value}: {fmt.value} takes {key}={' | '.join(choices)}")
    options = {**DEFAULT_OPTIONS.get(fmt, {}), **given}

    if fmt is ImageFormat.QCOW2:
        if "cluster_size" in options:
            size = _cluster_size(options["cluster_size"])
            if size < 512 or size > 2 * 1024**2 or size & (size - 1):
                raise UsageError(f"cluster_size={options['cluster_size']}: must be a power of two from 512 to 2M")
        if options.get("compression_type") == "zstd" and options.get("compat") in ("0.10", "v2"):
            raise UsageError("-o compression_type=zstd needs compat=1.1")
    if fmt is ImageFormat.VMDK:
        if "hwversion" in options and options.get("compat6") == "on":
            raise UsageError("-o hwversion and compat6 cannot be used together")
        if compress:
            if options.get("subformat", "streamOptimized") != "streamOptimized":
                raise UsageError("--compress for vmdk writes subformat=streamOptimized; drop the other subformat")
            options["subformat"] = "streamOptimized"
    if compress and fmt not in (ImageFormat.QCOW2, ImageFormat.VMDK):
        raise UsageError(f"--compress works for qcow2 and vmdk outputs, not {fmt.value}")
    return options


def allocates_whole_disk(fmt: ImageFormat, options: Mapping[str, str]) -> bool:
    """Whether the output takes the whole virtual size on disk, whatever the data."""
    return (
        (fmt is ImageFormat.VHD and options.get("subformat") == "fixed")
        or (fmt is ImageFormat.VDI and options.get("static") == "on")
        or options.get("preallocation") in ("falloc", "full")
    )
