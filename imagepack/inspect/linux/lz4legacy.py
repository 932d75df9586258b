"""The LZ4 legacy frame the kernel unpacks an initramfs from (`lz4 -l`), decoded in Python with every block's
output bounded: no LZ4 library is a dependency, and an initramfs is the only place this format appears."""

from __future__ import annotations

import re
from collections.abc import Iterator

MAGIC = b"\x02\x21\x4c\x18"
BLOCK_OUTPUT = 8 * 1024 * 1024  # the legacy format's fixed block size: no block decodes to more


RUN_OF_255 = re.compile(b"\xff+")


class Lz4Error(ValueError):
    pass


class Lz4Legacy:
    """Decodes the legacy frames at the start of `data`; `consumed` says where they ended once exhausted."""

    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.consumed = 0

    def chunks(self) -> Iterator[bytes]:
        data, at = self.data, 0
        if bytes(data[:4]) != MAGIC:
            raise Lz4Error("not an LZ4 legacy frame")
        at = 4
        while at + 4 <= len(data):
            size = int.from_bytes(data[at : at + 4], "little")
            if bytes(data[at : at + 4]) == MAGIC:  # another legacy frame follows
                at += 4
                continue
            if size == 0 or size > len(data) - at - 4 or size > BLOCK_OUTPUT + BLOCK_OUTPUT // 255 + 16:
                break  # not a block: the frame ended here (the kernel stops the same way)
            yield decode_block(data[at + 4 : at + 4 + size], BLOCK_OUTPUT)
            at += 4 + size
        self.consumed = at


def decode_block(view: memoryview, most: int) -> bytes:
    """One LZ4 block, refusing to produce more than `most` bytes."""
    block = bytes(view)
    out = bytearray()
    size = 0  # len(out), kept by hand: this loop runs once per sequence
    at, end = 0, len(block)
    while at < end:
        token = block[at]
        at += 1
        literals = token >> 4
        if literals == 15:
            literals, at = _length(block, at, literals)
        if at + literals > end or size + literals > most:
            raise Lz4Error("a literal run goes past the block or its output bound")
        out += block[at : at + literals]
        at += literals
        size += literals
        if at >= end:
            break  # the last sequence has literals only
        if at + 2 > end:
            raise Lz4Error("a match offset is cut off")
        offset = block[at] | block[at + 1] << 8
        at += 2
        length = token & 15
        if length == 15:
            length, at = _length(block, at, length)
        length += 4
        if offset == 0 or offset > size or size + length > most:
            raise Lz4Error("a match refers to bytes before the block's output or goes past its bound")
        start = size - offset
        if offset >= length:
            out += out[start : start + length]
        else:  # an overlapping copy repeats the last `offset` bytes
            out += (out[start:] * (length // offset + 1))[:length]
        size += length
    return bytes(out)


def _length(block: bytes, at: int, length: int) -> tuple[int, int]:
    """A length continued in bytes of 255 up to one below it (a run of 255s is counted in one step)."""
    run = RUN_OF_255.match(block, at)
    count = run.end() - at if run else 0
    at += count
    if at >= len(block):
        raise Lz4Error("a length is cut off")
    return length + 255 * count + block[at], at + 1
