"""Writing a compressed qcow2 from any source: the guest disk is read in place (raw) or through qemu-nbd (every
other format; see vmdkstream/source.py), what reads as zeroes skipped unread and left unallocated; clusters are
compressed on a pool of threads and placed in order, so that the file is the same bytes at any thread count.

The file: the header cluster; the data, compressed clusters packed byte after byte as qemu packs them (a cluster
whose compressed form is not smaller is stored as it is, in a cluster of its own) with each L2 table written as
soon as the disk has been read past what it maps; then the L1 table, the refcount blocks and the refcount
table; the header last. Memory is a window of chunks in flight, one L2 table and two bytes per host cluster."""

from __future__ import annotations

import collections
import concurrent.futures
from array import array
from pathlib import Path

from imagepack.core.progress import Progress
from imagepack.core.signals import leave_to_main_thread
from imagepack.files.sparse import pieces_with_data
from imagepack.files.writes import pwrite_all
from imagepack.tools.qemu_img import ImageRef
from imagepack.writers.qcow2 import layout
from imagepack.writers.qcow2.codecs import Compressor, compressor_for
from imagepack.writers.qcow2.layout import CLUSTER, L2_ENTRIES, OFLAG_COPIED, CompressionType
from imagepack.writers.vmdkstream.source import GuestDisk, chunks_with_data, guest_disk
from imagepack.writers.vmdkstream.writer import default_threads

CHUNK = 16 * CLUSTER  # one read, one job: 1 MiB
JOBS_PER_THREAD = 2  # queued work, so that no thread waits on the reader
FLUSH_AT = 4 * 1024**2  # bytes gathered before one write

Packed = list[tuple[int, bytes, bool]]  # (guest cluster, bytes to store, compressed)


def write_compressed_qcow2(
    source: ImageRef,
    fd: int,
    *,
    base: int = 0,
    virtual_size: int,
    compression: CompressionType = CompressionType.ZLIB,
    level: int | None = None,
    threads: int | None = None,
    on_progress: Progress | None = None,
) -> int:
    """Write `source` as a compressed qcow2 into the file `fd` from `base` (the file's start, or an archive
    member's place), which must hold nothing there yet, its clusters at the codec's `level` (codecs.py; the
    codec's default when None). Returns the qcow2's length."""
    image = _Image(fd, base, virtual_size, compression, level)
    with guest_disk(source, virtual_size) as disk:
        image.write(disk, threads or default_threads(), on_progress)
    return image.finish()


def write_compressed_qcow2_file(
    source: ImageRef,
    target: Path,
    *,
    virtual_size: int,
    compression: CompressionType = CompressionType.ZLIB,
    level: int | None = None,
    threads: int | None = None,
    on_progress: Progress | None = None,
) -> None:
    """`write_compressed_qcow2` into `target`, an existing empty file."""
    with open(target, "r+b", buffering=0) as out:
        write_compressed_qcow2(
            source,
            out.fileno(),
            virtual_size=virtual_size,
            compression=compression,
            level=level,
            threads=threads,
            on_progress=on_progress,
        )


def _pack_chunk(compress: Compressor, data: bytes, first: int) -> Packed:
    """The chunk's clusters that are not all zeroes, each compressed, or as it is where compressing does not make
    it smaller (as qemu stores it). A short last cluster is padded with zeroes, as qemu reads it."""
    packed = []
    for index, piece in pieces_with_data(data, CLUSTER):  # an unallocated cluster reads as zeroes: not stored
        squeezed = compress(piece)
        smaller = len(squeezed) < CLUSTER
        packed.append((first + index, squeezed if smaller else piece, smaller))
    return packed


class _Output:
    """Writes into `fd` from `base`, gathering adjacent pieces into one write."""

    def __init__(self, fd: int, base: int) -> None:
        self.fd, self.base = fd, base
        self.buffer = bytearray()
        self.at = 0

    def write(self, offset: int, data: bytes) -> None:
        if offset != self.at + len(self.buffer):
            self.flush()
            self.at = offset
        self.buffer += data
        if len(self.buffer) >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            pwrite_all(self.fd, self.buffer, self.base + self.at)
            self.at += len(self.buffer)
            self.buffer = bytearray()


class _Image:
    """The file as it is written: where the next cluster and the next compressed bytes go, the references each
    host cluster has, the L1 table and the L2 table being filled."""

    def __init__(self, fd: int, base: int, virtual_size: int, compression: CompressionType, level: int | None) -> None:
        self.out = _Output(fd, base)
        self.size = virtual_size
        self.header_size = -(-virtual_size // 512) * 512  # as qemu-img create rounds it: qemu reads whole sectors
        self.compression = compression
        self.compress = compressor_for(compression, level)
        self.refcounts = array("H", [1])  # the header's cluster
        self.end = CLUSTER  # the first byte of the first cluster not yet used: all after it is free
        self.free_byte = 0  # where compressed bytes can go on in a cluster partly used by them (0: none)
        self.l1 = array("Q", bytes(8 * layout.l1_entries_for(virtual_size)))
        self.table_index = 0
        self.table = array("Q", bytes(8 * L2_ENTRIES))

    def _reference(self, clusters: range) -> None:
        if clusters.stop > len(self.refcounts):
            self.refcounts.extend(array("H", bytes(2 * (clusters.stop - len(self.refcounts)))))
        for cluster in clusters:
            self.refcounts[cluster] += 1

    def _new_clusters(self, count: int) -> int:
        """`count` whole clusters at the end, each referenced once."""
        offset = self.end
        self.end += count * CLUSTER
        self._reference(range(offset // CLUSTER, self.end // CLUSTER))
        return offset

    def _place_compressed(self, length: int) -> int:
        """Where `length` compressed bytes go, as qemu's qcow2_alloc_bytes places them: after the last ones in
        their cluster if they fit there, or run on from it into new clusters when it is the last cluster used,
        else at the start of a new cluster."""
        offset = self.free_byte
        cluster_end = (offset // CLUSTER + 1) * CLUSTER
        if not offset or (offset + length > cluster_end and cluster_end != self.end):
            offset = self.end
        self.end = max(self.end, -(-(offset + length) // CLUSTER) * CLUSTER)
        self.free_byte = (offset + length) if (offset + length) % CLUSTER else 0
        self._reference(layout.compressed_span(offset, length))
        return offset

    def write(self, disk: GuestDisk, threads: int, on_progress: Progress | None) -> None:
        pending: collections.deque[concurrent.futures.Future[Packed]] = collections.deque()
        pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="imagepack-qcow2", initializer=leave_to_main_thread
        )
        try:
            for offset in chunks_with_data(disk, self.size, CHUNK):
                data = disk.read(offset, min(CHUNK, self.size - offset))
                pending.append(pool.submit(_pack_chunk, self.compress, data, offset // CLUSTER))
                while len(pending) >= threads * JOBS_PER_THREAD + 2:
                    self._store(pending.popleft().result())
                    if on_progress:
                        on_progress(offset / self.size)
            while pending:
                self._store(pending.popleft().result())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if on_progress:
            on_progress(1.0)

    def _store(self, packed: Packed) -> None:
        for cluster, data, compressed in packed:
            index, entry = divmod(cluster, L2_ENTRIES)
            if index != self.table_index:
                self._flush_table()
                self.table_index = index
            if compressed:
                offset = self._place_compressed(len(data))
                self.table[entry] = layout.compressed_descriptor(offset, len(data))
            else:
                offset = self._new_clusters(1)
                self.table[entry] = offset | OFLAG_COPIED
            self.out.write(offset, data)

    def _flush_table(self) -> None:
        """Write the L2 table being filled, if it maps anything (else its L1 entry stays 0: unallocated)."""
        if any(self.table):
            offset = self._new_clusters(1)
            self.out.write(offset, layout.be64(self.table))
            self.l1[self.table_index] = offset | OFLAG_COPIED
            self.table = array("Q", bytes(8 * L2_ENTRIES))

    def finish(self) -> int:
        """The L1 table, the refcount blocks and table (which count themselves), then the header; returns the
        file's length."""
        self._flush_table()
        l1_clusters = max(1, layout.clusters_of(8 * len(self.l1)))
        l1_offset = self._new_clusters(l1_clusters)
        self.out.write(l1_offset, layout.be64(self.l1).ljust(l1_clusters * CLUSTER, b"\0"))
        blocks, table_clusters = layout.refcount_clusters(self.end // CLUSTER)
        blocks_offset = self._new_clusters(blocks)
        table_offset = self._new_clusters(table_clusters)
        counts = self.refcounts.tobytes() + bytes(2 * (blocks * layout.REFCOUNTS_PER_BLOCK - len(self.refcounts)))
        self.out.write(blocks_offset, layout.be16(array("H", counts)))
        table = [blocks_offset + i * CLUSTER for i in range(blocks)]
        self.out.write(table_offset, layout.be64(table).ljust(table_clusters * CLUSTER, b"\0"))
        self.out.write(
            0,
            layout.header(
                size=self.header_size,
                l1_entries=len(self.l1),
                l1_offset=l1_offset,
                refcount_table_offset=table_offset,
                refcount_table_clusters=table_clusters,
                compression=self.compression,
            ),
        )
        self.out.flush()
        return self.end
