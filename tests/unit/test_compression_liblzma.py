"""liblzma's one-call decoder, which the parallel xz reader decodes each block with into a buffer it uses again:
the same bytes as Python's lzma module (and `xz -dc`) gives, every error Python's decoder raises raised here too,
and never a byte written past what the index says the block holds, however much the block would decode to."""

from __future__ import annotations

import lzma
import os
import subprocess
from pathlib import Path

import pytest

from imagepack.compression.liblzma import BufferDecoder, buffer_decoder
from imagepack.compression.xzblocks import ParallelXzReader, decode_block, decode_block_into, xz_blocks

MiB = 1024**2


@pytest.fixture(scope="module")
def decoder() -> BufferDecoder:
    found = buffer_decoder()
    assert found is not None, "liblzma.so.5 could not be loaded: the parallel xz reader would fall back"
    return found


@pytest.fixture(scope="module")
def content() -> bytes:
    """Text that compresses, random bytes that do not, and zeroes: 3 MiB."""
    text = b"".join(b"line %d of a guest's log, nothing to see\n" % i for i in range(40000))
    return text[:MiB] + os.urandom(MiB) + bytes(MiB)


@pytest.fixture(scope="module")
def xz_file(content: bytes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`content` as xz -T2 writes it, in 256 KiB blocks."""
    path = tmp_path_factory.mktemp("liblzma") / "disk.raw.xz"
    done = subprocess.run(["xz", "-T2", "--block-size=256KiB", "-c"], input=content, capture_output=True, check=True)
    path.write_bytes(done.stdout)
    return path


def test_a_stream_decodes_to_what_pythons_lzma_gives(decoder: BufferDecoder, content: bytes) -> None:
    stream = bytearray(lzma.compress(content, check=lzma.CHECK_SHA256))
    out = bytearray(len(content) + 100)
    assert decoder(stream, 64 * MiB, out, len(content)) == len(content)
    assert out[: len(content)] == content and out[len(content) :] == bytes(100)


def test_each_block_decodes_into_a_buffer_as_pythons_lzma_decodes_it(
    decoder: BufferDecoder, xz_file: Path, content: bytes
) -> None:
    fd = os.open(xz_file, os.O_RDONLY)
    try:
        blocks = xz_blocks(fd)
        assert len(blocks) == 12
        buffer = bytearray(max(block.size for block in blocks))  # one buffer, used again for every block
        joined = b"".join(bytes(decode_block_into(fd, block, buffer, decoder)) for block in blocks)
        assert joined == b"".join(decode_block(fd, block) for block in blocks) == content
    finally:
        os.close(fd)


@pytest.mark.parametrize("piece", [1, 4096, 1000003, 4 * MiB])
@pytest.mark.parametrize("into", ["liblzma", "python"])
def test_the_reader_fills_any_buffer_across_blocks(xz_file: Path, content: bytes, piece: int, into: str) -> None:
    """Through liblzma into buffers used again, and through Python's lzma where liblzma cannot be loaded."""
    fd = os.open(xz_file, os.O_RDONLY)
    try:
        with ParallelXzReader(fd, xz_blocks(fd), threads=2) as reader:
            if into == "python":
                reader.decoder = None  # as buffer_decoder() leaves it without liblzma; nothing is queued yet
            buffer, got = bytearray(piece), bytearray()
            while n := reader.readinto(buffer):
                assert n == piece or len(got) + n == len(content)  # only the last fill is short
                got += buffer[:n]
        assert got == content
    finally:
        os.close(fd)


def test_a_stream_that_decodes_to_more_than_asked_stops_there(decoder: BufferDecoder) -> None:
    """A bomb: 64 MiB of zeroes that the caller expects to be 1 MiB. Not a byte is written past the 1 MiB."""
    stream = bytearray(lzma.compress(bytes(64 * MiB)))
    out = bytearray(b"\xaa" * (2 * MiB))
    with pytest.raises(lzma.LZMAError, match="or decodes to more than the 1048576 bytes it should"):
        decoder(stream, 64 * MiB, out, MiB)
    assert out[:MiB] == bytes(MiB) and out[MiB:] == b"\xaa" * MiB


def test_damage_a_cut_and_a_memory_limit_are_refused_as_pythons_lzma_refuses_them(decoder: BufferDecoder) -> None:
    data = os.urandom(100000) + bytes(100000)
    whole = lzma.compress(data)
    out = bytearray(len(data))
    damaged = bytearray(whole)
    damaged[len(whole) // 3] ^= 0x40
    with pytest.raises(lzma.LZMAError, match="Corrupt input data"):
        decoder(damaged, 64 * MiB, out, len(data))
    with pytest.raises(lzma.LZMAError):
        lzma.decompress(bytes(damaged))  # Python's decoder agrees
    with pytest.raises(lzma.LZMAError, match="ends before its end"):
        decoder(bytearray(whole[: len(whole) // 2]), 64 * MiB, out, len(data))
    with pytest.raises(lzma.LZMAError, match="ended before the end-of-stream marker"):
        lzma.decompress(whole[: len(whole) // 2])
    with pytest.raises(lzma.LZMAError, match="Memory usage limit was reached"):
        decoder(bytearray(whole), 4096, out, len(data))  # preset 6 declares an 8 MiB dictionary
    with pytest.raises(lzma.LZMAError, match="Input format not supported"):
        decoder(bytearray(b"not an xz stream at all" * 10), 64 * MiB, out, len(data))
