"""xz outputs cut into blocks as `xz -T0` cuts them: each block compressed on its own (on every core), its header
stating its sizes, one index listing them all; `xz -t`, `xz -lvv` and `xz -dc` read them, imagepack's own parallel
decoder shares them out, and the bytes are the same on any number of threads (and the same as `xz -T0`'s)."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from imagepack.compression.xzblocks import xz_blocks
from imagepack.compression.xzwrite import block_size
from tests.conftest import file_digest, run_cli

MiB = 1024**2


def mixed_file(path: Path, size: int) -> Path:
    """Text, a real program, random bytes and zeroes, over `size` bytes: what a disk holds."""
    rng = random.Random(7)
    real = Path("/usr/share/common-licenses/GPL-3").read_bytes() + Path("/usr/bin/qemu-img").read_bytes()
    data = bytearray()
    while len(data) < size:
        data += real[: size // 3] + rng.randbytes(MiB // 2) + bytes(MiB // 3)
    path.write_bytes(bytes(data[:size]))
    return path


def compress(source: Path, target: Path, *args: str) -> bytes:
    done = run_cli("compress", "--to", "xz", *args, str(source), str(target))
    assert done.returncode == 0, done.stderr
    return target.read_bytes()


def listed_blocks(path: Path) -> int:
    listing = subprocess.run(["xz", "-lvv", str(path)], capture_output=True, text=True, check=True).stdout
    assert "Sizes in headers:  Yes" in listing  # what xz's threaded decoder needs to share blocks out
    return int(re.search(r"^\s+Blocks:\s+(\d+)$", listing, re.M).group(1))  # type: ignore[union-attr]


@pytest.mark.parametrize("level", [0, 1])
def test_several_blocks_each_decodable_read_by_xz_and_by_the_parallel_decoder(tmp_path: Path, level: int) -> None:
    size = 3 * block_size(level) + 12345  # three whole blocks and a short one
    source = mixed_file(tmp_path / "disk.raw", size)
    packed = tmp_path / "disk.raw.xz"
    ours = compress(source, packed, "--level", str(level))
    subprocess.run(["xz", "-t", str(packed)], check=True)
    assert listed_blocks(packed) == 4
    fd = os.open(packed, os.O_RDONLY)
    try:
        blocks = xz_blocks(fd)  # raises when the parallel decoder would not take the file
    finally:
        os.close(fd)
    assert [b.size for b in blocks] == [block_size(level)] * 3 + [12345]
    # byte for byte what xz -T0 writes at the same preset
    assert subprocess.run(["xz", "-T0", f"-{level}", "-c", str(source)], capture_output=True).stdout == ours
    back = tmp_path / "back.raw"
    done = run_cli("decompress", str(packed), str(back))
    assert done.returncode == 0, done.stderr
    assert file_digest(back)[0] == file_digest(source)[0]
    by_xz = subprocess.run(["xz", "-T0", "-dc", str(packed)], capture_output=True, check=True).stdout
    assert by_xz == source.read_bytes()


@pytest.mark.parametrize("level", range(10))
def test_every_level_is_the_same_bytes_on_any_number_of_threads(tmp_path: Path, level: int) -> None:
    source = mixed_file(tmp_path / "disk.raw", 2 * MiB + 777)
    runs = {"default": (), "t1": ("--threads", "1"), "t2": ("--threads", "2")}
    outputs = [compress(source, tmp_path / f"{name}.xz", "--level", str(level), *args) for name, args in runs.items()]
    assert outputs[0] == outputs[1] == outputs[2]
    subprocess.run(["xz", "-t", str(tmp_path / "t2.xz")], check=True)
    by_xz = subprocess.run(["xz", "-dc", str(tmp_path / "t2.xz")], capture_output=True, check=True).stdout
    assert by_xz == source.read_bytes()


def test_an_xz_target_is_written_in_blocks_too(tmp_path: Path) -> None:
    source = mixed_file(tmp_path / "disk.raw", 2 * block_size(0) + 4096)
    packed = tmp_path / "disk.raw.xz"
    done = run_cli("convert", "--from", "raw", "--level", "0", "--threads", "2", str(source), str(packed))
    assert done.returncode == 0, done.stderr
    assert listed_blocks(packed) == 3
    assert subprocess.run(["xz", "-dc", str(packed)], capture_output=True, check=True).stdout == source.read_bytes()


def test_an_empty_file_is_an_xz_stream_of_no_blocks(tmp_path: Path) -> None:
    source = tmp_path / "empty"
    source.write_bytes(b"")
    packed = tmp_path / "empty.xz"
    ours = compress(source, packed)
    assert ours == subprocess.run(["xz", "-T0", "-c", str(source)], capture_output=True, check=True).stdout
    subprocess.run(["xz", "-t", str(packed)], check=True)


def test_threads_for_gzip_are_still_refused(tmp_path: Path) -> None:
    source = mixed_file(tmp_path / "disk.raw", MiB)
    done = run_cli("compress", "--to", "gz", "--threads", "2", str(source), str(tmp_path / "d.gz"))
    assert done.returncode == 2 and "threads apply to zstd and xz, not gz" in done.stderr


def test_memory_is_the_encoders_and_a_block_of_output_a_thread(tmp_path: Path) -> None:
    """Peak memory at preset 6 on two threads over three blocks of a disk's kind of data (two at once, then one
    more): the interpreter (about 25 MiB), liblzma's two encoders (94 MiB each) and at most one block's output a
    thread waiting to be written in order (24 MiB each where nothing compresses, here much less); no block of
    input is held, since each thread reads its own. Holding the input of the blocks in flight, the one being
    filled and copies of them took 320 MiB here."""
    source = mixed_file(tmp_path / "disk.raw", 3 * block_size(6))
    target = tmp_path / "disk.raw.xz"
    measure = (
        "import resource, subprocess, sys; "
        "done = subprocess.run(sys.argv[1:]); "
        "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    args = ["compress", "--to", "xz", "--threads", "2", str(source), str(target)]
    done = subprocess.run(
        [sys.executable, "-c", measure, sys.executable, "-m", "imagepack", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    code, peak_kib = map(int, done.stdout.splitlines()[-1].split())
    assert code == 0, done.stderr
    assert peak_kib < 260 * 1024, peak_kib // 1024
    assert subprocess.run(["xz", "-t", str(target)], check=False).returncode == 0
