"""Writing xz files as `xz -T0` does: the input cut into blocks of three times the preset's dictionary (at least
1 MiB), each compressed on its own on a pool of threads (liblzma lets go of the interpreter while it compresses)
and written in order, each block header stating its compressed and uncompressed sizes, then one index listing
every block. Every block decodes on its own, so xz's threaded decoder and imagepack's (xzblocks.py) share them out
over every core; and since the cut depends on the preset alone, the file is the same bytes at any thread count.

Each block is compressed by liblzma as a one-block stream of its own (which computes the block's CRC64); its
block header is then rewritten to state the sizes, as xz's threaded encoder writes them, and the block is moved
into the file's one stream."""

from __future__ import annotations

import collections
import lzma
import os
import struct
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

from imagepack.compression.xzblocks import FOOTER_MAGIC, HEADER_MAGIC, crc32_le, encode_varint, padded
from imagepack.core.progress import Progress
from imagepack.core.signals import leave_to_main_thread

MiB = 1024**2
# The dictionary of each preset (xz's own table), and what its encoder holds in memory (xz --info-memory).
DICTIONARY = {0: MiB // 4, 1: MiB, 2: 2 * MiB, 3: 4 * MiB, 4: 4 * MiB, 5: 8 * MiB, 6: 8 * MiB}
DICTIONARY |= {7: 16 * MiB, 8: 32 * MiB, 9: 64 * MiB}
ENCODER_MEMORY = {0: 3, 1: 9, 2: 17, 3: 32, 4: 48, 5: 94, 6: 94, 7: 186, 8: 370, 9: 674}  # MiB
CHECK_CRC64 = 4
STREAM_FLAGS = bytes((0, CHECK_CRC64))
CHECK_SIZE = 8
PIECE = MiB  # of a block, handed to liblzma at a time


def block_size(preset: int) -> int:
    """The uncompressed size of each block at `preset`, as `xz -T` chooses it."""
    return max(3 * DICTIONARY[preset], MiB)


def usable_threads(preset: int, threads: int) -> int:
    """`threads`, fewer where each thread's encoder and block of output would take more than a quarter of the
    memory (xz -T0's own limit): xz -9's encoder alone holds 674 MiB. The output is the same on any number."""
    per_thread = ENCODER_MEMORY[preset] * MiB + block_size(preset)
    try:
        budget = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4
    except (ValueError, OSError):
        budget = per_thread * threads
    return max(1, min(threads, budget // per_thread))


class Stopped(Exception):
    """The writer was abandoned while the block was compressed."""


Pieces = tuple[bytes | memoryview, ...]


def compress_block(pieces: Iterable[bytes], preset: int, stop: threading.Event) -> tuple[Pieces, int, int]:
    """One block of the file from its input `pieces`, taken as they come (each dropped once liblzma, which
    copies it into its own window, has it; a block at the file's end may be shorter), its header stating its
    sizes: the block's bytes with its padding and check, in pieces written one after the other rather than
    copied into one; its unpadded and uncompressed sizes for the index. Each piece is fed to liblzma a part at
    a time, so that a writer abandoned (Ctrl-C, SIGTERM) stops within a part rather than a whole block;
    liblzma's output does not depend on how its input is cut."""
    encoder = lzma.LZMACompressor(format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=preset)
    parts = []
    size = 0
    for piece in pieces:
        view = memoryview(piece)
        for at in range(0, len(view), PIECE):
            if stop.is_set():
                raise Stopped
            if out := encoder.compress(view[at : at + PIECE]):
                parts.append(out)
        size += len(view)
        del piece, view  # the block's input goes as liblzma takes it in
    if stop.is_set():
        raise Stopped
    parts.append(encoder.flush())  # the end of the data, the check, the index and the footer
    length = sum(len(part) for part in parts)
    header_size = (_span(parts, 12, 13)[0] + 1) * 4
    header = _span(parts, 12, 12 + header_size)
    index_size = (struct.unpack_from("<I", _span(parts, length - 8, length - 4))[0] + 1) * 4
    index = _span(parts, length - 12 - index_size, length - 12)
    check_end = length - 12 - index_size  # the block ends with its check, after its padding
    start = 12 + header_size
    compressed_size = _compressed_size(index, header_size)
    compressed = _views(parts, start, start + compressed_size)
    sized = _sized_header(header, compressed_size, size, reserved=_reserved_header(header, preset))
    body = len(sized) + compressed_size
    check = _span(parts, check_end - CHECK_SIZE, check_end)
    return (sized, *compressed, bytes(padded(body) - body), check), body + CHECK_SIZE, size


def _views(parts: list[bytes], start: int, stop: int) -> list[memoryview]:
    """Bytes `start` to `stop` of what `parts` hold one after the other, as views of them (nothing copied)."""
    views = []
    at = 0
    for part in parts:
        end = at + len(part)
        if end > start and at < stop:
            views.append(memoryview(part)[max(start - at, 0) : min(stop, end) - at])
        at = end
    return views


def _span(parts: list[bytes], start: int, stop: int) -> bytes:
    """A few bytes of what `parts` hold one after the other, copied out."""
    return b"".join(_views(parts, start, stop))


def _compressed_size(index: bytes, header_size: int) -> int:
    """The block's compressed data size, from its one-record index: unpadded size less the header and check."""
    at = 2  # the indicator and the record count (1)
    unpadded, _ = _varint(index, at)
    return unpadded - header_size - CHECK_SIZE


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = 0
    for i in range(9):
        byte = data[at + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, at + i + 1
    raise ValueError("a malformed number in liblzma's own index")


def _reserved_header(header: bytes, preset: int) -> int:
    """The block header's size as xz's threaded encoder reserves it before the block is compressed: with room for
    the largest compressed size a whole block can have (liblzma's lzma_block_buffer_bound) and a whole block's
    size, whatever the block turns out to be. Writing the same keeps the file byte for byte what `xz -T0` writes."""
    size = block_size(preset)
    bound = size + (size + 0xFFFF) // 0x10000 * 3 + 1 + 1024 + 64 + 3
    return len(_sized_header(header, bound, size, reserved=0))


def _sized_header(header: bytes, compressed: int, size: int, *, reserved: int) -> bytes:
    """liblzma's block header with the compressed and uncompressed sizes stated (flags 0x40 and 0x80), padded to
    `reserved` bytes at least: the filter flags are kept as liblzma wrote them."""
    flags = header[1]
    filters = header[2:-4].rstrip(b"\0")  # the filter flags, without the padding before the CRC32
    body = bytes((flags | 0x40 | 0x80,)) + encode_varint(compressed) + encode_varint(size) + filters
    length = max(padded(1 + len(body) + 4), reserved)
    body += bytes(length - 1 - len(body) - 4)
    head = bytes((length // 4 - 1,)) + body
    return head + crc32_le(head)


def _read(fd: int, offset: int, length: int) -> Iterator[bytes]:
    """`length` bytes of the file `fd` from `offset`, a piece at a time, read as they are wanted; fewer if the file
    ends sooner."""
    end = offset + length
    while offset < end and (piece := os.pread(fd, min(PIECE, end - offset), offset)):
        yield piece
        offset += len(piece)


class XzBlockWriter:
    """Compresses a file into `out` as a multi-block xz file, on `threads` threads (`compress_from`); `close`
    writes the index and the footer. Each thread reads its own block's input from the file a piece at a time as
    liblzma takes it in, so memory is bounded whatever the file's size: one encoder a thread (liblzma's own,
    94 MiB at preset 6), a piece of input, and at most one block's output a thread until it is written in
    order; a block starts once a thread is free, after the oldest block has been written."""

    def __init__(self, out: BinaryIO, preset: int, threads: int) -> None:
        self.out = out
        self.preset = preset
        self.size = block_size(preset)
        self.threads = usable_threads(preset, threads)
        self.pool = ThreadPoolExecutor(
            max_workers=self.threads, thread_name_prefix="imagepack-xz", initializer=leave_to_main_thread
        )
        self.pending: collections.deque[Future[tuple[Pieces, int, int]]] = collections.deque()
        self.records: list[tuple[int, int]] = []
        self.closed = False
        self.stop = threading.Event()
        self.out.write(HEADER_MAGIC + STREAM_FLAGS + crc32_le(STREAM_FLAGS))

    def compress_from(self, fd: int, offset: int, length: int, on_progress: Progress | None = None) -> int:
        """Compress `length` bytes of the file `fd` from `offset`, in blocks written in order. Returns the bytes
        read: fewer than `length` where the file ended sooner."""
        done = 0
        for start in range(0, length, self.size):
            while len(self.pending) >= self.threads:  # a thread a block: the oldest is written first
                done += self._write_next()
                if on_progress is not None:
                    on_progress(done / length)
            reader = _read(fd, offset + start, min(self.size, length - start))
            self.pending.append(self.pool.submit(compress_block, reader, self.preset, self.stop))
        while self.pending:
            done += self._write_next()
            if on_progress is not None:
                on_progress(done / length)
        return done

    def _write_next(self) -> int:
        pieces, unpadded, size = self.pending.popleft().result()
        for piece in pieces:
            self.out.write(piece)
        self.records.append((unpadded, size))
        return size

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            while self.pending:
                self._write_next()
        except BaseException:
            self.stop.set()  # the blocks being compressed stop within a piece
            raise
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
        index = _index(self.records)
        self.out.write(index + _footer(index))
        self.out.flush()

    def abandon(self) -> None:
        """Stop without finishing the file (an error is on its way): blocks not started are dropped."""
        self.closed = True
        self.stop.set()
        self.pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> XzBlockWriter:
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        if kind is None:
            self.close()
        else:
            self.abandon()


def _index(records: list[tuple[int, int]]) -> bytes:
    index = b"\0" + encode_varint(len(records))
    index += b"".join(encode_varint(unpadded) + encode_varint(size) for unpadded, size in records)
    index += bytes(padded(len(index)) - len(index))
    return index + crc32_le(index)


def _footer(index: bytes) -> bytes:
    backward = struct.pack("<I", len(index) // 4 - 1)
    return crc32_le(backward + STREAM_FLAGS) + backward + STREAM_FLAGS + FOOTER_MAGIC
