"""An xz file of several blocks (what `xz -T` writes) is decoded on several threads: the same bytes as `xz -dc`
gives, its damage found as the sequential decoder finds it, its index's total taken as the content size, and an
interrupted decode leaves nothing."""

from __future__ import annotations

import json
import lzma
import os
import resource
import signal
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from imagepack.compression.xzblocks import MAX_BLOCKS, NotParallel, xz_blocks
from tests.conftest import file_digest, interrupt_when, leftovers, run_cli
from tests.readers import qemu_compare, read_guest_disk
from tests.unit.test_formats_detect import one_error_line
from tests.xzbytes import index, one_block, stream, stream_footer, stream_header

BLOCK = 256 * 1024
MiB = 1024**2


def xz_in_blocks(source: Path, out: Path, *, block: int = BLOCK) -> Path:
    with open(out, "wb") as f:
        subprocess.run(["xz", "-T2", f"--block-size={block}", "-c", str(source)], stdout=f, check=True)
    return out


def listed(path: Path) -> tuple[int, int]:
    """(blocks, uncompressed bytes) as xz itself lists the file."""
    totals = subprocess.run(["xz", "--robot", "-l", str(path)], capture_output=True, text=True, check=True)
    fields = next(line for line in totals.stdout.splitlines() if line.startswith("totals")).split("\t")
    return int(fields[2]), int(fields[4])


def blocks_found(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        return len(xz_blocks(fd))
    finally:
        os.close(fd)


def xz_dc(path: Path) -> str:
    """The SHA-256 of what `xz -dc` writes."""
    done = subprocess.run(f"xz -dc '{path}' | sha256sum", shell=True, capture_output=True, text=True, check=True)
    return done.stdout.split()[0]


def test_a_multi_block_xz_disk_converts_to_the_same_guest_disk(sample_raw: Path, tmp_path: Path) -> None:
    source = xz_in_blocks(sample_raw, tmp_path / "disk.raw.xz")
    count, size = listed(source)
    assert count > 4 and blocks_found(source) == count  # the walk agrees with xz's own list
    before = file_digest(source)
    target = tmp_path / "out.qcow2"
    done = run_cli("convert", str(source), str(target))
    assert done.returncode == 0, done.stderr
    assert qemu_compare(sample_raw, "raw", target, "qcow2").returncode == 0
    assert read_guest_disk(target, "qcow2") == read_guest_disk(sample_raw, "raw")
    assert file_digest(source) == before and leftovers(tmp_path) == []
    info = json.loads(run_cli("info", "--json", str(source)).stdout)
    assert info["virtual_size"] == size == sample_raw.stat().st_size  # the index says how large the disk is


def test_concatenated_streams_with_padding_decompress_to_what_xz_gives(sample_raw: Path, tmp_path: Path) -> None:
    first = xz_in_blocks(sample_raw, tmp_path / "a.xz")
    second = xz_in_blocks(sample_raw, tmp_path / "b.xz", block=100_000)  # blocks of another size
    joined = tmp_path / "joined.raw.xz"
    joined.write_bytes(first.read_bytes() + bytes(8) + second.read_bytes() + bytes(4))  # stream padding
    assert blocks_found(joined) == listed(first)[0] + listed(second)[0]
    out = tmp_path / "joined.raw"
    done = run_cli("decompress", str(joined), str(out))
    assert done.returncode == 0, done.stderr
    assert file_digest(out)[0] == xz_dc(joined)
    assert out.stat().st_size == 2 * sample_raw.stat().st_size


def test_a_single_block_file_is_left_to_the_sequential_decoder(sample_raw: Path, tmp_path: Path) -> None:
    source = tmp_path / "disk.raw.xz"
    with open(source, "wb") as f:
        subprocess.run(["xz", "-T1", "-c", str(sample_raw)], stdout=f, check=True)
    assert listed(source)[0] == 1
    with pytest.raises(NotParallel):
        blocks_found(source)
    out = tmp_path / "back.raw"
    assert run_cli("decompress", str(source), str(out)).returncode == 0
    assert file_digest(out)[0] == file_digest(sample_raw)[0]


def damage_a_block(path: Path) -> None:
    """Flip a byte in the middle of the compressed data of one block past the first few."""
    fd = os.open(path, os.O_RDWR)
    try:
        blocks = xz_blocks(fd)
        target = max(blocks[3:], key=lambda b: b.unpadded)  # a block with data, not one of zeroes
        at = target.offset + target.unpadded // 2
        os.pwrite(fd, bytes([os.pread(fd, 1, at)[0] ^ 0x55]), at)
    finally:
        os.close(fd)


def flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def lie_in_the_index(path: Path) -> None:
    """Make the last stream's index record one byte less for a block's uncompressed size, with a right CRC32:
    only decoding the block shows the lie."""
    data = bytearray(path.read_bytes())
    index_size = (struct.unpack("<I", data[-8:-4])[0] + 1) * 4
    start = len(data) - 12 - index_size
    record = bytes([0x80, 0x80, 0x10])  # BLOCK (256 KiB) as xz's multibyte integer
    at = data.index(record, start)
    data[at : at + 3] = bytes([0xFF, 0xFF, 0x0F])  # 256 KiB - 1, the same length
    crc_at = len(data) - 12 - 4
    data[crc_at : crc_at + 4] = struct.pack("<I", zlib.crc32(bytes(data[start:crc_at])))
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "walkable"),
    [
        (damage_a_block, True),
        (lie_in_the_index, True),
        (lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]), False),  # cut short
        (lambda path: flip(path, -14), False),  # in the index's CRC32
    ],
    ids=["a-damaged-block", "an-index-that-lies", "cut-in-the-middle", "a-damaged-index"],
)
def test_a_damaged_multi_block_file_is_refused_with_nothing_left(
    damage: object, walkable: bool, sample_raw: Path, tmp_path: Path
) -> None:
    source = xz_in_blocks(sample_raw, tmp_path / "disk.raw.xz")
    damage(source)  # type: ignore[operator]
    assert subprocess.run(["xz", "-t", str(source)], capture_output=True).returncode != 0  # xz agrees
    if walkable:
        assert blocks_found(source) > 4  # still taken by the parallel decoder, which must find the damage itself
    else:
        with pytest.raises(NotParallel):
            blocks_found(source)
    for verb, target in (("decompress", tmp_path / "back.raw"), ("convert", tmp_path / "out.qcow2")):
        done = run_cli(verb, str(source), str(target))
        assert done.returncode == 1
        assert "the xz stream is damaged or cut short" in one_error_line(done)
        assert not target.exists() and leftovers(tmp_path) == []


def test_an_interrupted_parallel_decode_stops_its_threads_and_leaves_nothing(tmp_path: Path) -> None:
    zeros = subprocess.run(
        "head -c 64M /dev/zero | xz -T2 --block-size=1MiB -0 -c", shell=True, capture_output=True, check=True
    ).stdout
    source = tmp_path / "zeros.raw.xz"
    source.write_bytes(zeros * 512)  # 32 GiB in 512 streams of 64 blocks, a few MiB
    assert blocks_found(source) == 64 * 512
    out = tmp_path / "out"
    out.mkdir()
    code, stderr = interrupt_when(["decompress", str(source), str(out / "zeros.raw")], lambda: bool(leftovers(out)))
    assert code == 128 + signal.SIGTERM, stderr
    assert stderr.strip().splitlines() == ["imagepack: interrupted; nothing was written"]
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("blocks", ["several", "one"])
def test_streams_with_padding_between_them_are_all_read_and_anything_else_after_one_is_refused(
    blocks: str, sample_raw: Path, tmp_path: Path
) -> None:
    """lzma.LZMAFile stops without a word at padding after a stream and leaves the rest out; xz reads on."""
    options = ["-T2", f"--block-size={BLOCK}"] if blocks == "several" else ["-T1"]
    first = subprocess.run(["xz", *options, "-c", str(sample_raw)], capture_output=True, check=True).stdout
    joined = tmp_path / "joined.raw.xz"
    joined.write_bytes(first + bytes(4) + first + bytes(12))
    out = tmp_path / "joined.raw"
    done = run_cli("decompress", str(joined), str(out))
    assert done.returncode == 0, done.stderr
    assert file_digest(out)[0] == xz_dc(joined) and out.stat().st_size == 2 * sample_raw.stat().st_size
    for after in (bytes(3), b"not a stream"):  # padding not in fours, and bytes that are no stream
        bad = tmp_path / "bad.raw.xz"
        bad.write_bytes(first + after + first)
        done = run_cli("decompress", str(bad), str(tmp_path / "bad.raw"))
        assert done.returncode == 1
        assert "the xz stream is damaged or cut short" in one_error_line(done)
        assert not (tmp_path / "bad.raw").exists() and leftovers(tmp_path) == []


def test_a_block_that_decodes_to_more_than_its_index_says_stops_there(tmp_path: Path) -> None:
    """Three 1 GiB blocks of zeroes (150 KiB each), each listed as 1 MiB, decoded under a 700 MiB address-space
    limit: each thread stops one byte past what the index says, rather than decoding the whole block first."""
    block, unpadded, _ = one_block(bytes(16 * MiB) for _ in range(64))
    source = tmp_path / "bomb.raw.xz"
    source.write_bytes(stream([block] * 3, [(unpadded, MiB)] * 3))
    assert blocks_found(source) == 3  # taken by the parallel decoder

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (700 * MiB, 700 * MiB))

    done = run_cli("decompress", str(source), str(tmp_path / "bomb.raw"), preexec_fn=limit_memory)
    assert done.returncode == 1
    assert "the xz stream is damaged or cut short" in one_error_line(done)
    assert leftovers(tmp_path) == []


def test_an_index_of_blocks_too_many_or_too_large_for_their_size_is_left_to_the_sequential_reader(
    tmp_path: Path,
) -> None:
    """Neither is read in parallel (nor walked for long): the blocks are holes of the file, and the sequential
    reader refuses the first one it meets."""
    many = tmp_path / "many.raw.xz"
    records = [(12, 1)] * (MAX_BLOCKS + 1)
    with open(many, "wb") as f:
        f.write(stream_header())
        f.seek(12 * len(records), os.SEEK_CUR)  # blocks of 12 bytes, never written
        listed = index(records)
        f.write(listed + stream_footer(listed))
    large = tmp_path / "large.raw.xz"
    with open(large, "wb") as f:
        f.write(stream_header())
        f.seek(2 * 64 * MiB, os.SEEK_CUR)
        listed = index([(64 * MiB, 1)] * 2)  # 64 MiB read for a byte each
        f.write(listed + stream_footer(listed))
    for source in (many, large):
        with pytest.raises(NotParallel):
            blocks_found(source)
        done = run_cli("decompress", str(source), str(tmp_path / "out.raw"), timeout=30)
        assert done.returncode == 1
        assert "the xz stream is damaged or cut short" in one_error_line(done)
        assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "options",
    [["-C", "none"], ["-C", "crc32"], ["-C", "sha256"], ["--x86", "--lzma2=preset=1"], ["--delta=dist=4", "--lzma2"]],
    ids=["no-check", "crc32", "sha256", "bcj-x86", "delta"],
)
def test_every_check_and_filter_chain_decodes_in_parallel_to_what_xz_gives(
    options: list[str], sample_raw: Path, tmp_path: Path
) -> None:
    source = tmp_path / "disk.raw.xz"
    with open(source, "wb") as f:
        subprocess.run(["xz", "-T2", f"--block-size={BLOCK}", *options, "-c", str(sample_raw)], stdout=f, check=True)
    assert blocks_found(source) == listed(source)[0] > 4
    out = tmp_path / "back.raw"
    done = run_cli("decompress", str(source), str(out))
    assert done.returncode == 0, done.stderr
    assert file_digest(out)[0] == xz_dc(source) == file_digest(sample_raw)[0]


def test_a_stream_stating_a_reserved_check_is_refused_not_read_unchecked(tmp_path: Path) -> None:
    """Check ID 2 is reserved (4 bytes, like CRC32's 1): liblzma decodes such a stream without checking it, and
    xz itself warns that it cannot verify it."""
    block, unpadded, size = one_block([bytes(4096) + b"data" * 4096], check=lzma.CHECK_CRC32)
    source = tmp_path / "disk.raw.xz"
    source.write_bytes(stream([block], [(unpadded, size)], check=2) * 2)  # two streams: the parallel walk's case
    assert subprocess.run(["xz", "-t", str(source)], capture_output=True).returncode != 0
    done = run_cli("decompress", str(source), str(tmp_path / "back.raw"))
    assert done.returncode == 1
    assert "an integrity check of a kind xz does not know (ID 2)" in one_error_line(done)
    assert leftovers(tmp_path) == [] and not (tmp_path / "back.raw").exists()
