"""Reading xz files. `xz -T` (and every multi-threaded encoder) cuts the stream into independent blocks and
lists them in the index at the end of each stream; a single-threaded decoder reads them one after another,
which makes xz the slowest step of converting a `.raw.xz` by far. ParallelXzReader decodes each block as a
stream of its own (the file's stream header, the block, an index of that one block and a footer), so liblzma
still checks the block's own check (CRC64, SHA-256...) and its sizes against the index; the file's index,
headers and footers are checked here first. Python's lzma lets go of the interpreter while it decodes, so the
threads run in parallel.

Anything this walk does not take to be a whole, well-formed file (a single block, a block too large to hold in
memory a few times over or declaring a dictionary larger than it needs, a file cut short, bytes after a stream
that are not padding) is left to the sequential reader (multistream.py), which reads it or says what is wrong."""

from __future__ import annotations

import lzma
import os
import struct
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from imagepack.compression.liblzma import BufferDecoder, buffer_decoder
from imagepack.core.progress import Progress
from imagepack.core.signals import leave_to_main_thread

HEADER_MAGIC = b"\xfd7zXZ\x00"
FOOTER_MAGIC = b"YZ"
MAX_PARALLEL_BLOCK = 64 * 1024**2  # a larger block (xz -9's are 192 MiB) is decoded by the sequential decoder
AHEAD_BYTES = 256 * 1024**2  # decoded blocks held ahead of the reader, at most
MAX_THREADS = 16  # past this, writing the output is the slower side; each thread holds a dictionary of its own
MAX_INDEX = 8 * 1024**2  # an index larger than this is left to the sequential decoder
MAX_BLOCKS = 2**18  # in all streams: 768 GiB in xz -T0 -1's 3 MiB blocks; a file of more is decoded in sequence
MAX_STREAMS = 2**16
MAX_PARALLEL_DICTIONARY = 2 * MAX_PARALLEL_BLOCK  # a block declaring more is decoded by the sequential decoder
PARALLEL_MEMLIMIT = MAX_PARALLEL_DICTIONARY + 16 * 1024**2  # the dictionary, and what the decoder holds beside it
MAX_BLOCK_HEADER = 1024
LZMA2 = 0x21
MAX_PADDING = 1024**2  # of zero bytes after a stream; encoders write none, or a few
KNOWN_CHECKS = (0, 1, 4, 10)  # none, CRC32, CRC64, SHA-256: the others are reserved, and liblzma skips them
_CHECK_SIZES = (0, 4, 4, 4, 8, 8, 8, 16, 16, 16, 32, 32, 32, 64, 64, 64)  # by the check's ID, per the format


@dataclass(frozen=True)
class Block:
    offset: int  # of its header in the file
    unpadded: int  # header, compressed data and check, without the padding
    size: int  # the uncompressed size the index records
    header: bytes  # the stream header of the stream it belongs to
    flags: bytes  # that stream's flags (for the footer of the one-block stream it is decoded as)


class NotParallel(Exception):
    """The file is not one the parallel decoder takes; the sequential one reads it."""


def xz_blocks(fd: int) -> list[Block]:
    """The blocks of every stream in the xz file `fd`, in order, from the indexes; raises NotParallel when the
    file is not a whole, well-formed xz file of several blocks, each small enough."""
    blocks = all_blocks(fd)
    if len(blocks) < 2 or max(block.size for block in blocks) > MAX_PARALLEL_BLOCK:
        raise NotParallel("too few or too large blocks to share out")
    # Each thread's decoder holds the dictionary its block declares, whatever the block's size.
    if any((block_dictionary(fd, block.offset) or 0) > MAX_PARALLEL_DICTIONARY for block in blocks):
        raise NotParallel("a block declares a larger dictionary than is worth holding in every thread")
    return blocks


def all_blocks(fd: int) -> list[Block]:
    """The blocks of every stream in the xz file `fd`, in order, from the indexes; raises NotParallel when the
    file is not a whole, well-formed xz file."""
    return [block for stream in reversed(_walk(fd)) for block in stream]


def block_dictionary(fd: int, offset: int) -> int | None:
    """The LZMA2 dictionary size the block header at `offset` declares (what decoding the block holds in
    memory), or None when the header is not well-formed or declares no LZMA2 filter."""
    head = os.pread(fd, MAX_BLOCK_HEADER, offset)
    if not head or head[0] == 0 or len(head) < (head[0] + 1) * 4:
        return None
    header = head[: (head[0] + 1) * 4]
    if crc32_le(header[:-4]) != header[-4:]:
        return None
    flags, at = header[1], 2
    try:
        for present in (flags & 0x40, flags & 0x80):  # the compressed and the uncompressed size
            if present:
                at = _varint(header, at)[1]
        for _ in range((flags & 3) + 1):
            filter_id, at = _varint(header, at)
            props_size, at = _varint(header, at)
            props, at = header[at : at + props_size], at + props_size
            if filter_id == LZMA2 and props_size == 1 and props[0] <= 40:
                return 0xFFFFFFFF if props[0] == 40 else (2 | props[0] & 1) << (props[0] // 2 + 11)
    except NotParallel:
        return None
    return None


def total_size(fd: int) -> int | None:
    """The uncompressed size an xz file's indexes record, when the file is well-formed enough to walk."""
    try:
        return sum(block.size for stream in _walk(fd) for block in stream)
    except NotParallel:
        return None


def _walk(fd: int) -> list[list[Block]]:
    """Every stream's blocks, the last stream first, walking back from the end of the file: its padding, its
    footer, its index, its header. Bounded for a hostile file: MAX_BLOCKS blocks, MAX_STREAMS streams and
    MAX_PADDING bytes of padding in all, each read in one piece."""
    end = os.fstat(fd).st_size
    streams: list[list[Block]] = []
    count = 0
    while end > 0:  # the first stream begins at 0
        end = _skip_padding(fd, end)
        if end == 0:
            raise NotParallel("zero bytes before the first stream")
        if len(streams) == MAX_STREAMS:
            raise NotParallel("too many streams")
        blocks, end = _stream_ending_at(fd, end, MAX_BLOCKS - count)
        count += len(blocks)
        streams.append(blocks)
    return streams


def _skip_padding(fd: int, end: int) -> int:
    """Stream padding: groups of four zero bytes after a stream, MAX_PADDING at most."""
    tail = os.pread(fd, min(end, MAX_PADDING + 4), max(0, end - MAX_PADDING - 4))
    zeros = len(tail) - len(tail.rstrip(b"\0"))
    if zeros > MAX_PADDING:
        raise NotParallel("more stream padding than any encoder writes")
    return end - zeros // 4 * 4


def _stream_ending_at(fd: int, end: int, most: int) -> tuple[list[Block], int]:
    """The blocks of the stream whose footer ends at `end` (`most` of them at the most), and where that stream
    begins."""
    if end < 24 or end % 4:
        raise NotParallel("no stream footer")
    footer = os.pread(fd, 12, end - 12)
    crc, backward, flags, magic = footer[:4], footer[4:8], footer[8:10], footer[10:]
    if magic != FOOTER_MAGIC or crc32_le(backward + flags) != crc or flags[0] != 0 or flags[1] not in KNOWN_CHECKS:
        raise NotParallel("no valid stream footer, or a check liblzma does not verify")
    index_size = (struct.unpack("<I", backward)[0] + 1) * 4
    index_at = end - 12 - index_size
    if index_size > MAX_INDEX or index_at < 12:
        raise NotParallel("the index is too large or out of the file")
    index = os.pread(fd, index_size, index_at)
    records = _records(index, most)
    blocks_size = sum(padded(unpadded) for unpadded, _ in records)
    start = index_at - blocks_size - 12
    if start < 0:
        raise NotParallel("the index lists more than the file holds")
    header = os.pread(fd, 12, start)
    if header[:6] != HEADER_MAGIC or header[6:8] != flags or crc32_le(header[6:8]) != header[8:12]:
        raise NotParallel("no stream header where the index says the stream begins")
    check = _CHECK_SIZES[flags[1]]
    blocks = []
    offset = start + 12
    for unpadded, size in records:
        # At least a block header (8 bytes), LZMA2's end marker and the check; at most what LZMA2 writes for
        # data it cannot compress (3 bytes per 64 KiB chunk) and the largest header: no more is read for it.
        if not 9 + check <= unpadded <= size + size // 1024 + 4096:
            raise NotParallel("a block's compressed size does not fit its size")
        blocks.append(Block(offset, unpadded, size, header, flags))
        offset += padded(unpadded)
    return blocks, start


def _records(index: bytes, most: int) -> list[tuple[int, int]]:
    """The (unpadded size, uncompressed size) records of an index (`most` of them at the most), checked against
    its CRC32."""
    if index[0] != 0 or crc32_le(index[:-4]) != index[-4:]:
        raise NotParallel("the index is damaged")
    count, at = _varint(index, 1)
    if count > len(index) // 2 or count > most:  # each record takes at least two bytes
        raise NotParallel("the index claims more records than it holds, or than are worth sharing out")
    records = []
    for _ in range(count):
        unpadded, at = _varint(index, at)
        size, at = _varint(index, at)
        records.append((unpadded, size))
    if padded(at) != len(index) - 4 or any(index[at:-4]):
        raise NotParallel("the index's padding is wrong")
    return records


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """xz's multibyte integer: seven bits a byte, least significant first, at most nine bytes."""
    value = 0
    for i in range(9):
        if at + i >= len(data) - 4:
            break
        byte = data[at + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i:
                break  # not the shortest form, which the format requires
            return value, at + i + 1
    raise NotParallel("a malformed number in the index")


def padded(n: int) -> int:
    return (n + 3) & ~3


def crc32_le(data: bytes) -> bytes:
    return struct.pack("<I", zlib.crc32(data))


def encode_varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def one_block_stream(fd: int, block: Block) -> bytearray:
    """The block as a .xz stream of its own: its stream's header, the block, an index of that one block (so that
    liblzma checks the block's sizes against it) and a footer; the block is read into its place, not copied."""
    index = b"\0" + encode_varint(1) + encode_varint(block.unpadded) + encode_varint(block.size)
    index += bytes(padded(len(index)) - len(index))
    index += crc32_le(index)
    backward = struct.pack("<I", len(index) // 4 - 1)
    footer = crc32_le(backward + block.flags) + backward + block.flags + FOOTER_MAGIC
    start, end = len(block.header), len(block.header) + padded(block.unpadded)
    stream = bytearray(end + len(index) + len(footer))
    stream[:start] = block.header
    stream[end:] = index + footer
    view = memoryview(stream)
    while start < end:
        got = os.preadv(fd, [view[start:end]], block.offset + start - len(block.header))
        if not got:
            raise EOFError("the file ends inside a block")
        start += got
    return stream


def decode_block(fd: int, block: Block) -> bytes:
    """One block, decoded by Python's lzma; raises lzma.LZMAError when the block's data, check or sizes are wrong,
    or EOFError when it is cut short."""
    decoder = lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=PARALLEL_MEMLIMIT)
    # One byte more than the index says: a block that would decode to more (a bomb whose header states no
    # size) stops there, and is refused, rather than filling memory first.
    out = decoder.decompress(one_block_stream(fd, block), max_length=block.size + 1)
    if len(out) != block.size:
        raise lzma.LZMAError(f"a block decodes to more or fewer bytes than the index says ({block.size})")
    if not decoder.eof:
        raise EOFError("a block ends before its end")
    return out


def decode_block_into(fd: int, block: Block, out: bytearray, decoder: BufferDecoder) -> memoryview:
    """One block, decoded by liblzma into the start of `out` (no more than the index says is ever written: a bomb
    stops there); the same errors as `decode_block`."""
    if decoder(one_block_stream(fd, block), PARALLEL_MEMLIMIT, out, block.size) != block.size:
        raise lzma.LZMAError(f"a block decodes to more or fewer bytes than the index says ({block.size})")
    return memoryview(out)[: block.size]


class ParallelXzReader:
    """The content of an xz file's blocks, read forward, decoded `threads` blocks at a time ahead of the reader.
    Where liblzma can be loaded, each block is decoded into a buffer of its own that is used again for a later
    block once the reader has gone past it, so decoding costs no fresh memory after the first few blocks.
    `readinto` fills the caller's buffer across blocks; `read` returns a copy of at most one block's bytes
    (fewer than asked is not the end; b"" is)."""

    def __init__(self, fd: int, blocks: list[Block], threads: int, on_progress: Progress | None = None) -> None:
        self.fd = fd
        self.blocks = blocks
        # Blocks cost unevenly (a block of zeroes decodes at once, one of random bytes slowly), but one block
        # more than threads keeps every thread busy: a wider window decoded no faster (1 GiB in 24 MiB blocks on
        # 2 cores: 6.1-6.4 s at one to four more) and holds a buffer more for each block. It holds AHEAD_BYTES at
        # most, and a thread needs a block of it to decode while the reader takes another.
        self.largest = max(max(block.size for block in blocks), 1)
        self.ahead = min(threads + 1, max(2, AHEAD_BYTES // self.largest))
        threads = min(threads, MAX_THREADS, self.ahead - 1)
        self.pool = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="imagepack-xz", initializer=leave_to_main_thread
        )
        self.decoder = buffer_decoder()
        self.free: list[bytearray] = []  # buffers of blocks the reader has gone past
        self.pending: deque[tuple[Block, bytearray | None, Future[bytes | memoryview]]] = deque()
        self.queued = 0
        self.current: bytes | memoryview = b""
        self.buffer: bytearray | None = None  # the buffer `current` is in, when it is one of ours
        self.at = 0
        self.size = max(os.fstat(fd).st_size, 1)
        self.on_progress: Callable[[float], None] | None = on_progress

    def _fill(self) -> None:
        while len(self.pending) < self.ahead and self.queued < len(self.blocks):
            block = self.blocks[self.queued]
            if self.decoder is None:
                self.pending.append((block, None, self.pool.submit(decode_block, self.fd, block)))
            else:
                buffer = self.free.pop() if self.free else bytearray(self.largest)
                job: Future[bytes | memoryview] = self.pool.submit(
                    decode_block_into, self.fd, block, buffer, self.decoder
                )
                self.pending.append((block, buffer, job))
            self.queued += 1

    def _next_block(self) -> bool:
        """Go on to the next block, handing the buffer of this one to a block still to decode; False at the end."""
        self.current, self.at = b"", 0
        if self.buffer is not None:
            self.free.append(self.buffer)
            self.buffer = None
        self._fill()
        if not self.pending:
            return False
        block, buffer, future = self.pending.popleft()
        self.current = future.result()
        self.buffer = buffer
        self._fill()
        if self.on_progress is not None:
            self.on_progress(min((block.offset + block.unpadded) / self.size, 1.0))
        return True

    def readinto(self, b: bytearray | memoryview) -> int:
        out = memoryview(b).cast("B")
        filled = 0
        while filled < len(out):
            if self.at >= len(self.current) and not self._next_block():
                break
            n = min(len(out) - filled, len(self.current) - self.at)
            out[filled : filled + n] = self.current[self.at : self.at + n]
            filled += n
            self.at += n
        return filled

    def read(self, n: int = -1) -> bytes:
        while self.at >= len(self.current):
            if not self._next_block():
                return b""
        stop = len(self.current) if n < 0 else min(self.at + n, len(self.current))
        data = bytes(self.current[self.at : stop])
        self.at = stop
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        """Stop: blocks not started are dropped, those being decoded are waited for (each takes a moment)."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.pending.clear()
        self.free.clear()
        self.current, self.buffer = b"", None

    def __enter__(self) -> ParallelXzReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
