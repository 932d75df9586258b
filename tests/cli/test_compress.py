"""`imagepack compress` and `imagepack decompress`: streams the real tools accept, byte-identical round trips,
sparse outputs, and outputs that appear whole or not at all."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import zstandard

from tests.conftest import file_digest, interrupt_when, leftovers, run_cli
from tests.unit.test_formats_detect import one_error_line

TESTERS = {"zst": ["zstd", "-q", "-t"], "xz": ["xz", "-t"], "gz": ["gzip", "-t"]}


@pytest.mark.parametrize("codec", sorted(TESTERS))
def test_compress_writes_a_stream_the_real_tool_accepts_and_decompress_gives_back_the_same_bytes(
    codec: str, sample_raw: Path, tmp_path: Path
) -> None:
    before = file_digest(sample_raw)
    packed = tmp_path / f"disk.{codec}"
    done = run_cli("compress", "--to", codec, str(sample_raw), str(packed))
    assert done.returncode == 0, done.stderr
    subprocess.run([*TESTERS[codec], str(packed)], check=True)
    back = tmp_path / "back.raw"
    done = run_cli("decompress", str(packed), str(back))
    assert done.returncode == 0, done.stderr
    assert file_digest(back)[0] == before[0] and file_digest(sample_raw) == before
    # The sample disk is mostly holes; the decompressed copy keeps them.
    assert back.stat().st_blocks * 512 < back.stat().st_size // 2
    assert leftovers(tmp_path) == []


def test_compress_names_the_output_after_the_input_and_decompress_drops_the_suffix(
    sample_raw: Path, tmp_path: Path
) -> None:
    done = run_cli("compress", "--json", str(sample_raw))
    assert done.returncode == 0, done.stderr
    packed = tmp_path / "sample.raw.zst"
    assert json.loads(done.stdout)["target"] == str(packed)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    moved = Path(shutil.move(packed, elsewhere / packed.name))
    done = run_cli("decompress", str(moved))
    assert done.returncode == 0, done.stderr
    assert file_digest(elsewhere / "sample.raw")[0] == file_digest(sample_raw)[0]


def test_zstd_output_records_its_size_and_a_checksum(sample_raw: Path, tmp_path: Path) -> None:
    packed = tmp_path / "disk.zst"
    done = run_cli("compress", "--threads", "2", "--level", "5", str(sample_raw), str(packed))
    assert done.returncode == 0, done.stderr
    frame = zstandard.get_frame_parameters(packed.read_bytes())
    assert frame.has_checksum and frame.content_size == sample_raw.stat().st_size
    subprocess.run(["zstd", "-q", "-t", str(packed)], check=True)


def test_an_existing_output_is_replaced_only_with_force(sample_raw: Path, tmp_path: Path) -> None:
    packed = tmp_path / "sample.raw.zst"
    packed.write_bytes(b"keep me")
    done = run_cli("compress", str(sample_raw))
    assert done.returncode == 1
    assert "already exists" in one_error_line(done) and packed.read_bytes() == b"keep me"
    done = run_cli("compress", "--force", str(sample_raw))
    assert done.returncode == 0, done.stderr
    subprocess.run(["zstd", "-q", "-t", str(packed)], check=True)


def test_decompressing_a_damaged_stream_is_refused_and_leaves_nothing(sample_raw: Path, tmp_path: Path) -> None:
    packed = tmp_path / "disk.raw.xz"
    with open(packed, "wb") as f:
        subprocess.run(["xz", "-c", str(sample_raw)], stdout=f, check=True)
    packed.write_bytes(packed.read_bytes()[:-40])
    done = run_cli("decompress", str(packed))
    assert done.returncode == 1
    assert "the xz stream is damaged or cut short" in one_error_line(done)
    assert not (tmp_path / "disk.raw").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("verb", ["compress", "decompress"])
def test_an_interrupted_compress_or_decompress_leaves_nothing(verb: str, tmp_path: Path) -> None:
    big = tmp_path / "big.raw"
    with open(big, "wb") as f:
        f.truncate(64 * 1024**3)  # a sparse file: minutes of work, no disk
    source = big
    if verb == "decompress":
        source = tmp_path / "zeros.raw.zst"
        # 32 GiB of zeroes in 128 copies of one frame, a few hundred KiB: far more than the wait below, even on a
        # machine that is slow to notice the temporary (4 GiB could end inside that window, under load).
        frame = zstandard.ZstdCompressor(level=1).compress(bytes(256 * 1024**2))
        source.write_bytes(frame * 128)
        big.unlink()
    out = tmp_path / "out"
    out.mkdir()
    target = out / "result"
    code, stderr = interrupt_when([verb, str(source), str(target)], lambda: bool(leftovers(out)))
    assert code == 128 + signal.SIGTERM, stderr
    assert stderr.strip().splitlines() == ["imagepack: interrupted; nothing was written"]
    assert list(out.iterdir()) == []
