"""Where the stream writer reads the guest disk: a raw file (or a raw region of one, an archive member) directly,
its holes found with SEEK_HOLE; any other format through a read-only qemu-nbd export, so that qemu's drivers
decode it. Both answer the same two questions: which regions read as zeroes, and what the bytes are."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Protocol

from imagepack.core.openfile import descriptor_of
from imagepack.files.sparse import data_segments
from imagepack.formats import ImageFormat
from imagepack.tools.nbd import Extent, exported
from imagepack.tools.qemu_img import ImageRef


class GuestDisk(Protocol):
    def extents(self, offset: int, length: int) -> list[Extent]: ...

    def read(self, offset: int, length: int) -> bytes: ...


BLOCK_STATUS_SPAN = 1024**3  # how much of the disk one block-status request asks about


def chunks_with_data(disk: GuestDisk, size: int, chunk: int) -> Iterator[int]:
    """The offsets of the `chunk`-sized pieces that hold anything but zeroes, as the source's allocation tells, in
    order; a piece that is partly data is given whole (its zero blocks are found by the writer, by comparison)."""
    offset = 0
    upcoming = 0  # the first piece not yet given: two data extents can share one
    while offset < size:
        for extent in disk.extents(offset, min(BLOCK_STATUS_SPAN, size - offset)):
            end = extent.offset + extent.length
            if not extent.zero:
                for piece in range(max(upcoming, extent.offset - extent.offset % chunk), end, chunk):
                    yield piece
                    upcoming = piece + chunk
            offset = end


class RawRegion:
    """A raw disk that is `size` bytes of a file from `base`: read with pread, its holes from the file system."""

    def __init__(self, fd: int, base: int, size: int) -> None:
        self.fd, self.base, self.size = fd, base, size

    def extents(self, offset: int, length: int) -> list[Extent]:
        found: list[Extent] = []
        at = offset
        for start, run in data_segments(self.fd, self.base + offset, length):
            start -= self.base
            if start > at:
                found.append(Extent(at, start - at, zero=True))
            found.append(Extent(start, run, zero=False))
            at = start + run
        if at < offset + length:
            found.append(Extent(at, offset + length - at, zero=True))
        return found

    def read(self, offset: int, length: int) -> bytes:
        data = os.pread(self.fd, length, self.base + offset)
        if len(data) < length:  # a file shorter than its region reads as zeroes past its end, as qemu's raw does
            data += bytes(length - len(data))
        return data


@contextlib.contextmanager
def guest_disk(source: ImageRef, virtual_size: int) -> Iterator[GuestDisk]:
    """The guest disk of `source`, for the length of the block. Reading a raw file in place costs nothing beyond
    the copy; an NBD export costs a socket round trip and qemu-nbd's CPU for every request. Both read the input's
    open file, never its name; a source that changed by the end of the block is refused (a disk truncated under
    the writer would otherwise come out as zeroes)."""
    if source.format is ImageFormat.RAW and not source.driver_options:
        held = descriptor_of(source.path)
        fd = os.dup(held) if held is not None else os.open(source.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            yield RawRegion(fd, source.offset, virtual_size)
        finally:
            os.close(fd)
    else:
        with exported(source) as client:
            yield client
    source.require_unchanged()
