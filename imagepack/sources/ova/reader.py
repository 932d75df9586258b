"""Opening an OVA for reading: the checked layout, the manifest verified, and the chosen disk as a SourceImage
that qemu-img reads in place (a plain tar), or from a bounded extraction (gzip-wrapped, or a GNU-sparse member).
The disk's own header must agree with the capacity the descriptor gives it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from imagepack.core.errors import ArchiveError, InvalidValueError
from imagepack.core.openfile import opened_input
from imagepack.core.problems import Remedy
from imagepack.files.leftovers import scratch_directory
from imagepack.formats import SafetyPolicy, disk_size_limit, require_safe
from imagepack.sources.disk import SourceImage, inspect_file, open_image
from imagepack.sources.ova.archive import OvaLayout, read_ova_layout, verify_manifest
from imagepack.sources.ova.descriptor import OvfDisk
from imagepack.tar.members import extract_member


@dataclass
class OpenedOva:
    layout: OvaLayout
    chosen: OvfDisk
    index: int  # 1-based, as --disk takes it
    verified: list[str]  # members whose manifest digest matched
    disk: SourceImage


def choose_disk(layout: OvaLayout, index: int | None) -> tuple[int, OvfDisk]:
    disks = layout.descriptor.disks
    if not disks:
        raise ArchiveError(f"{layout.path}: the OVF descriptor names no disk")
    if index is None:
        if len(disks) > 1:
            names = ", ".join(f"{n} = {d.file}" for n, d in enumerate(disks, 1))
            raise InvalidValueError(
                f"{layout.path} holds {len(disks)} disks ({names}); pick one",
                code="ova.several-disks",
                remedy=Remedy.STATE_DISK,
            )
        index = 1
    if not 1 <= index <= len(disks):
        raise InvalidValueError(
            f"disk {index} is out of range: {layout.path} holds {len(disks)} disk(s), counted from 1",
            code="ova.no-such-disk",
        )
    return index, disks[index - 1]


@contextlib.contextmanager
def open_ova(
    path: Path,
    *,
    disk: int | None = None,
    policy: SafetyPolicy = SafetyPolicy(),
    scratch: Path | None = None,
) -> Iterator[OpenedOva]:
    with opened_input(path) as opened:  # read once: every reader below reads this open file
        path = opened
        layout = read_ova_layout(path, max_disk_size=disk_size_limit(policy.max_size))
        index, chosen = choose_disk(layout, disk)
        verified = verify_manifest(layout)
        member = layout.files[chosen.file]
        label = layout.label(member)
        if not layout.compressed and not member.sparse:
            image = open_image(path, policy=policy, offset=member.data_offset, size=member.size, label=label)
            _require_capacity(image, chosen, label)
            yield OpenedOva(layout, chosen, index, verified, image)
            return
        with scratch_directory(scratch) as tmp:
            extracted = Path(tmp, "disk")

            def check_header() -> int:
                """Refuse a hostile disk before the rest of it is extracted, and bound it by its own header."""
                inspection = inspect_file(extracted, policy=policy, label=label, whole=False)
                require_safe(inspection.problems, label)
                return disk_size_limit(inspection.virtual_size)

            fd = os.open(extracted, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                extract_member(
                    layout, member, fd, 0, limit=disk_size_limit(policy.max_size), after_first_chunk=check_header
                )
            finally:
                os.close(fd)
            image = open_image(extracted, policy=policy, label=label)
            _require_capacity(image, chosen, label)
            yield OpenedOva(layout, chosen, index, verified, image)


def _require_capacity(image: SourceImage, chosen: OvfDisk, label: str) -> None:
    if image.virtual_size != chosen.capacity:
        raise ArchiveError(
            f"{label}: the descriptor gives disk '{chosen.disk_id}' {chosen.capacity} bytes, its header "
            f"{image.virtual_size}; refusing a disk whose size is ambiguous",
            code="archive.capacity-mismatch",
        )
