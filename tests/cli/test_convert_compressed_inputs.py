"""Compressed inputs: a disk or a .oci archive in a zstd, xz, gzip or bzip2 stream (made by the real tools) is
recognised by its bytes, decompressed once beside the output, bounded, and read like the plain file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from tests.conftest import file_digest, interrupt_when, leftovers, qemu_img, run_cli
from tests.readers import qemu_compare, read_guest_disk
from tests.unit.test_formats_detect import one_error_line

MiB = 1024**2
PACK_ARGS = ("--os", "Oracle Linux", "--os-version", "9", "--firmware", "UEFI_64")
# The real compressors, each writing to stdout: (suffix, command line).
TOOLS = {
    "zstd": (".zst", ["zstd", "-q", "-c"]),
    "xz": (".xz", ["xz", "-c"]),
    "gzip": (".gz", ["gzip", "-c"]),
    "bzip2": (".bz2", ["bzip2", "-c"]),
}


def compress(source: Path, kind: str, *, name: str | None = None) -> Path:
    suffix, command = TOOLS[kind]
    out = source.parent / (name or source.name + suffix)
    with open(out, "wb") as f:
        subprocess.run([*command, str(source)], stdout=f, check=True)
    return out


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


@pytest.fixture
def disk_of(sample_raw: Path, make_image: Callable[..., Path]) -> Callable[[str], Path]:
    """The sample disk as raw or qcow2 (made by qemu-img)."""

    def make(fmt: str) -> Path:
        return sample_raw if fmt == "raw" else make_image(fmt, name=f"disk.{fmt}")

    return make


def assert_nothing_left(out_dir: Path, *folders: Path) -> None:
    assert list(out_dir.iterdir()) == []
    for folder in (out_dir, *folders):
        assert leftovers(folder) == []


@pytest.mark.parametrize("inner", ["raw", "qcow2"])
@pytest.mark.parametrize("kind", sorted(TOOLS))
def test_a_compressed_disk_converts_to_the_same_guest_disk(
    kind: str, inner: str, disk_of: Callable[[str], Path], sample_raw: Path, tmp_path: Path, out_dir: Path
) -> None:
    source = compress(disk_of(inner), kind)
    before = file_digest(source)
    target = out_dir / "out.qcow2"
    done = run_cli("convert", str(source), str(target))
    assert done.returncode == 0, done.stderr
    assert qemu_compare(sample_raw, "raw", target, "qcow2").returncode == 0
    assert read_guest_disk(target, "qcow2") == read_guest_disk(sample_raw, "raw")
    assert file_digest(source) == before
    assert sorted(p.name for p in out_dir.iterdir()) == ["out.qcow2"] and leftovers(tmp_path) == []


@pytest.mark.parametrize("kind", sorted(TOOLS))
def test_a_compressed_qcow2_packs_into_an_archive_holding_the_same_disk(
    kind: str, disk_of: Callable[[str], Path], sample_raw: Path, tmp_path: Path, out_dir: Path
) -> None:
    source = compress(disk_of("qcow2"), kind)
    archive = out_dir / "out.oci"
    done = run_cli("pack", str(source), str(archive), *PACK_ARGS)
    assert done.returncode == 0, done.stderr
    with tarfile.open(archive) as tar:
        tar.extract("output.QCOW2", tmp_path, filter="data")
    disk = tmp_path / "output.QCOW2"
    assert qemu_compare(sample_raw, "raw", disk, "qcow2").returncode == 0
    assert read_guest_disk(disk, "qcow2") == read_guest_disk(sample_raw, "raw")
    assert sorted(p.name for p in out_dir.iterdir()) == ["out.oci"]


def test_compression_is_found_by_the_bytes_not_the_name(sample_raw: Path, out_dir: Path) -> None:
    source = compress(sample_raw, "zstd", name="download.img")
    target = out_dir / "out.raw"
    done = run_cli("convert", str(source), str(target))
    assert done.returncode == 0, done.stderr
    assert qemu_compare(sample_raw, "raw", target, "raw").returncode == 0


@pytest.mark.parametrize("kind", ["zstd", "xz"])
def test_a_compressed_oci_archive_is_read_as_the_archive(
    kind: str, disk_of: Callable[[str], Path], sample_raw: Path, tmp_path: Path, out_dir: Path
) -> None:
    archive = tmp_path / "image.oci"
    packed = run_cli("pack", str(disk_of("raw")), str(archive), *PACK_ARGS)
    assert packed.returncode == 0, packed.stderr
    source = compress(archive, kind)
    target = out_dir / "back.raw"
    done = run_cli("convert", str(source), str(target))
    assert done.returncode == 0, done.stderr
    assert qemu_compare(sample_raw, "raw", target, "raw").returncode == 0
    verified = run_cli("verify", "--json", str(source))
    report = json.loads(verified.stdout)
    assert verified.returncode == 3, verified.stdout  # read and checked; OCI imports it only decompressed
    assert report["format"] == "oci" and report["facts"]["compression"] == kind
    assert [p["code"] for p in report["problems"] if p["severity"] == "error"] == ["oci.compressed"]


def cut_short(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [cut_short, flip_middle], ids=["truncated", "corrupted"])
@pytest.mark.parametrize("kind", sorted(TOOLS))
def test_a_damaged_stream_is_refused_with_one_line_and_nothing_left(
    kind: str, damage: Callable[[Path], None], disk_of: Callable[[str], Path], tmp_path: Path, out_dir: Path
) -> None:
    source = compress(disk_of("qcow2"), kind)
    damage(source)
    done = run_cli("convert", str(source), str(out_dir / "out.raw"))
    assert done.returncode == 1
    line = one_error_line(done)
    assert f"{source}: the {kind} stream is damaged or cut short (" in line
    assert_nothing_left(out_dir, tmp_path)


def zstd_of_zeros(path: Path, size: int) -> None:
    """A few hundred KiB of zstd that expand to `size` bytes of zeroes, streamed (no frame size declared)."""
    zeros = bytes(64 * MiB)
    with open(path, "wb") as f, zstandard.ZstdCompressor(level=1).stream_writer(f) as writer:
        for _ in range(size // len(zeros)):
            writer.write(zeros)


@pytest.fixture(scope="module")
def zeros_zst(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 GiB of zeroes in under a MiB of zstd: seconds to decompress, no disk to hold."""
    source = tmp_path_factory.mktemp("zeros") / "zeros.raw.zst"
    zstd_of_zeros(source, 16 * 1024**3)
    assert source.stat().st_size < 1 * MiB
    return source


def test_a_zstd_bomb_is_bounded_by_the_largest_size_allowed(zeros_zst: Path, tmp_path: Path, out_dir: Path) -> None:
    source = zeros_zst
    done = run_cli("convert", "--max-size", "64M", str(source), str(out_dir / "out.qcow2"), timeout=60)
    assert done.returncode == 1
    line = one_error_line(done)
    assert f"expands past {64 * MiB} bytes; refusing it" in line and "--max-size" in line
    assert_nothing_left(out_dir, tmp_path)


def test_a_compressed_qcow2_naming_a_backing_file_is_refused_before_the_rest_is_read(
    tmp_path: Path, out_dir: Path
) -> None:
    """The overlay holds 8 MiB of incompressible data of its own; its xz stream is cut after some 6 MiB, so only a
    refusal made from the first chunk names the backing file rather than the damage further on."""
    base = tmp_path / "base.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(base), "8M")
    noise = tmp_path / "noise.raw"
    noise.write_bytes(os.urandom(8 * MiB))
    overlay = tmp_path / "overlay.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", "-B", str(base), "-F", "qcow2", str(noise), str(overlay))
    assert overlay.stat().st_size > 8 * MiB
    source = compress(overlay, "xz")
    data = source.read_bytes()
    source.write_bytes(data[: len(data) * 3 // 4])
    done = run_cli("convert", str(source), str(out_dir / "out.qcow2"))
    assert done.returncode == 1
    line = one_error_line(done)
    assert "backing file" in line and "damaged" not in line
    assert_nothing_left(out_dir, tmp_path)


@pytest.mark.parametrize("inner", ["raw", "qcow2"])
def test_info_describes_the_stream_and_the_disk_from_its_first_mib(
    inner: str, disk_of: Callable[[str], Path], sample_raw: Path, tmp_path: Path
) -> None:
    source = compress(disk_of(inner), "zstd")
    done = run_cli("info", "--json", str(source))
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["details"]["compression"] == "zstd"
    assert found["format"] == inner and found["virtual_size"] == sample_raw.stat().st_size
    assert 0 < found["details"]["read_bytes"] <= 4 * MiB + 1
    assert found["file_size"] == source.stat().st_size
    if inner == "raw":
        assert found["partition_table"] == "gpt" and found["firmware_guess"] == "UEFI_64"


def test_verify_checks_the_disk_inside_a_compressed_qcow2(disk_of: Callable[[str], Path], tmp_path: Path) -> None:
    source = compress(disk_of("qcow2"), "zstd")
    done = run_cli("verify", "--json", str(source))
    report = json.loads(done.stdout)
    assert done.returncode == 3, done.stdout  # the disk is checked; the file is not what OCI imports
    assert report["format"] == "qcow2" and report["facts"]["compression"] == "zstd"
    assert [p["code"] for p in report["problems"] if p["severity"] == "error"] == ["oci.compressed"]
    assert report["facts"]["partition_table"] == "gpt" and leftovers(tmp_path) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_an_interrupted_decompression_leaves_no_temporary(
    signum: signal.Signals, zeros_zst: Path, tmp_path: Path, out_dir: Path
) -> None:
    source = zeros_zst
    args = ["convert", "--max-size", "32G", str(source), str(out_dir / "out.qcow2")]
    code, stderr = interrupt_when(args, lambda: bool(leftovers(out_dir)), signum=signum)
    assert code == 128 + signum, stderr
    assert stderr.strip().splitlines() == ["imagepack: interrupted; nothing was written"]
    assert_nothing_left(out_dir, tmp_path)


def test_a_stream_declaring_more_than_the_scratch_holds_is_refused_before_writing(
    tmp_path: Path, mount_tmpfs: Callable[[str], Path]
) -> None:
    """zstd records the content size of a file it compresses; the temporary would not fit, so nothing is tried."""
    sparse = tmp_path / "big.raw"
    with open(sparse, "wb") as f:
        f.truncate(1024**3)
    source = compress(sparse, "zstd")
    small = mount_tmpfs("16M")
    done = run_cli("convert", str(source), str(small / "out.qcow2"))
    assert done.returncode == 1
    line = one_error_line(done)
    assert line.startswith(f"imagepack: error: {small}: needs about 1,024.0 MiB"), line
    assert_nothing_left(small)


def test_verify_of_a_damaged_stream_says_it_is_unreadable(disk_of: Callable[[str], Path], tmp_path: Path) -> None:
    source = compress(disk_of("qcow2"), "gzip")
    cut_short(source)
    done = run_cli("verify", str(source))
    assert done.returncode == 1
    assert "the gzip stream is damaged or cut short" in one_error_line(done)


def test_info_of_a_compressed_archive_describes_both_layers_and_leaves_nothing(
    disk_of: Callable[[str], Path], tmp_path: Path
) -> None:
    archive = tmp_path / "image.oci"
    packed = run_cli("pack", str(disk_of("raw")), str(archive), *PACK_ARGS)
    assert packed.returncode == 0, packed.stderr
    source = compress(archive, "xz")
    done = run_cli("info", "--json", str(source))
    assert done.returncode == 0, done.stderr
    found, plain = json.loads(done.stdout), json.loads(run_cli("info", "--json", str(archive)).stdout)
    assert found["format"] == "oci" and found["compression"] == "xz" and plain["compression"] is None
    assert found["path"] == str(source) and found["disk"]["path"] == f"{source}:output.QCOW2"
    assert found["metadata"] == plain["metadata"] and found["members"] == plain["members"]
    text = run_cli("info", str(source))
    assert text.stdout.startswith(f"{source}: .oci archive (xz)\n") and ".imagepack-" not in text.stdout
    assert leftovers(tmp_path) == []


def test_a_damaged_disk_inside_a_sound_stream_is_refused_naming_the_compressed_file(
    make_image: Callable[..., Path], tmp_path: Path, out_dir: Path
) -> None:
    """The stream is whole; the qcow2 in it lost its second half (an interrupted download, compressed after)."""
    disk = make_image("qcow2", name="download.qcow2")
    subprocess.run(["truncate", "-s", str(disk.stat().st_size // 2), str(disk)], check=True)
    source = compress(disk, "zstd")
    done = run_cli("convert", str(source), str(out_dir / "out.raw"))
    assert done.returncode == 1
    line = one_error_line(done)
    assert line.startswith(f"imagepack: error: {source}: ") and "damaged or truncated" in line
    assert ".imagepack-" not in line and "zstd stream" not in line
    assert_nothing_left(out_dir, tmp_path)


@pytest.mark.parametrize("kind", sorted(TOOLS))
def test_a_stream_of_several_members_reads_as_their_concatenation(
    kind: str, sample_raw: Path, tmp_path: Path, out_dir: Path
) -> None:
    """`cat a.gz b.gz` is a valid gzip file (and likewise for xz streams, bzip2 streams and zstd frames)."""
    data = sample_raw.read_bytes()
    half = len(data) // 2 // 512 * 512
    parts = []
    for i, piece in enumerate((data[:half], data[half:])):
        part = tmp_path / f"part{i}"
        part.write_bytes(piece)
        parts.append(compress(part, kind).read_bytes())
    source = tmp_path / f"joined{TOOLS[kind][0]}"
    source.write_bytes(b"".join(parts))
    target = out_dir / "out.raw"
    done = run_cli("convert", str(source), str(target))
    assert done.returncode == 0, done.stderr
    assert file_digest(target)[0] == file_digest(sample_raw)[0]
