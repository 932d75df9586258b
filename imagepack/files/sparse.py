"""Copying byte ranges from one file into another in the kernel (copy_file_range, which reflinks where the file
system can), keeping holes as holes: how a qcow2 goes into an archive, out of one, or into a new archive. And
writing a decompressed stream the same way, bounded: a gzip archive's member, a zstd or xz disk."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import BinaryIO

from imagepack.core.errors import InputError
from imagepack.core.progress import Progress
from imagepack.files.checksums import Digester
from imagepack.files.writes import pwrite_all

STREAM_CHUNK = 4 * 1024 * 1024  # also how much of a stream is written before its header is checked
READ_AHEAD_BUFFERS = 4  # one being decoded, one waiting, one being written, one still being hashed
HOLE_BLOCK = 4096  # a file system block: the smallest run of zeroes worth leaving as a hole
_ZEROS = bytes(HOLE_BLOCK)
_ZERO_CHUNK = bytes(STREAM_CHUNK)
# What copy_file_range raises where the kernel or the file systems cannot copy; read and write do it instead.
_NO_KERNEL_COPY = frozenset({errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF, errno.EPERM})


def pieces_with_data(data: bytes, size: int) -> Iterator[tuple[int, bytes]]:
    """(index, piece) for each `size`-byte piece of `data` that is not all zeroes, a short last one padded with
    zeroes: what an image format stores of a chunk (a cluster or grain it leaves unallocated reads as zeroes)."""
    zeros = _zeros(size)
    for i in range(0, len(data), size):
        piece = data[i : i + size]
        if len(piece) < size:
            piece += bytes(size - len(piece))
        if piece != zeros:
            yield i // size, piece


@functools.cache
def _zeros(size: int) -> bytes:
    return bytes(size)


def data_segments(fd: int, start: int, length: int) -> Iterator[tuple[int, int]]:
    """The (offset, length) runs of `fd` in [start, start+length) that hold data; holes are skipped."""
    end = start + length
    offset = start
    while offset < end:
        try:
            data = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError:  # ENXIO: only a hole remains; EINVAL: no SEEK_DATA here, so treat it all as data
            if offset == start and length:
                try:
                    os.lseek(fd, start, os.SEEK_HOLE)
                except OSError:
                    yield start, length
            return
        if data >= end:
            return
        hole = min(os.lseek(fd, data, os.SEEK_HOLE), end)
        yield data, hole - data
        offset = hole


def copy_range(
    src_fd: int, dst_fd: int, src_offset: int, dst_offset: int, length: int, on_progress: Progress | None = None
) -> None:
    """Copy in the kernel (copy_file_range, which reflinks where the file system can), skipping holes so a
    sparse source stays sparse, and falling back to read/write where the kernel refuses. `on_progress` gets
    the fraction done."""
    use_kernel = True
    for segment_offset, segment_length in data_segments(src_fd, src_offset, length):
        done = 0
        while done < segment_length:
            count = min(64 * 1024 * 1024, segment_length - done)
            src_at = segment_offset + done
            dst_at = dst_offset + (src_at - src_offset)
            n = 0
            if use_kernel:
                try:
                    n = os.copy_file_range(src_fd, dst_fd, count, src_at, dst_at)
                except OSError as e:
                    if e.errno not in _NO_KERNEL_COPY:
                        raise  # a full file system (ENOSPC, EDQUOT, EFBIG) or an I/O error: not the kernel's refusal
                    use_kernel = False
            if not use_kernel:
                data = os.pread(src_fd, count, src_at)
                if data:
                    pwrite_all(dst_fd, data, dst_at)
                n = len(data)
            if n <= 0:
                raise InputError("the source ended early while copying; it changed or is truncated")
            done += n
            if on_progress is not None:
                on_progress((src_at + n - src_offset) / length)
    # A trailing hole leaves the destination short: give it its full length.
    if os.fstat(dst_fd).st_size < dst_offset + length:
        os.ftruncate(dst_fd, dst_offset + length)


def copy_file_range_from(
    source: Path, dst_fd: int, src_offset: int, dst_offset: int, length: int, on_progress: Progress | None = None
) -> None:
    """copy_range from a file given by its path, opened read-only for the copy."""
    src_fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        copy_range(src_fd, dst_fd, src_offset, dst_offset, length, on_progress)
    finally:
        os.close(src_fd)


def write_stream_sparse(
    stream: BinaryIO,
    out_fd: int,
    out_offset: int,
    *,
    limit: int,
    too_large: Callable[[int], Exception],
    after_first_chunk: Callable[[], int] | None = None,
    digester: Digester | None = None,
) -> int:
    """Write what `stream` reads into `out_fd` at `out_offset`, leaving runs of zeroes as holes (a stream of
    zeroes costs no disk), and return the bytes written. Past `limit` bytes it raises `too_large(limit)`.
    Once the first STREAM_CHUNK bytes (or all, if fewer) are in place, `after_first_chunk` may check them
    and return a tighter limit: what the disk's own header says it can need. `digester` is fed every byte,
    the zeroes left as holes included: they are what a reader of the file gets."""
    copied = 0
    with contextlib.closing(_chunks(stream)) as chunks:  # closed here, on an error too: its thread is joined
        for chunk in chunks:
            if copied + len(chunk) > limit:
                raise too_large(limit)
            _write_data(out_fd, chunk, out_offset + copied)
            if digester is not None:
                digester.update(chunk, held=True)  # _chunks leaves it alone until the next chunk is done
            copied += len(chunk)
            if after_first_chunk is not None and copied >= STREAM_CHUNK:
                limit = min(limit, _checked(out_fd, out_offset + copied, after_first_chunk))
                after_first_chunk = None
                if copied > limit:
                    raise too_large(limit)
    if os.fstat(out_fd).st_size < out_offset + copied:
        os.ftruncate(out_fd, out_offset + copied)
    if after_first_chunk is not None:
        _checked(out_fd, out_offset + copied, after_first_chunk)
    return copied


def _chunks(stream: BinaryIO) -> Generator[bytes | bytearray, None, None]:
    """What `stream` reads, STREAM_CHUNK at a time. A stream that reads into a buffer (every decoder does) is
    read ahead in a thread of its own, into a few buffers used in turn: the decoders let go of the interpreter,
    so the next chunk is decoded while this one is written (a zstd disk into tmpfs: 0.37 s against 0.5-0.65 s),
    and reusing the buffers spares the thousand page faults a fresh 4 MiB one costs. The decoder's error is
    raised here, as itself; the thread is stopped and joined however the caller stops reading (close it)."""
    readinto = getattr(stream, "readinto", None)
    if readinto is None:
        while chunk := stream.read(STREAM_CHUNK):
            yield chunk
        return
    free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
    held: bytearray | None = None  # the chunk before the one yielded: a digester may still be hashing it
    filled: queue.SimpleQueue[tuple[bytearray, int] | BaseException] = queue.SimpleQueue()
    for _ in range(READ_AHEAD_BUFFERS):
        free.put(bytearray(STREAM_CHUNK))
    stop = threading.Event()

    def decode() -> None:
        try:
            while not stop.is_set():
                buffer = free.get()
                if stop.is_set():
                    return
                n = readinto(buffer)
                filled.put((buffer, n))
                if not n:
                    return
        except BaseException as e:  # handed to the reader, which raises it
            filled.put(e)

    thread = threading.Thread(target=decode, name="imagepack-decoder", daemon=True)
    thread.start()
    try:
        while True:
            item = filled.get()
            if isinstance(item, BaseException):
                raise item
            buffer, n = item
            if not n:
                return
            yield buffer if n == len(buffer) else buffer[:n]
            if held is not None:
                free.put(held)  # written, and hashed: the caller has gone on past another chunk since
            held = buffer
    finally:
        stop.set()
        free.put(bytearray())  # wakes the decoder if it waits for a buffer
        thread.join()


def _write_data(out_fd: int, chunk: bytes | bytearray, at: int) -> None:
    """Write the blocks of `chunk` that hold data, each run of them in one write; zero blocks stay holes."""
    if len(chunk) <= len(_ZERO_CHUNK) and chunk == _ZERO_CHUNK[: len(chunk)]:  # a compare stops at the first data
        return
    if _ZEROS not in chunk:  # no block of zeroes at any offset (a search in C): all data, one write
        pwrite_all(out_fd, chunk, at)
        return
    view = memoryview(chunk)  # slices of it are not copies
    start: int | None = None  # where the current run of data blocks began
    for offset in range(0, len(chunk), HOLE_BLOCK):
        zero = view[offset : offset + HOLE_BLOCK] == _ZEROS[: min(HOLE_BLOCK, len(chunk) - offset)]
        if zero and start is not None:
            pwrite_all(out_fd, view[start:offset], at + start)
            start = None
        elif not zero and start is None:
            start = offset
    if start is not None:
        pwrite_all(out_fd, view[start:], at + start)


def _checked(out_fd: int, end: int, check: Callable[[], int]) -> int:
    # A trailing run of zeroes is still a hole: give the file its length so the check sees every byte so far.
    if os.fstat(out_fd).st_size < end:
        os.ftruncate(out_fd, end)
    return check()
