"""xz files put together by hand, per the .xz file format, for the cases no encoder writes: an index that lies,
blocks that are holes, more records than anyone would share out. Independent of imagepack's own reader."""

from __future__ import annotations

import lzma
import struct
import zlib
from collections.abc import Iterable

CHECK_CRC64 = 4


def crc(data: bytes) -> bytes:
    return struct.pack("<I", zlib.crc32(data))


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def stream_header(check: int = CHECK_CRC64) -> bytes:
    flags = bytes([0, check])
    return b"\xfd7zXZ\x00" + flags + crc(flags)


def index(records: list[tuple[int, int]]) -> bytes:
    """An index of (unpadded size, uncompressed size) records, padded, with its CRC32."""
    body = padded(b"\0" + varint(len(records)) + b"".join(varint(u) + varint(s) for u, s in records))
    return body + crc(body)


def stream_footer(index_bytes: bytes, check: int = CHECK_CRC64) -> bytes:
    flags = bytes([0, check])
    backward = struct.pack("<I", len(index_bytes) // 4 - 1)
    return crc(backward + flags) + backward + flags + b"YZ"


def one_block(pieces: Iterable[bytes], *, preset: int = 0, check: int = CHECK_CRC64) -> tuple[bytes, int, int]:
    """(the block's bytes with its padding, its unpadded size, its uncompressed size) of `pieces` joined, as
    liblzma writes it in a one-block stream (its header states no sizes)."""
    encoder = lzma.LZMACompressor(format=lzma.FORMAT_XZ, check=check, preset=preset)
    whole = b"".join([*(encoder.compress(piece) for piece in pieces), encoder.flush()])
    index_size = (struct.unpack("<I", whole[-8:-4])[0] + 1) * 4
    block = whole[12 : -12 - index_size]
    records = whole[-12 - index_size : -12]
    unpadded, at = read_varint(records, 2)  # after the indicator and the count (1)
    size, _ = read_varint(records, at)
    return block, unpadded, size


def read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at += 1
        shift += 7
        if not byte & 0x80:
            return value, at


def stream(blocks: list[bytes], records: list[tuple[int, int]], *, check: int = CHECK_CRC64) -> bytes:
    """A stream of these blocks (each with its padding) and an index of these records, true or not; `check`
    the check ID its header and footer state."""
    listed = index(records)
    return stream_header(check) + b"".join(blocks) + listed + stream_footer(listed, check)
