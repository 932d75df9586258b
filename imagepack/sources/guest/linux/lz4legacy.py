"""The LZ4 legacy frame the kernel unpacks an initramfs from (`lz4 -l`): 4-byte block sizes after the magic, each
block decoded by the lz4 library (lz4.block) into at most the format's fixed 8 MiB, so no block can expand past
its bound."""

from __future__ import annotations

from collections.abc import Iterator

import lz4.block  # type: ignore[import-untyped]

MAGIC = b"\x02\x21\x4c\x18"
BLOCK_OUTPUT = 8 * 1024 * 1024  # the legacy format's fixed block size: no block decodes to more
BLOCK_INPUT = BLOCK_OUTPUT + BLOCK_OUTPUT // 255 + 16  # LZ4_compressBound of a block: none is larger


class Lz4Error(ValueError):
    pass


class Lz4Legacy:
    """Decodes the legacy frames at the start of `data`; `consumed` says where they ended once exhausted."""

    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.consumed = 0

    def chunks(self) -> Iterator[bytes]:
        data = self.data
        if bytes(data[:4]) != MAGIC:
            raise Lz4Error("not an LZ4 legacy frame")
        at = 4
        while at + 4 <= len(data):
            size = int.from_bytes(data[at : at + 4], "little")
            if bytes(data[at : at + 4]) == MAGIC:  # another legacy frame follows
                at += 4
                continue
            if size == 0 or size > len(data) - at - 4 or size > BLOCK_INPUT:
                break  # not a block: the frame ended here (the kernel stops the same way)
            yield decode_block(data[at + 4 : at + 4 + size], BLOCK_OUTPUT)
            at += 4 + size
        self.consumed = at


def decode_block(view: memoryview, most: int) -> bytes:
    """One LZ4 block, refusing to produce more than `most` bytes (or to refer before its own output)."""
    try:
        data: bytes = lz4.block.decompress(bytes(view), uncompressed_size=most)
    except lz4.block.LZ4BlockError as e:
        raise Lz4Error(f"a block cannot be decoded within {most} bytes: {e}") from None
    return data
