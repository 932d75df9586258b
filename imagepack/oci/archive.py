"""The .oci archive layout: reading one we did not write without trusting it, and writing our own so that
the disk member's data sits at a known, aligned offset where qemu-img can read and write it in place."""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from imagepack.core.errors import ArchiveError, UnreadableError
from imagepack.core.problems import Remedy
from imagepack.files.writes import pwrite_all
from imagepack.formats import Container, disk_size_limit, not_a_disk
from imagepack.tar.members import (
    RECORD,
    Member,
    members,
    normalised,
    scan,
    sniff,
)

METADATA_NAME = "image_metadata.json"
DISK_NAME = "output.QCOW2"
MAX_METADATA = 1024 * 1024
BLOCK = 512
ALIGN = 4096  # the disk member's data starts on a page, so qemu's cluster writes and reflinks stay aligned
METADATA_SLACK = 4096  # room for `meta set` to grow the JSON in place


@dataclass(frozen=True)
class OciLayout:
    """Where the two members of a checked archive lie."""

    path: Path
    compressed: bool
    metadata: Member
    disk: Member
    metadata_first: bool

    @property
    def disk_in_place(self) -> bool:
        """Whether qemu-img can read the disk member where it lies, without extracting it."""
        return not self.compressed and not self.disk.sparse

    @property
    def label(self) -> str:
        return f"{self.path}:{self.disk.name}"


def read_layout(path: Path, *, max_disk_size: int | None = None) -> OciLayout:
    """Walk the tar headers (never extracting) and check the archive holds exactly the two members."""
    limit = max_disk_size if max_disk_size is not None else disk_size_limit()
    found, file_size = sniff(path)
    if found.ambiguous:
        raise not_a_disk(found, path, error=UnreadableError)
    if found.archive is None:
        what = found.describe()
        raise UnreadableError(f"{path}: this is {what}, not a .oci archive (a tar of {METADATA_NAME} and {DISK_NAME})")
    compressed = found.archive is Container.GZIP
    scan(path, compressed=compressed, file_size=file_size, member_limit=limit)
    metadata: Member | None = None
    disk: Member | None = None
    order: list[str] = []
    for info, member in members(path, compressed=compressed, holds=_HOLDS):
        key = normalised(member.name)
        if key == METADATA_NAME.casefold():
            if info.size > MAX_METADATA:
                raise ArchiveError(f"{path}: {METADATA_NAME} is {info.size} bytes; the limit is 1 MiB")
            metadata = member
        elif key.endswith(".qcow2") and disk is None:
            disk = member
        else:
            raise ArchiveError(
                f"{path}: unexpected member '{member.name}'; a .oci archive holds {METADATA_NAME} and one .qcow2 disk"
            )
        order.append(key)
        if member is disk and info.size > limit:
            raise ArchiveError(f"{path}: disk member of {info.size} bytes is larger than the limit")
    if metadata is None:
        raise ArchiveError(
            f"{path}: no {METADATA_NAME} member", code="archive.no-metadata", remedy=Remedy.STATE_METADATA
        )
    if disk is None:
        raise ArchiveError(f"{path}: no .qcow2 disk member")
    return OciLayout(path, compressed, metadata, disk, order[0] == METADATA_NAME.casefold())


_HOLDS = "a .oci archive holds two regular files only"


# --- writing -------------------------------------------------------------------------------------------


def member_header(name: str, size: int, mtime: int) -> bytes:
    """One 512-byte header. GNU format keeps sizes of 8 GiB and more in base-256 inside the same block,
    so the data offset is known before the disk's final size is."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = mtime
    header = info.tobuf(tarfile.GNU_FORMAT, "utf-8", "strict")
    assert len(header) == BLOCK, "member names are short: one header block"
    return header


def disk_data_offset(metadata_size: int) -> int:
    """Where our layout puts the disk member's data: after the metadata, its slack, and the disk's header."""
    needed = BLOCK + metadata_size + METADATA_SLACK + BLOCK
    return -(-needed // ALIGN) * ALIGN


def metadata_region(metadata: bytes, data_offset: int, mtime: int) -> bytes:
    """Header and data of the metadata member, padded with JSON whitespace to end where the disk header starts."""
    room = data_offset - 2 * BLOCK
    if len(metadata) > room:
        raise ValueError("metadata does not fit before the disk member")
    padded = metadata.rstrip(b"\n") + b"\n" + b" " * (room - len(metadata.rstrip(b"\n")) - 2) + b"\n"
    return member_header(METADATA_NAME, len(padded), mtime) + padded


def trailer(end_of_data: int) -> bytes:
    """Zero padding to the block, the two zero blocks that end a tar, and padding to a whole record."""
    pad = -end_of_data % BLOCK
    total = end_of_data + pad + 2 * BLOCK
    return bytes(pad + 2 * BLOCK + (-total % RECORD))


def write_archive(fd: int, metadata: bytes, *, mtime: int, write_disk: Callable[[int], None]) -> int:
    """Our layout in the empty file `fd`: the metadata member, padded to where the disk's data starts; the disk's
    data, which `write_disk(data_offset)` puts there; then the disk's header, once its size is known, and the
    trailer. Returns the disk member's size."""
    data_offset = disk_data_offset(len(metadata))
    pwrite_all(fd, metadata_region(metadata, data_offset, mtime), 0)
    write_disk(data_offset)
    return finish_archive(fd, metadata, data_offset, os.fstat(fd).st_size - data_offset, mtime=mtime)


def pad_member(fd: int, data_offset: int, size: int) -> int:
    """Zeroes after the member's `size` bytes at `data_offset` up to a whole sector; returns the padded size."""
    padded = -(-size // BLOCK) * BLOCK
    if os.fstat(fd).st_size < data_offset + padded:
        os.ftruncate(fd, data_offset + padded)
    return padded


def finish_archive(fd: int, metadata: bytes, data_offset: int, disk_size: int, *, mtime: int) -> int:
    """Once the disk's data is at `data_offset`: pad it with zeroes to a whole number of 512-byte sectors, then
    write the metadata member, the disk's header and the trailer; returns the disk member's size.

    A qcow2 file need not be a whole number of sectors (a fresh `qemu-img create` is not), but qemu reads a
    member in place only as a whole number of them, and so may any other reader: the zeroes after a qcow2's
    last cluster are nothing to it, and the archive is what every reader can read in place."""
    padded = pad_member(fd, data_offset, disk_size)
    pwrite_all(fd, metadata_region(metadata, data_offset, mtime), 0)
    pwrite_all(fd, member_header(DISK_NAME, padded, mtime), data_offset - BLOCK)
    pwrite_all(fd, trailer(data_offset + padded), data_offset + padded)
    return padded
