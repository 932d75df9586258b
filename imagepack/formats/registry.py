"""One entry per disk format: its qemu driver, the names that claim it, the options we write it with and their
defaults, its header inspector, and what OCI's import takes. Adding a format is one entry here and its inspector."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from imagepack.core.errors import InvalidValueError
from imagepack.formats.base import FormatInspector, ImageFormat, Inspection
from imagepack.formats.qcow2 import Qcow2Inspector
from imagepack.formats.vdi import VdiInspector
from imagepack.formats.vhd import VhdInspector
from imagepack.formats.vhdx import VhdxInspector
from imagepack.formats.vmdk import SINGLE_FILE_TYPES, VmdkInspector


@dataclass(frozen=True)
class Number:
    """A value that is a whole number from `low` to `high`; with `size`, a byte count that may carry a unit (64k,
    2M) and must be a power of two. `shown` is the range as a user would write it."""

    low: int
    high: int
    shown: str
    size: bool = False

    def describe(self) -> str:
        return f"a power of two from {self.shown}" if self.size else f"a whole number from {self.shown}"


# What each option may be: one of a fixed set of words (in any case), or a number. Nothing else is written: a
# value reaches qemu-img's command line and, for a vmdk, the text of its descriptor.
Choices = tuple[str, ...] | Number
_BOOL = ("on", "off")


def _check_qcow2(options: Mapping[str, str]) -> None:
    if options.get("compression_type") == "zstd" and options.get("compat") in ("0.10", "v2"):
        raise InvalidValueError("-o compression_type=zstd needs compat=1.1")


def _check_vmdk(options: Mapping[str, str]) -> None:
    if "hwversion" in options and options.get("compat6") == "on":
        raise InvalidValueError("-o hwversion and compat6 cannot be used together")


@dataclass(frozen=True)
class FormatSpec:
    format: ImageFormat
    driver: str  # qemu-img's name for it
    inspector: type[FormatInspector] | None  # None: raw has no header to inspect
    suffixes: tuple[str, ...]  # names that claim the format; the first is the one we write
    options: Mapping[str, Choices]  # what `-o` may set when we write it
    defaults: Mapping[str, str] = field(default_factory=dict)  # what we write unless told otherwise
    check_options: Callable[[Mapping[str, str]], None] | None = None
    whole_disk: Mapping[str, str] = field(default_factory=dict)  # an option value that allocates every byte
    flat_subformats: frozenset[str] = frozenset()  # subformats whose guest bytes are the file's, from offset 0
    oci_subformats: frozenset[str] | None = None  # what OCI's import takes; None: not this format at all
    allocation_unit: str = "2M"  # the qcow2 cluster size that measures the data as this format rounds it
    overhead: int = 1024**2  # metadata beyond the data, for the free-space estimate
    compressible: bool = False  # `--compress` means something for it
    backing: bool = False  # qemu's driver may open a backing file the header names (then told "backing": null)

    @property
    def suffix(self) -> str:
        return self.suffixes[0]

    def is_flat(self, inspection: Inspection) -> bool:
        """Whether the guest disk is the file's own bytes from offset 0 (raw, a fixed VHD before its footer)."""
        return self.inspector is None or (inspection.subformat or "") in self.flat_subformats

    def allocates_whole_disk(self, options: Mapping[str, str]) -> bool:
        return options.get("preallocation") in ("falloc", "full") or any(
            options.get(key) == value for key, value in self.whole_disk.items()
        )

    def oci_imports(self, inspection: Inspection) -> bool:
        if self.oci_subformats is None:
            return False
        return not self.oci_subformats or (inspection.subformat or "") in self.oci_subformats


FORMATS: dict[ImageFormat, FormatSpec] = {
    spec.format: spec
    for spec in (
        FormatSpec(
            ImageFormat.RAW,
            "raw",
            None,
            (".raw", ".img"),
            {"preallocation": ("off", "falloc", "full")},
            allocation_unit="64k",
        ),
        FormatSpec(
            ImageFormat.QCOW2,
            "qcow2",
            Qcow2Inspector,
            (".qcow2",),
            {
                "compat": ("0.10", "1.1", "v2", "v3"),
                "cluster_size": Number(512, 2 * 1024**2, "512 to 2M", size=True),
                "compression_type": ("zlib", "zstd"),
                "preallocation": ("off", "metadata", "falloc", "full"),
                "lazy_refcounts": _BOOL,
                "extended_l2": _BOOL,
                "refcount_bits": ("1", "2", "4", "8", "16", "32", "64"),
            },
            check_options=_check_qcow2,
            oci_subformats=frozenset(),
            compressible=True,
            backing=True,
        ),
        FormatSpec(
            ImageFormat.VMDK,
            "vmdk",
            VmdkInspector,
            (".vmdk",),
            # Multi-file subformats are left out on purpose: their descriptor names extent files that a
            # temporary name and a rename would break.
            {
                "subformat": SINGLE_FILE_TYPES,
                "adapter_type": ("ide", "lsilogic", "buslogic", "legacyESX"),
                "hwversion": Number(4, 99, "4 to 99"),  # VMware's virtual hardware versions (qemu's default 4)
                "toolsversion": Number(0, 2**31 - 1, "0 to 2147483647"),  # 2147483647: not managed (qemu's)
                "compat6": _BOOL,
                "zeroed_grain": _BOOL,
            },
            check_options=_check_vmdk,
            oci_subformats=frozenset(SINGLE_FILE_TYPES),
            allocation_unit="64k",
            compressible=True,
            backing=True,
        ),
        FormatSpec(
            ImageFormat.VDI,
            "vdi",
            VdiInspector,
            (".vdi",),
            {"static": _BOOL},
            whole_disk={"static": "on"},
            allocation_unit="1M",
        ),
        FormatSpec(
            ImageFormat.VHD,
            "vpc",
            VhdInspector,
            (".vhd", ".vpc"),
            {"subformat": ("dynamic", "fixed"), "force_size": _BOOL},
            # The exact virtual size instead of qemu's CHS rounding.
            defaults={"force_size": "on"},
            whole_disk={"subformat": "fixed"},
            flat_subformats=frozenset({"fixed"}),
        ),
        FormatSpec(
            ImageFormat.VHDX,
            "vhdx",
            VhdxInspector,
            (".vhdx",),
            {
                "subformat": ("dynamic", "fixed"),
                "block_size": Number(1024**2, 256 * 1024**2, "1M to 256M", size=True),
                "log_size": Number(1024**2, 1024**3, "1M to 1G", size=True),
                "block_state_zero": _BOOL,
            },
            whole_disk={"subformat": "fixed"},
            overhead=8 * 1024**2,  # its 1 MiB log, headers and metadata regions, and a block of rounding
        ),
    )
}


def spec(fmt: ImageFormat) -> FormatSpec:
    return FORMATS[fmt]


def parse_format(name: str) -> ImageFormat:
    """The format a user named ('vpc' is qemu's name for vhd). 'qcow' is qemu's version 1, not qcow2."""
    key = name.strip().lower()
    for entry in FORMATS.values():
        if key in (entry.format.value, entry.driver) or f".{key}" in entry.suffixes:
            return entry.format
    allowed = ", ".join(f.value for f in FORMATS)
    if key == "qcow":
        raise InvalidValueError("format 'qcow' is qemu's version 1, which imagepack does not read or write; use qcow2")
    raise InvalidValueError(f"unknown format '{name}': use one of {allowed}")


def format_claimed_by_name(path: Path) -> ImageFormat | None:
    """What a file name claims about an input. '.img' claims nothing: vendors ship qcow2 under that name, so the
    bytes decide."""
    suffix = path.suffix.lower()
    if suffix == ".img":
        return None
    return next((entry.format for entry in FORMATS.values() if suffix in entry.suffixes), None)


def format_for_output_name(path: Path) -> ImageFormat | None:
    """The format an output name asks for ('.img' means raw)."""
    suffix = path.suffix.lower()
    return next((entry.format for entry in FORMATS.values() if suffix in entry.suffixes), None)
