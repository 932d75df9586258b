"""The codecs behind compressed outputs: a stream vmdk's grains at every level (libdeflate, ISA-L) read back by
qemu-img, dissect, libvmdk and 7-Zip, the same bytes on any number of threads, and no bigger than qemu-img's;
gzip written and read through ISA-L, as standard streams gzip and pigz read and write."""

from __future__ import annotations

import random
import subprocess
import zlib
from pathlib import Path

import pytest

from tests.conftest import leftovers, qemu_img, run_cli
from tests.readers import qemu_compare, read_guest_disk, read_guest_disk_7zip, read_guest_disk_libvmdk

MiB = 1024**2
GRAIN = 64 * 1024
STREAM = ("-o", "subformat=streamOptimized")
# Text first: a disk that begins with an ELF header is taken for a program. More than one ELF file in the disk
# sends 7-Zip's nested open of the extracted disk astray ("Cannot open the file as [ELF] archive").
REAL_FILES = ("/usr/share/common-licenses/GPL-3", "/usr/bin/qemu-img")


def mixed_disk(path: Path, size: int = 6 * MiB + 1536) -> int:
    """Real binaries and text (what a guest disk holds), random grains, zeroes, a hole and a short last grain."""
    rng = random.Random(23)
    real = b"".join(Path(p).read_bytes()[: 4 * MiB] for p in REAL_FILES if Path(p).exists())
    with open(path, "wb") as f:
        f.truncate(size)
        f.write(real[: 4 * MiB])
        f.write(rng.randbytes(2 * GRAIN))
        f.write(bytes(3 * GRAIN))
        f.seek(size - 700)
        f.write(b"end of disk" * 50)
    return size


def convert_stream(source: Path, target: Path, *extra: str) -> None:
    done = run_cli("convert", *STREAM, *extra, str(source), str(target))
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("level", range(1, 13))
def test_every_grain_level_reads_back_and_is_the_same_on_any_threads(tmp_path: Path, level: int) -> None:
    raw = tmp_path / "disk.raw"
    mixed_disk(raw)
    outputs = []
    for threads in ("1", "2", None):
        out = tmp_path / f"t{threads}" / "disk.vmdk"  # the same name: the descriptor records it
        out.parent.mkdir()
        convert_stream(raw, out, "--level", str(level), *(("--threads", threads) if threads else ()))
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]
    out = tmp_path / "t1" / "disk.vmdk"
    assert qemu_compare(raw, "raw", out, "vmdk").returncode == 0
    assert subprocess.run(["qemu-img", "check", "-f", "vmdk", str(out)], capture_output=True).returncode == 0
    expected = read_guest_disk(raw, "raw")
    assert read_guest_disk(out, "vmdk") == expected
    assert read_guest_disk_libvmdk(out) == expected
    assert read_guest_disk_7zip(out, tmp_path) == expected


def test_the_default_level_is_no_bigger_than_qemu_img_and_the_levels_trade_size(tmp_path: Path) -> None:
    raw = tmp_path / "disk.raw"
    mixed_disk(raw)
    theirs = tmp_path / "theirs.vmdk"
    qemu_img("convert", "-f", "raw", "-O", "vmdk", *STREAM, str(raw), str(theirs))
    sizes = {}
    for level in (None, 1, 12):
        out = tmp_path / f"l{level}" / "disk.vmdk"
        out.parent.mkdir()
        convert_stream(raw, out, *(("--level", str(level)) if level else ()))
        sizes[level] = out.stat().st_size
    assert sizes[None] <= theirs.stat().st_size  # libdeflate 6 against zlib 6, the same grains
    assert sizes[12] <= sizes[None] < sizes[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--level", "13", *STREAM), "level 13: a stream-optimized vmdk takes 1 to 12"),
        (("--level", "0", *STREAM), "level 0: a stream-optimized vmdk takes 1 to 12"),
        (("--level", "6"), "level 6: a level applies only to a compressed target"),
        (("--level", "6", "--stream-writer", "qemu", *STREAM), "level 6: a level applies only"),
    ],
)
def test_a_level_the_grains_have_not_is_a_usage_error(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    raw = tmp_path / "disk.raw"
    mixed_disk(raw)
    out = tmp_path / "disk.vmdk"
    done = run_cli("convert", *args, str(raw), str(out))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imagepack: error: ") and message in lines[0], done.stderr
    assert not out.exists() and not leftovers(tmp_path)


# --- gzip through ISA-L ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", range(1, 10))
def test_every_gzip_level_is_a_standard_stream_gzip_reads(tmp_path: Path, level: int) -> None:
    source = tmp_path / "disk.raw"
    mixed_disk(source)
    packed = tmp_path / "disk.raw.gz"
    done = run_cli("compress", "--to", "gz", "--level", str(level), str(source), str(packed))
    assert done.returncode == 0, done.stderr
    subprocess.run(["gzip", "-t", str(packed)], check=True)
    assert subprocess.run(["gzip", "-dc", str(packed)], capture_output=True, check=True).stdout == source.read_bytes()
    assert subprocess.run(["pigz", "-dc", str(packed)], capture_output=True, check=True).stdout == source.read_bytes()


def test_the_fast_gzip_levels_are_isa_ls(tmp_path: Path) -> None:
    """Levels 1-3 are written by ISA-L (not zlib's deflate stream at that level); 4-9 by zlib, as before."""
    source = tmp_path / "disk.raw"
    mixed_disk(source)
    data = source.read_bytes()
    for level in (1, 3, 6):
        packed = tmp_path / f"l{level}.gz"
        done = run_cli("compress", "--to", "gz", "--level", str(level), str(source), str(packed))
        assert done.returncode == 0, done.stderr
        body = packed.read_bytes()[10 + len(b"l1\0") : -8]  # past the header and its file name, before the trailer
        assert zlib.decompress(body, -15) == data
        by_zlib = zlib.compress(data, level)[2:-4]  # zlib's deflate stream, without its zlib header and Adler-32
        assert (body == by_zlib) is (level > 3)


@pytest.mark.parametrize("writer", ["gzip", "pigz", "members"])
def test_we_read_what_gzip_and_pigz_write_multi_member_included(tmp_path: Path, writer: str) -> None:
    source = tmp_path / "disk.raw"
    mixed_disk(source)
    data = source.read_bytes()
    packed = tmp_path / "disk.raw.gz"
    if writer == "members":  # two members one after the other, as `cat a.gz b.gz` makes
        half = len(data) // 2 // 512 * 512
        one = subprocess.run(["gzip", "-c"], input=data[:half], capture_output=True, check=True).stdout
        two = subprocess.run(["pigz", "-c"], input=data[half:], capture_output=True, check=True).stdout
        packed.write_bytes(one + two)
    else:
        packed.write_bytes(subprocess.run([writer, "-c", str(source)], capture_output=True, check=True).stdout)
    back = tmp_path / "back.raw"
    done = run_cli("decompress", str(packed), str(back))
    assert done.returncode == 0, done.stderr
    assert back.read_bytes() == data
    converted = tmp_path / "disk.qcow2"
    done = run_cli("convert", "--from", "raw", str(packed), str(converted))
    assert done.returncode == 0, done.stderr
    assert qemu_compare(source, "raw", converted, "qcow2").returncode == 0
