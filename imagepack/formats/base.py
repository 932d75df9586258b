"""What every format inspector shares: the format names, a bounded byte reader, and the findings it reports."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from imagepack.core.errors import InputError
from imagepack.core.openfile import descriptor_of
from imagepack.core.problems import Problem, Remedy

GiB = 1024**3
# OCI's import limit; also the default cap on any virtual size we accept from an untrusted header.
DEFAULT_MAX_SIZE = 400 * GiB


def disk_size_limit(max_size: int = DEFAULT_MAX_SIZE) -> int:
    """The largest qcow2 file (an archive member) a disk of the allowed virtual size can need, metadata and all."""
    return max_size + max_size // 32 + 256 * 1024**2


class ImageFormat(StrEnum):
    """A disk format imagepack converts between; the value is the name users type. What each one needs (qemu's
    driver, suffixes, options, inspector) is its entry in formats/registry.py."""

    RAW = "raw"
    QCOW2 = "qcow2"
    VMDK = "vmdk"
    VDI = "vdi"
    VHD = "vhd"
    VHDX = "vhdx"


class Container(StrEnum):
    """File types we recognise but do not convert as disks: archives, compressed streams, ISO 9660, programs and
    text."""

    ISO = "iso"
    TAR = "tar"
    ZIP = "zip"
    SEVENZIP = "7z"
    RAR = "rar"
    CPIO = "cpio"
    AR = "ar"
    ELF = "elf"
    TEXT = "text"
    GZIP = "gzip"
    ZSTD = "zstd"
    XZ = "xz"
    BZIP2 = "bzip2"
    LZ4 = "lz4"


class VhdSize(StrEnum):
    """Which of a VHD footer's two sizes is the disk when they differ: its current_size (Hyper-V, VirtualBox)
    or its CHS geometry (Virtual PC, old qemu)."""

    CURRENT = "current"
    CHS = "chs"


@dataclass(frozen=True)
class SafetyPolicy:
    """What the user allowed for this run; the defaults are those for an untrusted image."""

    max_size: int = DEFAULT_MAX_SIZE
    allow_backing: bool = False
    vhd_size: VhdSize = VhdSize.CURRENT


class ByteSource:
    """Bounded, read-only random access to an image that may sit inside a larger file (an archive member). An
    opened input (openfile.OpenedPath) is read through its own descriptor, never opened again."""

    def __init__(self, path: Path, *, offset: int = 0, size: int | None = None) -> None:
        self.path = path
        self.offset = offset
        held = descriptor_of(path)
        if held is not None:
            self._fd = os.dup(held)
        else:
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)  # a FIFO must not block us
        try:
            st = os.fstat(self._fd)
            if not stat.S_ISREG(st.st_mode):
                raise InputError(f"{path}: not a regular file; imagepack reads only regular files")
            available = max(st.st_size - offset, 0)
            self.size = available if size is None else min(size, available)
        except BaseException:
            os.close(self._fd)
            raise

    def read(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes at `offset`; short (or empty) past the end, never beyond the bound."""
        if offset < 0 or length <= 0 or offset >= self.size:
            return b""
        length = min(length, self.size - offset)
        return os.pread(self._fd, length, self.offset + offset)

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> ByteSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MemorySource(ByteSource):
    """Bytes already in memory (the first MiBs of a compressed stream) read as a file's would be: detection and
    header checks need no temporary file."""

    def __init__(self, path: Path, data: bytes) -> None:  # no super().__init__: there is no file to open
        self.path = path
        self.offset = 0
        self.size = len(data)
        self._data = data

    def read(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + length] if offset >= 0 and length > 0 else b""

    def close(self) -> None:
        pass


@dataclass
class Inspection:
    """Facts one inspector derived from the header bytes alone."""

    format: ImageFormat
    virtual_size: int
    subformat: str | None = None
    cluster_size: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


class FormatInspector:
    """One per format: recognises the format from its bytes, then reads its header without trusting it."""

    format: ClassVar[ImageFormat]

    @classmethod
    def matches(cls, src: ByteSource) -> bool:
        raise NotImplementedError

    @classmethod
    def inspect(cls, src: ByteSource, policy: SafetyPolicy) -> Inspection:
        raise NotImplementedError


def check_virtual_size(inspection: Inspection, policy: SafetyPolicy) -> None:
    if inspection.virtual_size > policy.max_size:
        inspection.problems.append(
            Problem(
                "image.size-limit",
                f"virtual size {inspection.virtual_size} bytes is above the limit of {policy.max_size} bytes",
                Remedy.RAISE_MAX_SIZE,
                size=inspection.virtual_size,
            )
        )
