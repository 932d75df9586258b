"""Disk formats qemu reads that imagepack does not: recognised by their magic so that none is ever taken for a
raw disk (a VHDX or QED converted as raw is a disk full of the container's own bytes)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from imagepack.formats.base import ByteSource


@dataclass(frozen=True)
class ForeignFormat:
    name: str  # qemu's driver name
    what: str  # how the refusal names it
    advice: str  # what the user can do instead
    matches: Callable[[ByteSource], bool]


def _at(offset: int, magic: bytes) -> Callable[[ByteSource], bool]:
    return lambda src: src.read(offset, len(magic)) == magic


def _qcow_v1(src: ByteSource) -> bool:
    head = src.read(0, 8)
    return len(head) == 8 and head[:4] == b"QFI\xfb" and struct.unpack(">I", head[4:])[0] == 1


def _dmg(src: ByteSource) -> bool:
    return src.size >= 512 and src.read(src.size - 512, 4) == b"koly"


def _convert_first(driver: str) -> str:
    return f"if you trust it, convert it to qcow2 first with 'qemu-img convert -f {driver} -O qcow2 FILE OUT'"


FOREIGN_FORMATS: tuple[ForeignFormat, ...] = (
    ForeignFormat("qcow", "a qcow version 1 image", _convert_first("qcow"), _qcow_v1),
    ForeignFormat("qed", "a QED image", _convert_first("qed"), _at(0, b"QED\0")),
    ForeignFormat(
        "luks",
        "a LUKS-encrypted volume",
        "imagepack cannot read encrypted disks; decrypt it and give imagepack the plain disk",
        _at(0, b"LUKS\xba\xbe"),
    ),
    ForeignFormat(
        "parallels",
        "a Parallels image",
        _convert_first("parallels"),
        lambda src: src.read(0, 16) in (b"WithoutFreeSpace", b"WithouFreSpacExt"),
    ),
    ForeignFormat("dmg", "an Apple disk image (DMG)", _convert_first("dmg"), _dmg),
    ForeignFormat("bochs", "a Bochs image", _convert_first("bochs"), _at(0, b"Bochs Virtual HD Image")),
    ForeignFormat(
        "cloop", "a cloop image", _convert_first("cloop"), _at(0, b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop")
    ),
)


def detect_foreign(src: ByteSource) -> list[ForeignFormat]:
    return [fmt for fmt in FOREIGN_FORMATS if fmt.matches(src)]
