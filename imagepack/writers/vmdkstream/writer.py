"""Writing a stream-optimized VMDK from any source: the guest disk is read in place (raw) or through qemu-nbd
(every other format; see source.py), what reads as zeroes skipped unread; grains are compressed on a pool of
threads (their encoders let go of the interpreter; grains.py) and written in order behind their markers, then
the grain tables, the grain directory and the footer.

Memory is bounded by a window of chunks in flight, a few per thread, whatever the disk's size."""

from __future__ import annotations

import collections
import concurrent.futures
import os
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from imagepack.core.progress import Progress
from imagepack.core.signals import leave_to_main_thread
from imagepack.files.reproducible import derived_u32
from imagepack.files.sparse import pieces_with_data
from imagepack.tools.qemu_img import ImageRef
from imagepack.writers.vmdkstream import layout
from imagepack.writers.vmdkstream.grains import GrainCodec, grain_codec
from imagepack.writers.vmdkstream.layout import GRAIN, GRAIN_SECTORS, GT_ENTRIES, SECTOR
from imagepack.writers.vmdkstream.source import GuestDisk, chunks_with_data, guest_disk

CHUNK = 16 * GRAIN  # one read, one job: 1 MiB, so the per-grain Python work is done in batches
JOBS_PER_THREAD = 2  # queued work, so that no thread waits on the reader; with the reader's own, the memory in flight


def default_threads() -> int:
    return len(os.sched_getaffinity(0))  # one per core we may run on


def write_stream_vmdk(
    source: ImageRef,
    target: Path,
    *,
    virtual_size: int,
    options: Mapping[str, str] = {},
    threads: int | None = None,
    level: int | None = None,
    on_progress: Progress | None = None,
) -> None:
    """Write `source` as a stream-optimized VMDK into `target` (a new file, whose name the descriptor records),
    its grains compressed at `level` (grains.py: which encoder, which of its levels). The bytes written depend on
    the source, the name, the options and the level, never on the number of threads."""
    compress = grain_codec(level)
    capacity = layout.sectors_of(virtual_size)
    descriptor = layout.descriptor(target.name, capacity, options, _cid(target.name, capacity, options))
    with guest_disk(source, virtual_size) as disk, open(target, "r+b", buffering=1024**2) as out:
        stream = _Stream(out, capacity, compress)
        stream.write(disk, descriptor, virtual_size, threads or default_threads(), on_progress)


def _cid(name: str, capacity: int, options: Mapping[str, str]) -> int:
    """The content ID, derived from what the descriptor says rather than drawn at random: the same disk written
    twice is the same file. VMware's writers avoid ffffffff and fffffffe: some readers take them for "no parent"
    or "all zeroes"."""
    stated = [name.encode(), str(capacity).encode(), *(f"{k}={v}".encode() for k, v in sorted(options.items()))]
    return derived_u32(*stated) % 0xFFFFFFFE


def _compress_chunk(compress: GrainCodec, data: bytes, first_grain: int) -> list[tuple[int, bytes]]:
    """The chunk's grains that are not all zeroes, each compressed and framed: (grain number, bytes to write).
    A short last grain is padded to a whole grain with zeroes, which every reader takes and costs nothing."""
    framed = []
    for index, piece in pieces_with_data(data, GRAIN):  # zeroes are not written, as qemu does
        number = first_grain + index
        framed.append((number, layout.grain(number * GRAIN_SECTORS, compress(piece))))
    return framed


class _Stream:
    """The file as it is written: its position in sectors, and the grain directory and current grain table."""

    def __init__(self, out: BinaryIO, capacity: int, compress: GrainCodec) -> None:
        self.out = out
        self.compress = compress
        self.capacity = capacity
        grains = -(-capacity // GRAIN_SECTORS)
        self.directory = [0] * -(-grains // GT_ENTRIES)
        self.table_index = 0
        self.table = [0] * GT_ENTRIES
        self.sector = 0

    def _put(self, data: bytes) -> None:
        self.out.write(data)
        self.sector += len(data) // SECTOR

    def write(self, disk: GuestDisk, descriptor: bytes, size: int, threads: int, on_progress: Progress | None) -> None:
        self._put(layout.header(self.capacity, layout.GD_AT_END))
        self._put(descriptor)
        self._put(bytes((layout.FIRST_GRAIN - self.sector) * SECTOR))
        pending: collections.deque[concurrent.futures.Future[list[tuple[int, bytes]]]] = collections.deque()
        pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="imagepack-vmdk", initializer=leave_to_main_thread
        )
        try:
            for offset in chunks_with_data(disk, size, CHUNK):
                data = disk.read(offset, min(CHUNK, size - offset))
                pending.append(pool.submit(_compress_chunk, self.compress, data, offset // GRAIN))
                while len(pending) >= threads * JOBS_PER_THREAD + 2:
                    self._grains(pending.popleft().result())
                    if on_progress:
                        on_progress(offset / size)
            while pending:
                self._grains(pending.popleft().result())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        self._finish()
        if on_progress:
            on_progress(1.0)

    def _grains(self, framed: list[tuple[int, bytes]]) -> None:
        for number, data in framed:
            index, entry = divmod(number, GT_ENTRIES)
            if index != self.table_index:
                self._flush_table()
                self.table_index = index
            self.table[entry] = self.sector
            self._put(data)

    def _flush_table(self) -> None:
        """Write the current grain table, if it maps any grain; a table with none is left out (its directory
        entry stays 0, which every reader takes as unallocated)."""
        if any(self.table):
            self._put(layout.marker(layout.MARKER_GT, layout.GT_SECTORS))
            self.directory[self.table_index] = self.sector
            self._put(_le32(self.table))
            self.table = [0] * GT_ENTRIES

    def _finish(self) -> None:
        self._flush_table()
        gd = _le32(self.directory)
        gd += bytes(-len(gd) % SECTOR)
        self._put(layout.marker(layout.MARKER_GD, len(gd) // SECTOR))
        gd_offset = self.sector
        self._put(gd)
        self._put(layout.marker(layout.MARKER_FOOTER, 1))
        self._put(layout.header(self.capacity, gd_offset))
        self._put(layout.end_of_stream())
        self.out.flush()


def _le32(values: list[int]) -> bytes:
    return b"".join(v.to_bytes(4, "little") for v in values)
