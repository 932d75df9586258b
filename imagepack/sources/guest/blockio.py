"""Byte regions of a guest disk as the file objects the libyal readers take: a bounded window (offset, size) over
the disk, read through a small cache of aligned chunks, since file system readers ask for a few hundred bytes at a
time and every request to the NBD server is a round trip."""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Protocol

CHUNK = 64 * 1024
CACHED_CHUNKS = 512  # 32 MiB at most


class Reader(Protocol):
    size: int

    def read(self, offset: int, length: int) -> bytes: ...


class CachedDisk:
    """`reader` (the NBD client) read in aligned chunks, the last CACHED_CHUNKS of them kept."""

    def __init__(self, reader: Reader) -> None:
        self._reader = reader
        self.size = reader.size
        self._chunks: OrderedDict[int, bytes] = OrderedDict()
        self.bytes_read = 0

    def _chunk(self, index: int) -> bytes:
        data = self._chunks.get(index)
        if data is not None:
            self._chunks.move_to_end(index)
            return data
        start = index * CHUNK
        data = self._reader.read(start, min(CHUNK, self.size - start))
        self.bytes_read += len(data)
        self._chunks[index] = data
        if len(self._chunks) > CACHED_CHUNKS:
            self._chunks.popitem(last=False)
        return data

    def read(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes from `offset`; fewer at the end of the disk, none past it."""
        length = max(0, min(length, self.size - offset))
        if offset < 0 or length == 0:
            return b""
        if length > 4 * CHUNK:  # a big read (a file's content) goes straight through, past the cache
            self.bytes_read += length
            return self._reader.read(offset, length)
        parts = []
        at, end = offset, offset + length
        while at < end:
            index = at // CHUNK
            data = self._chunk(index)
            within = at - index * CHUNK
            piece = data[within : within + end - at]
            parts.append(piece)
            at += len(piece)
        return b"".join(parts)


class Window:
    """A file object over `size` bytes of `reader` from `offset`: what a file system reader opens. Reads past
    the window's end return less, as at the end of a file."""

    def __init__(self, reader: Reader, offset: int, size: int) -> None:
        self._reader, self._offset = reader, offset
        self.size = max(0, min(size, reader.size - offset))
        self._at = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self.size - self._at
        data = self.read_at(self._at, size)
        self._at += len(data)
        return data

    def read_at(self, offset: int, size: int) -> bytes:
        size = max(0, min(size, self.size - offset))
        return self._reader.read(self._offset + offset, size) if size else b""

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._at, os.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise OSError("seek before the start of the region")
        self._at = base + offset
        return self._at

    def tell(self) -> int:
        return self._at

    def get_size(self) -> int:
        return self.size

    def close(self) -> None:
        pass

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True


class VolumeReader:
    """A logical volume (or anything with read_buffer_at_offset and a size) as a Reader."""

    def __init__(self, volume: object, size: int) -> None:
        self._volume = volume
        self.size = size

    def read(self, offset: int, length: int) -> bytes:
        data: bytes = self._volume.read_buffer_at_offset(length, offset)  # type: ignore[attr-defined]
        return data
