"""imagepack's own compressed qcow2 writer: every kind of cluster, both codecs, reads back through qemu-img
(check: no leaks, no corruptions; compare) and dissect.hypervisor; the same bytes at any thread count; the
refcount structures grow past one block; pack and convert say what compressing saved; --stream-writer qemu
keeps qemu-img's writer."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.test_convert_stream_vmdk import qemu_nbd_serving, writing_started
from tests.conftest import ODD_SIZE, QEMU_IMG, interrupt_when, qemu_img, run_cli
from tests.readers import qemu_compare, read_guest_disk, read_qcow2_header

MiB = 1024**2
GiB = 1024**3
CLUSTER = 64 * 1024
OS = ("--os", "Ubuntu", "--os-version", "22.04", "--firmware", "BIOS")
FEATURE_NAME_TABLE = 0x6803F857  # the header extension qemu-img writes and imagepack's writer does not


def write_every_kind_of_cluster(path: Path) -> int:
    """A disk whose size is not a whole number of clusters, holding: random clusters (stored uncompressed),
    compressible text, clusters of written zeroes, holes, a cluster with a few bytes, data past the first L2
    table's 512 MiB with nothing in between, and a short last cluster with data in it."""
    size = 600 * MiB + 3 * 512
    rng = random.Random(23)
    with open(path, "wb") as f:
        f.truncate(size)
        f.write(rng.randbytes(3 * CLUSTER))
        f.write((b"the quick brown fox jumps over the lazy dog\n" * 9000)[: 5 * CLUSTER])
        f.write(bytes(4 * CLUSTER))  # zeroes written, not a hole: still left unallocated
        f.write(rng.randbytes(CLUSTER))  # random after text: a raw cluster between compressed ones
        f.write(b"more text after the raw cluster " * 4000)
        f.seek(40 * CLUSTER + 1000)
        f.write(b"partial cluster")
        f.seek(520 * MiB)
        f.write(rng.randbytes(CLUSTER + 4096))
        f.seek(size - 700)
        f.write(b"end of disk" * 50)
    return size


def check_clean(path: Path) -> dict[str, object]:
    """`qemu-img check`: exit 0, and neither leaks nor corruptions of any kind."""
    done = subprocess.run(
        [QEMU_IMG, "check", "--output=json", "-f", "qcow2", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, object] = json.loads(done.stdout)
    for key in ("leaks", "corruptions", "check-errors", "leaks-fixed", "corruptions-fixed"):
        assert report.get(key, 0) == 0, report
    return report


def header_fields(path: Path) -> dict[str, int]:
    with open(path, "rb") as f:
        raw = f.read(120)
    magic, version = struct.unpack_from(">4sI", raw)
    assert magic == b"QFI\xfb"
    (cluster_bits,) = struct.unpack_from(">I", raw, 20)
    (size,) = struct.unpack_from(">Q", raw, 24)
    incompatible, compatible, autoclear = struct.unpack_from(">QQQ", raw, 72)
    refcount_order, header_length = struct.unpack_from(">II", raw, 96)
    extension = struct.unpack_from(">I", raw, header_length)[0] if header_length <= 112 else -1
    table_clusters = struct.unpack_from(">I", raw, 56)[0]
    return {
        "version": version,
        "cluster_bits": cluster_bits,
        "size": size,
        "incompatible": incompatible,
        "compatible": compatible,
        "autoclear": autoclear,
        "refcount_order": refcount_order,
        "header_length": header_length,
        "compression_type": raw[104],
        "first_extension": extension,
        "refcount_table_clusters": table_clusters,
    }


def convert_compressed(source: Path, target: Path, *extra: str) -> None:
    done = run_cli("convert", "--compress", *extra, str(source), str(target))
    assert done.returncode == 0, done.stderr


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(("codec", "source_format"), [("zlib", "raw"), ("zstd", "raw"), ("zlib", "qcow2")])
def test_every_kind_of_cluster_reads_back_through_every_reader(tmp_path: Path, codec: str, source_format: str) -> None:
    raw = tmp_path / "every.raw"
    size = write_every_kind_of_cluster(raw)
    source = raw
    if source_format == "qcow2":  # read through qemu-nbd, its allocation from NBD block status
        source = tmp_path / "every.qcow2"
        qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(source))
    out = tmp_path / "out.qcow2"
    convert_compressed(source, out, "-o", f"compression_type={codec}", "--threads", "2")
    check_clean(out)
    assert qemu_compare(raw, "raw", out, "qcow2").returncode == 0
    assert read_guest_disk(out, "qcow2") == read_guest_disk(raw, "raw")
    fields = header_fields(out)
    zstd = codec == "zstd"
    assert fields == {
        "version": 3,
        "cluster_bits": 16,
        "size": size,
        "incompatible": 1 << 3 if zstd else 0,  # the compression type bit, only when not zlib
        "compatible": 0,
        "autoclear": 0,
        "refcount_order": 4,
        "header_length": 112,
        "compression_type": 1 if zstd else 0,
        "first_extension": 0,  # the end of the header extensions: no feature table, unlike qemu-img's
        "refcount_table_clusters": 1,
    }
    header = read_qcow2_header(out)
    # Data in 15 guest clusters (3 random, 5 text, 1 random, 2 text, the partial one, 2 past 512 MiB, the last),
    # all but the 5 random ones compressed; the written zeroes and the holes are not allocated.
    assert (header.allocated_clusters, header.compressed_clusters) == (15, 10)


def test_the_same_bytes_at_any_thread_count(tmp_path: Path) -> None:
    """qemu-img -W writes clusters in the order they finish; imagepack's writer in the disk's order."""
    raw = tmp_path / "disk.raw"
    write_every_kind_of_cluster(raw)
    for codec in ("zlib", "zstd"):
        digests = set()
        for threads in (["--threads", "1"], ["--threads", "2"], []):
            out = tmp_path / f"{codec}-{len(threads) and threads[1]}.qcow2"
            convert_compressed(raw, out, "-o", f"compression_type={codec}", *threads)
            digests.add(sha256(out))
        assert len(digests) == 1, codec


@pytest.mark.parametrize(
    "shape",
    ["all zeroes written", "hole only", "data only at the end", "odd size", "2 GiB sparse"],
)
def test_disk_shapes(tmp_path: Path, shape: str) -> None:
    raw = tmp_path / "disk.raw"
    size = {"odd size": ODD_SIZE, "2 GiB sparse": 2 * GiB}.get(shape, 64 * MiB)
    with open(raw, "wb") as f:
        if shape == "all zeroes written":
            f.write(bytes(size))
        f.truncate(size)
        if shape in ("data only at the end", "odd size"):
            f.seek(size - 1500)
            f.write(b"the end" * 200 + b"\xff" * 100)
        if shape == "2 GiB sparse":
            for at in (0, 700 * MiB, GiB + 12345, 2 * GiB - CLUSTER):
                f.seek(at)
                f.write(random.Random(at).randbytes(5000))
    out = tmp_path / "out.qcow2"
    convert_compressed(raw, out)
    report = check_clean(out)
    assert qemu_compare(raw, "raw", out, "qcow2").returncode == 0
    assert read_guest_disk(out, "qcow2") == read_guest_disk(raw, "raw")
    assert header_fields(out)["size"] == size
    allocated = report.get("allocated-clusters", 0)
    assert allocated == {"all zeroes written": 0, "hole only": 0, "2 GiB sparse": 4}.get(shape, 1), report
    assert out.stat().st_size <= 10 * CLUSTER  # header, L2 tables, L1, refcounts and a little data


def test_refcounts_grow_past_one_block(tmp_path: Path, mount_tmpfs: Callable[[str], Path]) -> None:
    """A refcount block counts 32768 clusters (2 GiB of file): a file of more clusters needs a second block.
    Each cluster is the same random 64 KiB, which no 4 KiB window compresses: stored raw, one host cluster each."""
    where = mount_tmpfs("6G")
    raw = where / "big.raw"
    block = random.Random(5).randbytes(CLUSTER)
    clusters = 32768 + 500
    with open(raw, "wb") as f:
        for _ in range(clusters // 16):
            f.write(block * 16)
        f.write(block * (clusters % 16))
    out = where / "big.qcow2"
    convert_compressed(raw, out)
    report = check_clean(out)
    assert report["allocated-clusters"] == clusters
    assert qemu_compare(raw, "raw", out, "qcow2").returncode == 0
    with open(out, "rb") as f:
        f.seek(48)
        (table_offset,) = struct.unpack(">Q", f.read(8))
        f.seek(table_offset)
        entries = struct.unpack(">4Q", f.read(32))
    assert [bool(e) for e in entries] == [True, True, False, False]


def test_pack_compress_reports_what_it_saves_and_the_member_reads_back(tmp_path: Path) -> None:
    raw = tmp_path / "disk.raw"
    write_every_kind_of_cluster(raw)
    archive = tmp_path / "disk.oci"
    done = run_cli("pack", str(raw), str(archive), "--compress", *OS, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["uncompressed_size"] > result["size"]
    text = run_cli("pack", str(raw), str(tmp_path / "again.oci"), "--compress", *OS)
    assert text.returncode == 0, text.stderr
    assert "uncompressed:" in text.stdout and "less to upload" in text.stdout
    assert (tmp_path / "again.oci").read_bytes() == archive.read_bytes()
    unpacked = run_cli("unpack", str(archive), "-d", str(tmp_path / "out"))
    assert unpacked.returncode == 0, unpacked.stderr
    disk = tmp_path / "out" / "disk.qcow2"
    check_clean(disk)
    assert qemu_compare(raw, "raw", disk, "qcow2").returncode == 0
    assert read_qcow2_header(disk).compressed_clusters == 10


def test_stream_writer_qemu_keeps_qemu_imgs_writer(tmp_path: Path) -> None:
    raw = tmp_path / "disk.raw"
    write_every_kind_of_cluster(raw)
    ours, theirs = tmp_path / "ours.qcow2", tmp_path / "theirs.qcow2"
    convert_compressed(raw, ours)
    convert_compressed(raw, theirs, "--stream-writer", "qemu")
    assert header_fields(ours)["first_extension"] == 0
    assert header_fields(theirs)["first_extension"] == FEATURE_NAME_TABLE
    packed = run_cli("pack", str(raw), str(tmp_path / "q.oci"), "--compress", "--stream-writer", "qemu", *OS)
    assert packed.returncode == 0, packed.stderr
    for disk in (ours, theirs):
        check_clean(disk)
        assert qemu_compare(raw, "raw", disk, "qcow2").returncode == 0


def test_a_layout_the_writer_does_not_make_goes_to_qemu_img(tmp_path: Path) -> None:
    """compat 0.10 (version 2) and other cluster sizes are qemu-img's to write."""
    raw = tmp_path / "disk.raw"
    write_every_kind_of_cluster(raw)
    for option in ("compat=0.10", "cluster_size=128k"):
        out = tmp_path / f"{option[:6]}.qcow2"
        convert_compressed(raw, out, "-o", option)
        check_clean(out)
        assert qemu_compare(raw, "raw", out, "qcow2").returncode == 0
    assert header_fields(tmp_path / "compat.qcow2")["version"] == 2
    assert header_fields(tmp_path / "cluste.qcow2")["cluster_bits"] == 17


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_midway_leaves_nothing_and_no_qemu_nbd(tmp_path: Path, signum: int) -> None:
    """Random data as a qcow2, read through qemu-nbd on one thread: slow enough to be interrupted midway."""
    raw = tmp_path / "random.raw"
    with open(raw, "wb") as f:
        for _ in range(256):
            f.write(os.urandom(MiB))
    source = tmp_path / "random.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(source))
    raw.unlink()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = ["convert", "--compress", "--threads", "1", str(source), str(out_dir / "disk.qcow2")]
    code, stderr = interrupt_when(args, writing_started(out_dir), signum=signum)
    assert code == 128 + signum, stderr
    assert stderr.strip().splitlines() == ["imagepack: interrupted; nothing was written"]
    assert list(out_dir.iterdir()) == []
    assert qemu_nbd_serving(source) == []


def test_zlib_clusters_stay_inside_qemus_4_kib_window(tmp_path: Path) -> None:
    """Clusters that repeat a 6000-byte random block: a deflate with a 32 KiB window would match 6000 bytes back,
    which qemu's inflate (a 4 KiB window) refuses; within 4 KiB there is little to match (chance matches may
    still bring one just under a cluster), and a 2000-byte block repeated compresses."""
    raw = tmp_path / "far.raw"
    rng = random.Random(41)
    with open(raw, "wb") as f:
        for _ in range(8):
            f.write((rng.randbytes(6000) * 11)[:CLUSTER])
            f.write((rng.randbytes(2000) * 33)[:CLUSTER])  # 2000 bytes back: inside the window, compressed
        f.truncate(32 * MiB)
    out = tmp_path / "far.qcow2"
    convert_compressed(raw, out, "--threads", "2")
    check_clean(out)
    assert qemu_compare(raw, "raw", out, "qcow2").returncode == 0
    assert read_guest_disk(out, "qcow2") == read_guest_disk(raw, "raw")
    assert read_qcow2_header(out).compressed_clusters >= 8


@pytest.mark.parametrize(
    ("codec", "level"), [("zlib", "1"), ("zlib", "2"), ("zlib", "9"), ("zstd", "1"), ("zstd", "19")]
)
def test_a_level_sets_the_clusters_and_every_reader_reads_them(tmp_path: Path, codec: str, level: str) -> None:
    """zlib level 1 is ISA-L's in qemu's 4 KiB window, 2 to 9 zlib's; zstd takes its own levels. The default is
    qemu's level (zlib 6, zstd 3), as if asked for."""
    raw = tmp_path / "every.raw"
    write_every_kind_of_cluster(raw)
    out, default = tmp_path / "out.qcow2", tmp_path / "default.qcow2"
    convert_compressed(raw, out, "-o", f"compression_type={codec}", "--level", level, "--threads", "2")
    check_clean(out)
    assert qemu_compare(raw, "raw", out, "qcow2").returncode == 0
    assert read_guest_disk(out, "qcow2") == read_guest_disk(raw, "raw")
    assert read_qcow2_header(out).compressed_clusters == 10
    convert_compressed(raw, default, "-o", f"compression_type={codec}")
    assert sha256(out) != sha256(default)  # the level reached the clusters
    qemus = tmp_path / "qemus.qcow2"
    convert_compressed(raw, qemus, "-o", f"compression_type={codec}", "--level", "6" if codec == "zlib" else "3")
    assert sha256(qemus) == sha256(default)


def test_pack_compress_takes_a_level_and_the_member_reads_back(tmp_path: Path) -> None:
    raw = tmp_path / "disk.raw"
    write_every_kind_of_cluster(raw)
    fast, default = tmp_path / "fast.oci", tmp_path / "default.oci"
    for archive, level in ((fast, ["--level", "1"]), (default, [])):
        done = run_cli("pack", str(raw), str(archive), "--compress", *level, *OS)
        assert done.returncode == 0, done.stderr
    assert fast.read_bytes() != default.read_bytes()
    unpacked = run_cli("unpack", str(fast), "-d", str(tmp_path / "out"))
    assert unpacked.returncode == 0, unpacked.stderr
    disk = tmp_path / "out" / "fast.qcow2"
    check_clean(disk)
    assert qemu_compare(raw, "raw", disk, "qcow2").returncode == 0
    assert read_guest_disk(disk, "qcow2") == read_guest_disk(raw, "raw")


@pytest.mark.parametrize(
    ("command", "extra", "message"),
    [
        ("convert", ["--level", "10"], "level 10: a compressed qcow2's zlib clusters take 1 to 9"),
        ("convert", ["--level", "0"], "level 0: a compressed qcow2's zlib clusters take 1 to 9"),
        ("convert", ["-o", "compression_type=zstd", "--level", "23"], "zstd clusters take 1 to 22"),
        ("pack", ["--level", "10", *OS], "level 10: a compressed qcow2's zlib clusters take 1 to 9"),
        ("convert", ["--level", "6", "--stream-writer", "qemu"], "level 6: a level applies only to a compressed"),
        ("pack", ["--level", "6", "--stream-writer", "qemu", *OS], "level 6: a level applies only to a compressed"),
    ],
    ids=["zlib-10", "zlib-0", "zstd-23", "pack-zlib-10", "qemu-writes-it", "pack-qemu-writes-it"],
)
def test_a_level_the_clusters_have_not_is_refused_before_anything_is_written(
    tmp_path: Path, command: str, extra: list[str], message: str
) -> None:
    raw = tmp_path / "disk.raw"
    with open(raw, "wb") as f:
        f.write(b"text " * 100_000)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / ("disk.oci" if command == "pack" else "disk.qcow2")
    done = run_cli(command, str(raw), str(target), "--compress", *extra)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert list(out_dir.iterdir()) == []
