"""imagepack's own stream-optimized vmdk writer: every kind of grain reads back through qemu-img, dissect, libvmdk
and 7-Zip; the header and descriptor say what ESXi expects; --stream-writer qemu keeps qemu-img's; interrupted or
out of room, nothing is left and no qemu-nbd outlives the run."""

from __future__ import annotations

import os
import random
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import holds_open, interrupt_when, leftovers, qemu_img, run_cli
from tests.readers import (
    qemu_compare,
    qemu_info,
    read_guest_disk,
    read_guest_disk_7zip,
    read_guest_disk_libvmdk,
    read_vmdk_extent_names,
    read_vmdk_header,
)

MiB = 1024**2
GRAIN = 64 * 1024
STREAM = ("-o", "subformat=streamOptimized")
GD_AT_END = 0xFFFFFFFFFFFFFFFF


def write_every_kind_of_grain(path: Path) -> int:
    """A disk whose size is not a whole number of grains, holding: random grains, compressible text, grains of
    written zeroes, holes, a half-written grain, data past the first grain table's 32 MiB with an empty grain
    table between, and a short last grain with data in it."""
    size = 70 * MiB + 3 * 512  # the last grain holds 1.5 KiB
    rng = random.Random(13)
    with open(path, "wb") as f:
        f.truncate(size)
        f.write(rng.randbytes(3 * GRAIN))  # random: incompressible grains
        f.write((b"the quick brown fox jumps over the lazy dog\n" * 5000)[: 5 * GRAIN])  # compressible
        f.write(bytes(4 * GRAIN))  # zeroes written, not a hole: still skipped
        f.seek(20 * GRAIN + 1000)
        f.write(b"partial grain")  # one grain with a few bytes of data
        f.seek(66 * MiB)  # 64-96 MiB: the third grain table; the second (32-64 MiB) maps nothing
        f.write(rng.randbytes(GRAIN + 4096))
        f.seek(size - 700)
        f.write(b"end of disk" * 50)
    return size


def convert_stream(source: Path, target: Path, *extra: str) -> None:
    done = run_cli("convert", *STREAM, *extra, str(source), str(target))
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("source_format", ["raw", "qcow2"])
def test_every_kind_of_grain_reads_back_through_every_reader(tmp_path: Path, source_format: str) -> None:
    raw = tmp_path / "every.raw"
    size = write_every_kind_of_grain(raw)
    source = raw
    if source_format == "qcow2":
        source = tmp_path / "every.qcow2"
        qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(source))
    out = tmp_path / "out.vmdk"
    convert_stream(source, out, "--threads", "2")
    # qemu-img rounds a vmdk up to whole sectors; the source is whole sectors already.
    assert qemu_compare(raw, "raw", out, "vmdk").returncode == 0
    assert subprocess.run(["qemu-img", "check", "-f", "vmdk", str(out)], capture_output=True).returncode == 0
    expected = read_guest_disk(raw, "raw")
    assert read_guest_disk(out, "vmdk") == expected
    assert read_guest_disk_libvmdk(out) == expected
    assert read_guest_disk_7zip(out, tmp_path) == expected
    assert expected.virtual_size == size


def test_header_and_descriptor_are_what_esxi_expects(tmp_path: Path) -> None:
    raw = tmp_path / "disk.raw"
    write_every_kind_of_grain(raw)
    out = tmp_path / "disk.vmdk"
    convert_stream(raw, out, "-o", "adapter_type=lsilogic", "-o", "hwversion=14")
    with open(out, "rb") as f:
        magic, version, flags = struct.unpack("<4sII", f.read(12))
        f.seek(56)
        (gd_offset,) = struct.unpack("<Q", f.read(8))
        f.seek(-3 * 512, os.SEEK_END)
        footer_marker = f.read(512)
        footer = f.read(512)
        eos = f.read(512)
    assert (magic, version, flags) == (b"KDMV", 3, 1 | 1 << 16 | 1 << 17)
    assert gd_offset == GD_AT_END  # the directory follows the grains; the footer says where
    assert struct.unpack_from("<QII", footer_marker) == (1, 0, 3)
    assert footer[:4] == b"KDMV" and struct.unpack_from("<Q", footer, 56)[0] != GD_AT_END
    assert eos == bytes(512)
    header = read_vmdk_header(out)
    assert (header.create_type, header.adapter_type, header.compress_algorithm) == ("streamOptimized", "lsilogic", 1)
    assert read_vmdk_extent_names(out) == ["disk.vmdk"]  # the final name, never the temporary's
    descriptor = out.read_bytes()[512 : 21 * 512].decode()
    assert 'ddb.virtualHWVersion = "14"' in descriptor
    assert 'ddb.geometry.heads = "255"' in descriptor and 'ddb.geometry.sectors = "63"' in descriptor
    assert qemu_info(out, "vmdk")["format-specific"]["data"]["create-type"] == "streamOptimized"


def test_the_output_is_no_bigger_than_qemu_imgs_at_the_same_level(tmp_path: Path) -> None:
    """Same zlib level, same grains; qemu-img also reserves every grain table up front, so ours may be smaller."""
    raw = tmp_path / "disk.raw"
    write_every_kind_of_grain(raw)
    ours, theirs = tmp_path / "ours.vmdk", tmp_path / "theirs.vmdk"
    convert_stream(raw, ours)
    qemu_img("convert", "-f", "raw", "-O", "vmdk", *STREAM, str(raw), str(theirs))
    assert ours.stat().st_size <= theirs.stat().st_size * 1.02


def test_stream_writer_qemu_keeps_qemu_imgs_writer(tmp_path: Path) -> None:
    raw = tmp_path / "disk.raw"
    write_every_kind_of_grain(raw)
    out = tmp_path / "disk.vmdk"
    convert_stream(raw, out, "--stream-writer", "qemu")
    with open(out, "rb") as f:
        f.seek(56)
        (gd_offset,) = struct.unpack("<Q", f.read(8))
    assert gd_offset != GD_AT_END  # qemu-img places its grain directory before the grains
    assert qemu_compare(raw, "raw", out, "vmdk").returncode == 0


def test_a_compressed_qcow2_on_several_threads_is_identical_and_clean(tmp_path: Path) -> None:
    raw = tmp_path / "disk.raw"
    write_every_kind_of_grain(raw)
    out = tmp_path / "disk.qcow2"
    done = run_cli("convert", "--compress", "--threads", "2", str(raw), str(out))
    assert done.returncode == 0, done.stderr
    assert qemu_compare(raw, "raw", out, "qcow2").returncode == 0
    assert subprocess.run(["qemu-img", "check", "-f", "qcow2", str(out)], capture_output=True).returncode == 0
    assert read_guest_disk(out, "qcow2") == read_guest_disk(raw, "raw")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--threads", "0", *STREAM), "threads 0: give at least one"),
        (("--stream-writer", "vmware", *STREAM), "--stream-writer vmware: use one of imagepack | qemu"),
        (("--threads", "2"), "threads apply to a compressed output"),
    ],
)
def test_bad_threads_or_writer_is_a_usage_error(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    raw = tmp_path / "disk.raw"
    write_every_kind_of_grain(raw)
    out = tmp_path / "disk.vmdk"
    done = run_cli("convert", *args, str(raw), str(out))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imagepack: error: ") and message in lines[0], done.stderr
    assert not out.exists() and not leftovers(tmp_path)


def incompressible_qcow2(path: Path, size: int) -> None:
    """Random data as a qcow2: read through qemu-nbd, which must not outlive an interrupted run."""
    raw = path.with_suffix(".raw")
    with open(raw, "wb") as f:
        for _ in range(size // MiB):
            f.write(os.urandom(MiB))
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(path))
    raw.unlink()


def text_qcow2(path: Path, size: int) -> None:
    """Random hex text as a qcow2: it compresses, so each grain costs the deflate's work (random bytes are stored as
    they are, too fast to interrupt midway)."""
    raw = path.with_suffix(".raw")
    with open(raw, "wb") as f:
        for _ in range(size // MiB):
            f.write(os.urandom(MiB // 2).hex().encode())
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(path))
    raw.unlink()


def qemu_nbd_serving(source: Path) -> list[str]:
    """qemu-nbd processes still exporting `source` (read from /proc, so nothing is signalled)."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            argv = Path("/proc", pid, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        named = any(str(source).encode() in a for a in argv)
        if argv and argv[0].endswith(b"qemu-nbd") and (named or holds_open(int(pid), source)):
            found.append(pid)
    return found


def writing_started(folder: Path) -> Callable[[], bool]:
    def ready() -> bool:
        return any(p.stat().st_size > 0 for d in folder.glob(".*.imagepack-*") for p in d.iterdir())

    return ready


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_midway_leaves_nothing_and_no_qemu_nbd(tmp_path: Path, signum: int) -> None:
    source = tmp_path / "text.qcow2"
    text_qcow2(source, 192 * MiB)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = ["convert", *STREAM, "--threads", "1", str(source), str(out_dir / "disk.vmdk")]
    code, stderr = interrupt_when(args, writing_started(out_dir), signum=signum)
    assert code == 128 + signum, stderr
    assert stderr.strip().splitlines() == ["imagepack: interrupted; nothing was written"]
    assert list(out_dir.iterdir()) == []
    assert qemu_nbd_serving(source) == []


def test_a_file_system_filling_up_midway_leaves_nothing(tmp_path: Path, mount_tmpfs: Callable[[str], Path]) -> None:
    source = tmp_path / "random.qcow2"
    incompressible_qcow2(source, 48 * MiB)
    small = mount_tmpfs("64M")
    target = small / "disk.vmdk"
    proc = subprocess.Popen(
        [sys.executable, "-m", "imagepack", "convert", *STREAM, "--threads", "1", str(source), str(target)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    filler = small / "filler"
    try:
        ready = writing_started(small)
        deadline = time.monotonic() + 60
        while not ready():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with open(filler, "wb") as f:  # another writer takes the room the estimate counted on
            try:
                while True:
                    f.write(bytes(MiB))
                    f.flush()
            except OSError:
                pass
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and f"no space left on {small}: free " in lines[0], stderr
    filler.unlink()
    assert list(small.iterdir()) == []
    assert qemu_nbd_serving(source) == []


def test_a_stream_vmdk_from_inside_a_oci_and_unpacked_from_one_is_the_disk(tmp_path: Path) -> None:
    """The source is a member of an archive (qemu-nbd reads it through the raw driver's offset)."""
    raw = tmp_path / "disk.raw"
    write_every_kind_of_grain(raw)
    archive = tmp_path / "disk.oci"
    packed = run_cli("pack", str(raw), str(archive), "--os", "Oracle Linux", "--os-version", "9", "--firmware", "BIOS")
    assert packed.returncode == 0, packed.stderr
    out = tmp_path / "from-oci.vmdk"
    convert_stream(archive, out)
    assert qemu_compare(raw, "raw", out, "vmdk").returncode == 0
    done = run_cli("unpack", str(archive), "-d", str(tmp_path / "x"), "--to", "vmdk", *STREAM, "--threads", "2")
    assert done.returncode == 0, done.stderr
    unpacked = tmp_path / "x" / "disk.vmdk"
    assert read_vmdk_extent_names(unpacked) == ["disk.vmdk"]
    assert read_guest_disk_libvmdk(unpacked) == read_guest_disk(raw, "raw")


def test_a_raw_disk_inside_a_tar_is_read_in_place_at_its_offset(tmp_path: Path) -> None:
    """A plain GCE tarball's disk.raw is a raw region of the tar: read directly, from the member's offset."""
    folder = tmp_path / "gce"
    folder.mkdir()
    write_every_kind_of_grain(folder / "disk.raw")
    tarball = tmp_path / "disk.tar"
    subprocess.run(["tar", "--format=oldgnu", "-cf", str(tarball), "-C", str(folder), "disk.raw"], check=True)
    out = tmp_path / "disk.vmdk"
    convert_stream(tarball, out)
    assert read_guest_disk_libvmdk(out) == read_guest_disk(folder / "disk.raw", "raw")


def test_without_qemu_nbd_a_qcow2_source_is_refused_in_one_line(tmp_path: Path) -> None:
    raw = tmp_path / "disk.raw"
    write_every_kind_of_grain(raw)
    source = tmp_path / "disk.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(source))
    out = tmp_path / "out.vmdk"
    env = {**os.environ, "IMAGEPACK_QEMU_NBD": str(tmp_path / "no-such-qemu-nbd")}
    done = run_cli("convert", *STREAM, str(source), str(out), env=env)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imagepack: error: ") and "qemu-nbd" in lines[0], done.stderr
    assert f"IMAGEPACK_QEMU_NBD={tmp_path / 'no-such-qemu-nbd'} is not an executable" in lines[0]
    assert lines[0].endswith("; pass --stream-writer qemu to have qemu-img write it")
    assert not out.exists() and not leftovers(tmp_path)
