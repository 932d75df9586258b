"""Changing the metadata of an existing archive. Where the JSON fits in the room our layout leaves, its
header and data are rewritten in one write and the disk member is not touched; otherwise the archive is
rewritten into our layout (the disk copied in the kernel) and renamed over the old one."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from imagepack.atomic import atomic_output, check_free_space, fsync_path
from imagepack.errors import MetadataError
from imagepack.oci.archive import (
    BLOCK,
    DISK_NAME,
    OciLayout,
    copy_range,
    disk_data_offset,
    extract_member,
    member_header,
    metadata_region,
    read_layout,
    trailer,
)
from imagepack.oci.metadata import ImageMetadata, check_metadata, dump_metadata
from imagepack.oci.reader import read_metadata
from imagepack.source import require_regular_file


@dataclass(frozen=True)
class EditResult:
    archive: Path
    metadata: ImageMetadata
    in_place: bool
    warnings: list[str]
    seconds: float


def show_metadata(archive: Path) -> ImageMetadata:
    require_regular_file(archive)
    return read_metadata(read_layout(archive))


def edit_metadata(
    archive: Path, change: Callable[[ImageMetadata], ImageMetadata], *, strict: bool = False
) -> EditResult:
    started = time.monotonic()
    require_regular_file(archive)
    layout = read_layout(archive)
    updated = change(read_metadata(layout))
    errors, warnings = check_metadata(updated, strict=strict)
    if errors:
        raise MetadataError(f"{archive}: {errors[0]}")
    data = dump_metadata(updated)
    mtime = int(time.time())
    in_place = _fits_in_place(layout, data)
    if in_place:
        _rewrite_metadata_in_place(layout, data, mtime)
    else:
        _rewrite_archive(layout, data, mtime)
    return EditResult(archive, updated, in_place, warnings, time.monotonic() - started)


def _fits_in_place(layout: OciLayout, data: bytes) -> bool:
    meta = layout.metadata
    return (
        not layout.compressed
        and layout.metadata_first
        and meta.header_offset == 0
        and meta.data_offset == BLOCK
        and len(data) + 1 <= meta.size
    )


def _rewrite_metadata_in_place(layout: OciLayout, data: bytes, mtime: int) -> None:
    """One pwrite of the metadata header and data, padded to the member's old size so that no offset moves."""
    region = metadata_region(data, layout.metadata.size + 2 * BLOCK, mtime)
    assert len(region) == BLOCK + layout.metadata.size
    fd = os.open(layout.path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        written = os.pwrite(fd, region, 0)
        if written != len(region):
            raise MetadataError(f"{layout.path}: short write while updating the metadata")
        os.fsync(fd)
    finally:
        os.close(fd)


def _rewrite_archive(layout: OciLayout, data: bytes, mtime: int) -> None:
    data_offset = disk_data_offset(len(data))
    check_free_space(layout.path, data_offset + layout.disk.size)
    with atomic_output(layout.path) as temp:
        fd = os.open(temp, os.O_RDWR | os.O_CLOEXEC)
        try:
            os.pwrite(fd, metadata_region(data, data_offset, mtime), 0)
            if layout.disk_in_place:
                src_fd = os.open(layout.path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    copy_range(src_fd, fd, layout.disk.data_offset, data_offset, layout.disk.size)
                finally:
                    os.close(src_fd)
                size = layout.disk.size
            else:
                size = extract_member(layout, layout.disk, fd, data_offset, limit=layout.disk.size or 1 << 62)
            os.pwrite(fd, member_header(DISK_NAME, size, mtime), data_offset - BLOCK)
            os.pwrite(fd, trailer(data_offset + size), data_offset + size)
        finally:
            os.close(fd)
    fsync_path(layout.path.parent)
