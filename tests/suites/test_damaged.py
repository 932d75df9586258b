"""Damaged inputs that qemu-img would read without complaint: a qcow2 cut short or with corrupt tables, a
truncated vmdk, and a VirtualBox VHD that qemu would size by its geometry and so lose the end of. Each is
refused (or read at its full size) before anything is written."""

from __future__ import annotations

import json
import os
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from imagepack.core.errors import EXIT_FAILURE, EXIT_USAGE
from imagepack.formats.partitions import PartitionTable, read_partition_layout
from imagepack.formats.vhd import vhd_checksum
from imagepack.writers.sample import write_sample_disk
from tests.conftest import file_digest, leftovers, qemu_img, run_cli
from tests.readers import qemu_compare, read_guest_disk
from tests.suites.test_refusals import assert_refused

MiB = 1024**2
VBOX_DISK = 20 * MiB
PACK_ARGS = ("--os", "Oracle Linux", "--os-version", "9", "--firmware", "UEFI_64")
# A refusal made from the header alone must not need qemu-img: with this, any call to it fails differently.
WITHOUT_QEMU_IMG = {**os.environ, "IMAGEPACK_QEMU_IMG": "/nonexistent/qemu-img"}


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


def qcow2_tables(path: Path) -> dict[str, int]:
    """Where the header puts the L1 and refcount tables, and the first L2 table and refcount block."""
    data = path.read_bytes()
    l1_offset, refcount_offset = struct.unpack_from(">QQ", data, 40)
    (l1_entry,) = struct.unpack_from(">Q", data, l1_offset)
    (refcount_block,) = struct.unpack_from(">Q", data, refcount_offset)
    return {
        "l1": l1_offset,
        "refcount_table": refcount_offset,
        "l2": l1_entry & 0x00FF_FFFF_FFFF_FE00,
        "refcount_block": refcount_block,
    }


def patch_u64(path: Path, offset: int, value: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack(">Q", value))


@pytest.fixture
def truncated_qcow2(make_image: Callable[..., Path]) -> Path:
    """A qcow2 with data, cut in the middle of its data clusters as an interrupted download leaves it."""
    path = make_image("qcow2", name="download.qcow2")
    tables = qcow2_tables(path)
    size = path.stat().st_size
    assert max(tables.values()) < size // 2  # the tables survive: only qemu-img check can see the loss
    subprocess.run(["truncate", "-s", str(size // 2), str(path)], check=True)
    return path


def assert_untouched(source: Path, before: tuple[str, int], out_dir: Path) -> None:
    assert file_digest(source) == before
    assert list(out_dir.iterdir()) == []
    assert leftovers(out_dir) == []


# --- qcow2 cut short ----------------------------------------------------------------------------------------------


def test_convert_refuses_a_truncated_qcow2_before_writing(truncated_qcow2: Path, out_dir: Path) -> None:
    before = file_digest(truncated_qcow2)
    done = run_cli("convert", str(truncated_qcow2), str(out_dir / "disk.raw"))
    assert_refused(done, EXIT_FAILURE, "damaged or truncated", "qemu-img check found", "complete copy")
    assert_untouched(truncated_qcow2, before, out_dir)


def test_pack_refuses_a_truncated_qcow2_before_writing(truncated_qcow2: Path, out_dir: Path) -> None:
    before = file_digest(truncated_qcow2)
    done = run_cli("pack", str(truncated_qcow2), str(out_dir / "disk.oci"), *PACK_ARGS)
    assert_refused(done, EXIT_FAILURE, "damaged or truncated", "corruptions")
    assert_untouched(truncated_qcow2, before, out_dir)


def test_info_shows_a_truncated_qcow2_as_unsafe_with_the_reason(truncated_qcow2: Path) -> None:
    done = run_cli("info", "--json", str(truncated_qcow2))
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["safe"] is False
    assert any(
        problem["code"] == "image.damaged" and "qemu-img check found" in problem["message"]
        for problem in found["problems"]
    ), found["problems"]


def test_verify_fails_on_a_truncated_qcow2(truncated_qcow2: Path) -> None:
    done = run_cli("verify", str(truncated_qcow2))
    assert done.returncode != 0
    assert "damaged or truncated" in done.stdout


def test_convert_refuses_a_qcow2_cut_before_its_l1_table_without_running_qemu(
    make_image: Callable[..., Path], out_dir: Path
) -> None:
    source = make_image("qcow2", name="short.qcow2")
    tables = qcow2_tables(source)
    subprocess.run(["truncate", "-s", str(tables["l1"]), str(source)], check=True)
    before = file_digest(source)
    done = run_cli("convert", str(source), str(out_dir / "disk.raw"), env=WITHOUT_QEMU_IMG)
    assert_refused(done, EXIT_FAILURE, "truncated", "L1 table", "complete copy")
    assert_untouched(source, before, out_dir)


def test_convert_refuses_a_qcow2_whose_l2_entry_points_at_its_own_l1_table(
    make_image: Callable[..., Path], out_dir: Path
) -> None:
    source = make_image("qcow2", name="crossed.qcow2")
    tables = qcow2_tables(source)
    (entry,) = struct.unpack(">Q", source.read_bytes()[tables["l2"] : tables["l2"] + 8])
    assert entry, "the sample's first cluster holds data"
    patch_u64(source, tables["l2"], (entry & ~0x00FF_FFFF_FFFF_FE00) | tables["l1"])
    before = file_digest(source)
    done = run_cli("convert", str(source), str(out_dir / "disk.raw"))
    assert_refused(done, EXIT_FAILURE, "damaged or truncated", "qemu-img check found")
    assert_untouched(source, before, out_dir)


def test_convert_refuses_a_qcow2_whose_refcount_table_entry_is_zeroed(
    make_image: Callable[..., Path], out_dir: Path
) -> None:
    source = make_image("qcow2", name="norefcount.qcow2")
    patch_u64(source, qcow2_tables(source)["refcount_table"], 0)
    before = file_digest(source)
    done = run_cli("convert", str(source), str(out_dir / "disk.raw"))
    assert_refused(done, EXIT_FAILURE, "damaged or truncated", "qemu-img check found")
    assert_untouched(source, before, out_dir)


def test_convert_accepts_a_qcow2_with_a_leaked_cluster(
    make_image: Callable[..., Path], sample_raw: Path, out_dir: Path
) -> None:
    source = make_image("qcow2", name="leaky.qcow2")
    tables = qcow2_tables(source)
    clusters = source.stat().st_size // 65536
    with open(source, "r+b") as f:  # one more cluster, counted as used but referenced by nothing
        f.truncate((clusters + 1) * 65536)
        f.seek(tables["refcount_block"] + 2 * clusters)
        f.write(struct.pack(">H", 1))
    checked = subprocess.run(["qemu-img", "check", "-f", "qcow2", str(source)], capture_output=True, check=False)
    assert checked.returncode == 3, checked.stderr  # leaks only
    target = out_dir / "disk.raw"
    done = run_cli("convert", str(source), str(target))
    assert done.returncode == 0, done.stderr
    assert qemu_compare(sample_raw, "raw", target, "raw").returncode == 0


def test_convert_refuses_a_crashed_qcow2_with_stale_lazy_refcounts(tmp_path: Path, out_dir: Path) -> None:
    source = tmp_path / "crashed.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", str(source), "8M")
    # qemu-io's abort leaves the image as a VM crash does: data written, dirty flag set, refcounts not.
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 1M", "-c", "abort", str(source)],
        capture_output=True,
        check=False,
    )
    assert struct.unpack(">Q", source.read_bytes()[72:80])[0] & 1, "the dirty bit is set"
    done = run_cli("convert", str(source), str(out_dir / "disk.raw"))
    assert_refused(done, EXIT_FAILURE, "not closed cleanly", "qemu-img check -r all")
    assert list(out_dir.iterdir()) == []


# --- other formats qemu-img check can read ------------------------------------------------------------------------


def test_convert_refuses_a_truncated_monolithic_sparse_vmdk(make_image: Callable[..., Path], out_dir: Path) -> None:
    source = make_image("vmdk", name="download.vmdk", options="subformat=monolithicSparse")
    subprocess.run(["truncate", "-s", str(source.stat().st_size // 2), str(source)], check=True)
    before = file_digest(source)
    done = run_cli("convert", str(source), str(out_dir / "disk.raw"))
    assert_refused(done, EXIT_FAILURE, "damaged or truncated", "points after EOF")
    assert_untouched(source, before, out_dir)


def test_convert_refuses_a_truncated_vdi_that_qemu_img_check_passes(
    make_image: Callable[..., Path], out_dir: Path
) -> None:
    source = make_image("vdi", name="download.vdi")
    subprocess.run(["truncate", "-s", str(source.stat().st_size // 2), str(source)], check=True)
    checked = subprocess.run(["qemu-img", "check", "-f", "vdi", str(source)], capture_output=True, check=False)
    assert checked.returncode == 0  # qemu sees nothing wrong: only the header against the file size tells
    before = file_digest(source)
    done = run_cli("convert", str(source), str(out_dir / "disk.raw"), env=WITHOUT_QEMU_IMG)
    assert_refused(done, EXIT_FAILURE, "truncated", "vdi blocks", "complete copy")
    assert_untouched(source, before, out_dir)


def test_convert_of_a_oci_archive_refuses_its_corrupt_disk(
    make_image: Callable[..., Path], tmp_path: Path, out_dir: Path
) -> None:
    disk = make_image("qcow2", name="good.qcow2")
    archive = tmp_path / "disk.oci"
    packed = run_cli("pack", str(disk), str(archive), *PACK_ARGS)
    assert packed.returncode == 0, packed.stderr
    described = json.loads(run_cli("info", "--json", str(archive)).stdout)
    (member,) = [m for m in described["members"] if m["name"] == "output.QCOW2"]
    # The archive's disk is qcow2 as qemu-img wrote it: its refcount table sits where the header says.
    (refcount_offset,) = struct.unpack(">Q", disk.read_bytes()[48:56])
    patch_u64(archive, member["data_offset"] + refcount_offset, 0)
    before = file_digest(archive)
    done = run_cli("convert", str(archive), str(out_dir / "disk.raw"))
    assert_refused(done, EXIT_FAILURE, "damaged or truncated", "qemu-img check found")
    assert_untouched(archive, before, out_dir)


# --- a VHD written by VirtualBox ----------------------------------------------------------------------------------


def vhd_geometry(size: int) -> tuple[int, int, int]:
    """The VHD specification's CHS for a disk of `size` bytes (what VirtualBox and Virtual PC write)."""
    total = min(size // 512, 65535 * 16 * 255)
    if total >= 65535 * 16 * 63:
        sectors, heads = 255, 16
        cylinders_heads = total // sectors
    else:
        sectors = 17
        cylinders_heads = total // sectors
        heads = max((cylinders_heads + 1023) // 1024, 4)
        if cylinders_heads >= heads * 1024 or heads > 16:
            sectors, heads = 31, 16
            cylinders_heads = total // sectors
        if cylinders_heads >= heads * 1024:
            sectors, heads = 63, 16
            cylinders_heads = total // sectors
    return cylinders_heads // heads, heads, sectors


def as_virtualbox_vhd(path: Path) -> int:
    """Rewrite every footer copy as VirtualBox writes it (creator 'vbox', the specification's CHS geometry,
    checksum recomputed); returns the geometry's size in bytes."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        for where in (0, size - 512):
            f.seek(where)
            footer = bytearray(f.read(512))
            if footer[:8] != b"conectix":
                continue
            (current_size,) = struct.unpack_from(">Q", footer, 48)
            cylinders, heads, sectors = vhd_geometry(current_size)
            footer[28:32] = b"vbox"
            struct.pack_into(">HBB", footer, 56, cylinders, heads, sectors)
            struct.pack_into(">I", footer, 64, vhd_checksum(bytes(footer), 64))
            f.seek(where)
            f.write(footer)
    return cylinders * heads * sectors * 512


@pytest.fixture(params=["dynamic", "fixed"])
def vbox_vhd(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Path]:
    """A 20 MiB GPT disk as VirtualBox writes it to a VHD, and the raw disk it was made from."""
    sample = tmp_path / "vbox-sample.raw"
    write_sample_disk(sample, VBOX_DISK)
    vhd = tmp_path / f"vbox-{request.param}.vhd"
    qemu_img(
        "convert", "-f", "raw", "-O", "vpc", "-o", f"force_size=on,subformat={request.param}", str(sample), str(vhd)
    )
    geometry = as_virtualbox_vhd(vhd)
    assert geometry < VBOX_DISK  # what qemu would read by itself
    return vhd, sample


def test_convert_of_a_virtualbox_vhd_keeps_the_whole_disk(vbox_vhd: tuple[Path, Path], out_dir: Path) -> None:
    vhd, sample = vbox_vhd
    before = file_digest(vhd)
    target = out_dir / "disk.raw"
    done = run_cli("convert", str(vhd), str(target))
    assert done.returncode == 0, done.stderr
    assert target.stat().st_size == VBOX_DISK
    with open(target, "rb") as f:
        f.seek(VBOX_DISK - 512)
        assert f.read(8) == b"EFI PART"  # the backup GPT header, in the disk's last sector
    assert qemu_compare(sample, "raw", target, "raw").returncode == 0
    assert read_guest_disk(vhd, "vhd") == read_guest_disk(target, "raw")
    assert f"using {VBOX_DISK} (current_size)" in done.stderr
    assert file_digest(vhd) == before


def test_pack_of_a_virtualbox_vhd_keeps_the_whole_disk(vbox_vhd: tuple[Path, Path], out_dir: Path) -> None:
    vhd, _ = vbox_vhd
    archive = out_dir / "disk.oci"
    done = run_cli("pack", str(vhd), str(archive), *PACK_ARGS)
    assert done.returncode == 0, done.stderr
    described = json.loads(run_cli("info", "--json", str(archive)).stdout)
    assert described["disk"]["virtual_size"] == VBOX_DISK


def test_vhd_size_chs_refuses_a_gpt_disk_that_would_lose_its_end(vbox_vhd: tuple[Path, Path], out_dir: Path) -> None:
    vhd, _ = vbox_vhd
    done = run_cli("convert", "--vhd-size", "CHS", str(vhd), str(out_dir / "disk.raw"))
    assert done.returncode == EXIT_FAILURE
    errors = [line for line in done.stderr.splitlines() if line.startswith("imagepack: error: ")]
    assert len(errors) == 1, done.stderr
    assert "partition table ends at byte 20971520" in errors[0]
    assert list(out_dir.iterdir()) == []


def test_vhd_size_chs_reads_the_geometry_size(tmp_path: Path, out_dir: Path) -> None:
    plain = tmp_path / "plain.raw"
    write_sample_disk(plain, VBOX_DISK, gpt=False)
    vhd = tmp_path / "plain.vhd"
    qemu_img("convert", "-f", "raw", "-O", "vpc", "-o", "force_size=on", str(plain), str(vhd))
    geometry = as_virtualbox_vhd(vhd)
    target = out_dir / "disk.raw"
    done = run_cli("convert", "--vhd-size", "chs", str(vhd), str(target))
    assert done.returncode == 0, done.stderr
    assert target.stat().st_size == geometry
    assert f"using {geometry} (chs)" in done.stderr


def test_vhd_size_refuses_an_unknown_choice(vbox_vhd: tuple[Path, Path], out_dir: Path) -> None:
    vhd, _ = vbox_vhd
    done = run_cli("convert", "--vhd-size", "footer", str(vhd), str(out_dir / "disk.raw"))
    assert_refused(done, EXIT_USAGE, "--vhd-size", "current | chs")


# --- partition tables that claim more than the disk ---------------------------------------------------------------


def test_convert_refuses_a_raw_gpt_disk_cut_short(tmp_path: Path, out_dir: Path) -> None:
    source = tmp_path / "short.raw"
    write_sample_disk(source, 8 * MiB)
    subprocess.run(["truncate", "-s", str(6 * MiB), str(source)], check=True)
    done = run_cli("convert", str(source), str(out_dir / "disk.qcow2"))
    assert_refused(done, EXIT_FAILURE, "GPT partition table ends at byte 8388608", "6291456 bytes")
    assert list(out_dir.iterdir()) == []


def mbr(*partitions: tuple[int, int, int], status: int = 0) -> bytes:
    """A boot sector with (type, first sector, sector count) entries."""
    sector = bytearray(512)
    for i, (kind, first, count) in enumerate(partitions):
        sector[446 + 16 * i : 462 + 16 * i] = struct.pack("<B3sB3sII", status, b"\0" * 3, kind, b"\0" * 3, first, count)
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


def test_mbr_layout_ends_at_its_furthest_partition() -> None:
    layout = read_partition_layout(mbr((0x83, 2048, 4096), (0x82, 10_000, 100)))
    assert layout.table is PartitionTable.MBR
    assert layout.table_end == 10_100 * 512


def test_boot_sector_that_is_not_a_partition_table_claims_no_end() -> None:
    layout = read_partition_layout(mbr((0x83, 2048, 0xFFFF_FFF0), status=0x4E))  # boot code, not entries
    assert layout.table_end is None


def test_gpt_layout_ends_at_its_backup_header(tmp_path: Path) -> None:
    disk = tmp_path / "gpt.raw"
    write_sample_disk(disk, 4 * MiB)
    layout = read_partition_layout(disk.read_bytes()[: 64 * 1024])
    assert layout.table is PartitionTable.GPT
    assert layout.table_end == 4 * MiB
