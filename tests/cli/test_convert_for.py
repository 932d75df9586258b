"""convert --for TARGET: each platform's file, read back by readers that share no code with qemu-img (dissect,
GNU tar and bsdtar, sgdisk), and the refusals of what a platform would not take."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
from pathlib import Path

import pytest
from dissect.hypervisor import vdi, vhdx, vmdk  # type: ignore[import-untyped]

from imagepack.core.errors import EXIT_FAILURE, EXIT_USAGE
from imagepack.writers.sample import write_data_disk, write_sample_disk
from tests.conftest import ODD_SIZE, file_digest, interrupt_when, leftovers, run_cli
from tests.readers import (
    VHD_FIXED,
    qemu_compare,
    read_guest_disk,
    read_vhd_footer,
    read_vmdk_header,
)

MiB = 1024**2
GiB = 1024**3
SECTOR = 512
AZURE_SIZE = 21 * MiB  # a whole number of MiB, above Azure's 20 MiB minimum
UNALIGNED = 25 * MiB + 7 * SECTOR  # whole sectors, not a whole MiB


def sample(tmp_path: Path, size: int, *, gpt: bool = True, name: str = "sample.raw") -> Path:
    path = tmp_path / name
    write_sample_disk(path, size, gpt=gpt)
    return path


def json_of(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def guest_bytes(path: Path, fmt: str, out: Path) -> Path:
    """The guest disk as a raw file, read by dissect (raw: the file itself), for tools that read raw disks."""
    from dissect.hypervisor import vhd

    if fmt == "raw":
        return path
    with open(path, "rb") as f, open(out, "wb") as sink:
        disk = vhd.VHD(f)
        shutil.copyfileobj(disk, sink, 1024**2)
    return out


def sgdisk_verify(raw: Path) -> str:
    done = subprocess.run(["sgdisk", "-v", str(raw)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No problems found" in done.stdout, done.stdout
    return done.stdout


def gpt_header_at(raw: Path, lba: int) -> tuple[bytes, int, int, int, int]:
    """(signature, my LBA, alternate LBA, last usable LBA, entries LBA) of the header in sector `lba`."""
    with open(raw, "rb") as f:
        f.seek(lba * SECTOR)
        sector = f.read(SECTOR)
    signature, _rev, _size, _crc, _res, mine, alternate, _first, last_usable = struct.unpack_from("<8sIIIIQQQQ", sector)
    (entries,) = struct.unpack_from("<Q", sector, 72)
    return signature, mine, alternate, last_usable, entries


def assert_grown_copy(source: Path, grown: Path, new_size: int) -> None:
    """The grown disk holds the source's partitions' bytes unchanged, zeroes where the old backup was and
    beyond, and its GPT (primary at LBA 1, backup at the last LBA) is one sgdisk finds no problem with."""
    old_size = source.stat().st_size
    assert grown.stat().st_size == new_size
    sgdisk_verify(grown)
    last = new_size // SECTOR - 1
    assert gpt_header_at(grown, 1)[:4] == (b"EFI PART", 1, last, last - 33)
    assert gpt_header_at(grown, last)[:3] == (b"EFI PART", last, 1)
    assert gpt_header_at(grown, last)[4] == last - 32
    with open(source, "rb") as a, open(grown, "rb") as b:
        a.seek(34 * SECTOR)
        b.seek(34 * SECTOR)
        assert a.read(old_size - 67 * SECTOR) == b.read(old_size - 67 * SECTOR)
    assert all_zero(grown, old_size - 33 * SECTOR, new_size - 33 * SECTOR)


def all_zero(path: Path, start: int, end: int) -> bool:
    """Whether bytes [start, end) of `path` are zeroes; holes are skipped, not read (a GiB of them is quick)."""
    with open(path, "rb") as f:
        fd = f.fileno()
        offset = start
        while offset < end:
            try:
                offset = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:  # ENXIO: no data after offset
                return True
            stop = min(os.lseek(fd, offset, os.SEEK_HOLE), end)
            f.seek(offset)
            while offset < stop:
                chunk = f.read(min(MiB, stop - offset))
                if chunk.count(0) != len(chunk):
                    return False
                offset += len(chunk)
    return True


# --- Azure ------------------------------------------------------------------------------------------------------


def test_for_azure_writes_a_fixed_vhd_whose_file_is_the_virtual_size_plus_a_footer(tmp_path: Path) -> None:
    source = sample(tmp_path, AZURE_SIZE)
    out = tmp_path / "disk.vhd"
    result = json_of(run_cli("convert", str(source), str(out), "--for", "azure", "--json"))
    assert result["preset"] == "azure"
    assert out.stat().st_size == AZURE_SIZE + 512
    footer = read_vhd_footer(out)
    assert (footer.disk_type, footer.current_size) == (VHD_FIXED, AZURE_SIZE)
    assert read_guest_disk(out, "vhd") == read_guest_disk(source, "raw")
    assert qemu_compare(source, "raw", out, "vhd").returncode == 0


def test_for_with_checksum_reports_the_sha256_of_the_file_written(tmp_path: Path) -> None:
    source = sample(tmp_path, AZURE_SIZE)
    out = tmp_path / "disk.vhd"
    result = json_of(run_cli("convert", str(source), str(out), "--for", "azure", "--checksum", "--json"))
    assert result["checksum"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()


def test_for_azure_refuses_a_size_not_a_whole_mib_and_names_the_size_it_would_need(tmp_path: Path) -> None:
    source = sample(tmp_path, UNALIGNED)
    done = run_cli("convert", str(source), str(tmp_path / "disk.vhd"), "--for", "azure")
    assert done.returncode == EXIT_FAILURE
    assert "not a whole number of MiB" in done.stderr
    assert f"{26 * MiB:,}" in done.stderr and "--resize-up" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample.raw"]


def test_resize_up_for_azure_grows_the_output_and_moves_the_gpt_backup_to_the_last_lba(tmp_path: Path) -> None:
    source = sample(tmp_path, UNALIGNED)
    before = file_digest(source)
    out = tmp_path / "disk.vhd"
    result = json_of(run_cli("convert", str(source), str(out), "--for", "azure", "--resize-up", "--json"))
    assert file_digest(source) == before
    assert result["virtual_size"] == 26 * MiB
    (note,) = [p for p in result["problems"] if p["code"] == "preset.resized"]  # type: ignore[union-attr,index]
    assert note["severity"] == "note" and f"{26 * MiB - UNALIGNED:,} bytes" in note["message"]
    assert out.stat().st_size == 26 * MiB + 512
    assert read_vhd_footer(out).current_size == 26 * MiB
    assert_grown_copy(source, guest_bytes(out, "vhd", tmp_path / "guest.raw"), 26 * MiB)
    # 7-Zip reads the VHD and the moved GPT in it with code of its own: the partitions, byte for byte.
    extracted = tmp_path / "7z"
    subprocess.run(["7zz", "x", f"-o{extracted}", str(out)], check=True, capture_output=True)
    assert sorted(p.name for p in extracted.iterdir()) == ["0.EFI System.img", "1.root.img"]
    with open(source, "rb") as f:
        f.seek(2048 * SECTOR)
        assert (extracted / "0.EFI System.img").read_bytes() == f.read(2048 * SECTOR)
        assert (extracted / "1.root.img").read_bytes() == f.read(UNALIGNED - 4096 * SECTOR - 33 * SECTOR)


def test_resize_up_grows_a_small_disk_to_azures_minimum(tmp_path: Path) -> None:
    source = sample(tmp_path, ODD_SIZE)
    out = tmp_path / "disk.vhd"
    json_of(run_cli("convert", str(source), str(out), "--for", "azure", "--resize-up", "--json"))
    assert read_vhd_footer(out).current_size == 20 * MiB
    assert_grown_copy(source, guest_bytes(out, "vhd", tmp_path / "guest.raw"), 20 * MiB)


def test_resize_up_refuses_a_gpt_whose_header_crc_is_wrong_and_leaves_nothing(tmp_path: Path) -> None:
    source = sample(tmp_path, UNALIGNED)
    with open(source, "r+b") as f:
        f.seek(SECTOR + 16)
        f.write(b"\xde\xad\xbe\xef")  # the primary header's CRC32
    done = run_cli("convert", str(source), str(tmp_path / "disk.vhd"), "--for", "azure", "--resize-up")
    assert done.returncode == EXIT_FAILURE
    assert "GPT cannot be moved" in done.stderr and "sgdisk -e" in done.stderr
    assert "disk.vhd" in done.stderr and ".imagepack-" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample.raw"]


def test_resize_up_of_an_mbr_disk_grows_it_and_leaves_its_table_alone(tmp_path: Path) -> None:
    source = sample(tmp_path, UNALIGNED, gpt=False)
    with open(source, "r+b") as f:  # one Linux partition from sector 2048 to the old end
        f.seek(446)
        f.write(struct.pack("<B3sB3sII", 0, b"\0\0\0", 0x83, b"\0\0\0", 2048, UNALIGNED // SECTOR - 2048))
        f.seek(510)
        f.write(b"\x55\xaa")
    out = tmp_path / "disk.vhd"
    json_of(run_cli("convert", str(source), str(out), "--for", "azure", "--resize-up", "--json"))
    assert read_vhd_footer(out).current_size == 26 * MiB
    assert qemu_compare(source, "raw", out, "vhd").returncode == 0  # the same bytes, then zeroes


# --- GCP --------------------------------------------------------------------------------------------------------


def test_for_gcp_writes_disk_raw_alone_in_a_sparse_oldgnu_tar_gz_of_a_whole_gib(tmp_path: Path) -> None:
    source = sample(tmp_path, UNALIGNED)
    out = tmp_path / "image.tar.gz"
    result = json_of(run_cli("convert", str(source), str(out), "--for", "gcp", "--resize-up", "--json"))
    assert (result["format"], result["compression"], result["virtual_size"]) == ("gce", "gzip", GiB)
    assert out.stat().st_size < 1 * MiB  # the holes were not stored
    gnu = subprocess.run(["tar", "-tvzf", str(out)], capture_output=True, text=True, check=True).stdout
    bsd = subprocess.run(["bsdtar", "-tvzf", str(out)], capture_output=True, text=True, check=True).stdout
    assert [line.split()[-1] for line in gnu.splitlines()] == ["disk.raw"]
    assert [line.split()[-1] for line in bsd.splitlines()] == ["disk.raw"]
    assert f" {GiB} " in gnu
    with gzip.open(out, "rb") as f:
        header = f.read(512)
    assert header[257:265] == b"ustar  \0"  # the old GNU format's magic, not POSIX's "ustar\000"
    assert header[156:157] == b"S"  # a GNU sparse member
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "-xSzf", str(out), "-C", str(unpacked)], check=True)
    assert_grown_copy(source, unpacked / "disk.raw", GiB)


def test_for_gcp_refuses_a_disk_not_a_whole_gib_without_resize_up(tmp_path: Path) -> None:
    source = sample(tmp_path, UNALIGNED)
    done = run_cli("convert", str(source), str(tmp_path / "image.tar.gz"), "--for", "gcp")
    assert done.returncode == EXIT_FAILURE
    assert "not a whole number of GiB" in done.stderr and f"{GiB:,}" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample.raw"]


def test_for_gcp_takes_a_disk_already_a_whole_gib_as_it_is(tmp_path: Path) -> None:
    source = sample(tmp_path, GiB)
    out = tmp_path / "image.tar.gz"
    json_of(run_cli("convert", str(source), str(out), "--for", "gcp", "--json"))
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(["bsdtar", "-xzf", str(out), "-C", str(unpacked)], check=True)
    assert (unpacked / "disk.raw").stat().st_size == GiB
    assert qemu_compare(source, "raw", unpacked / "disk.raw", "raw").returncode == 0


def test_an_interrupted_gcp_tarball_leaves_nothing_behind(tmp_path: Path) -> None:
    source = tmp_path / "data.raw"
    write_data_disk(source, GiB, 64 * MiB)  # random data: gzip takes seconds over it
    out = tmp_path / "out"
    out.mkdir()

    def compressing() -> bool:
        """The tar is written (in a hidden directory) and the .tar.gz is being written into its own."""
        names = leftovers(out)
        return len(names) == 2 and any(name.startswith(".image.tar.gz") for name in names)

    code, stderr = interrupt_when(["convert", str(source), str(out / "image.tar.gz"), "--for", "gcp"], compressing)
    assert code == 128 + signal.SIGTERM, stderr
    assert stderr.strip().splitlines() == ["imagepack: interrupted; nothing was written"]
    assert list(out.iterdir()) == []


# --- The VMDK presets, VirtualBox, Hyper-V, OCI -----------------------------------------------------------------


@pytest.mark.parametrize("preset", ["aws", "esxi", "vsphere"])
def test_vmdk_presets_write_a_stream_optimized_vmdk_an_independent_reader_reads(tmp_path: Path, preset: str) -> None:
    source = sample(tmp_path, ODD_SIZE)
    out = tmp_path / "disk.vmdk"
    json_of(run_cli("convert", str(source), str(out), "--for", preset, "--json"))
    header = read_vmdk_header(out)
    assert header.create_type == "streamOptimized"
    assert read_guest_disk(out, "vmdk") == read_guest_disk(source, "raw")
    assert qemu_compare(source, "raw", out, "vmdk").returncode == 0
    if preset != "aws":
        assert header.adapter_type == "lsilogic"
        with open(out, "rb") as f:
            assert vmdk.VMDK(f).disks[0].descriptor.ddb["ddb.virtualHWVersion"] == "17"


def test_esxi_takes_another_hwversion_but_not_another_subformat(tmp_path: Path) -> None:
    source = sample(tmp_path, ODD_SIZE)
    out = tmp_path / "disk.vmdk"
    json_of(run_cli("convert", str(source), str(out), "--for", "esxi", "-o", "hwversion=21", "--json"))
    with open(out, "rb") as f:
        assert vmdk.VMDK(f).disks[0].descriptor.ddb["ddb.virtualHWVersion"] == "21"
    other = ["-o", "subformat=monolithicSparse"]
    done = run_cli("convert", str(source), str(tmp_path / "b.vmdk"), "--for", "esxi", *other)
    assert done.returncode == EXIT_USAGE
    assert "ESXi needs subformat=streamOptimized" in done.stderr


def test_for_virtualbox_writes_a_vdi_and_for_hyperv_a_dynamic_vhdx(tmp_path: Path) -> None:
    source = sample(tmp_path, ODD_SIZE)
    json_of(run_cli("convert", str(source), str(tmp_path / "disk.vdi"), "--for", "virtualbox", "--json"))
    json_of(run_cli("convert", str(source), str(tmp_path / "disk.vhdx"), "--for", "hyperv", "--json"))
    expected = read_guest_disk(source, "raw")
    assert read_guest_disk(tmp_path / "disk.vdi", "vdi") == expected
    assert read_guest_disk(tmp_path / "disk.vhdx", "vhdx") == expected
    with open(tmp_path / "disk.vdi", "rb") as f:
        assert vdi.VDI(f).size == ODD_SIZE
    with open(tmp_path / "disk.vhdx", "rb") as f:
        parameters = vhdx.VHDX(f).metadata.get(vhdx.FILE_PARAMETERS_GUID)
        assert parameters.leave_block_allocated == 0  # dynamic: blocks are allocated as they are written
    assert qemu_compare(source, "raw", tmp_path / "disk.vhdx", "vhdx").returncode == 0


def test_for_oci_packs_a_oci_archive_with_the_pack_options(tmp_path: Path) -> None:
    source = sample(tmp_path, ODD_SIZE)
    out = tmp_path / "disk.oci"
    args = ["--os", "Oracle Linux", "--os-version", "9", "--json"]
    result = json_of(run_cli("convert", str(source), str(out), "--for", "oci", *args))
    assert result["metadata"]["operatingSystem"] == "Oracle Linux"  # type: ignore[index]
    listing = subprocess.run(["bsdtar", "-tf", str(out)], capture_output=True, text=True, check=True).stdout
    assert listing.split() == ["image_metadata.json", "output.QCOW2"]
    assert run_cli("verify", str(out)).returncode == 0


@pytest.mark.parametrize("name,fmt", [("disk.qcow2", "qcow2"), ("disk.vmdk", "vmdk")])
def test_for_oci_writes_the_disk_format_the_name_asks_for(tmp_path: Path, name: str, fmt: str) -> None:
    source = sample(tmp_path, ODD_SIZE)
    out = tmp_path / name
    json_of(run_cli("convert", str(source), str(out), "--for", "oci", "--json"))
    assert read_guest_disk(out, fmt) == read_guest_disk(source, "raw")
    if fmt == "vmdk":
        assert read_vmdk_header(out).create_type == "streamOptimized"  # one OCI imports
    assert run_cli("verify", str(out)).returncode == 0


@pytest.mark.parametrize("preset,name", [("oci", "disk.qcow2"), ("aws", "disk.vmdk")])
def test_presets_that_boot_refuse_a_disk_without_a_partition_table(tmp_path: Path, preset: str, name: str) -> None:
    source = sample(tmp_path, ODD_SIZE, gpt=False)
    done = run_cli("convert", str(source), str(tmp_path / name), "--for", preset)
    assert done.returncode == EXIT_FAILURE
    assert "no MBR or GPT partition table" in done.stderr
    assert leftovers(tmp_path) == [] and not (tmp_path / name).exists()


def test_for_oci_refuses_a_disk_above_its_import_limit_even_when_the_input_limit_allows_it(tmp_path: Path) -> None:
    source = sample(tmp_path, 401 * GiB)  # sparse
    done = run_cli("convert", str(source), str(tmp_path / "disk.qcow2"), "--for", "oci", "--max-size", "1T")
    assert done.returncode == EXIT_FAILURE
    assert "above Oracle Cloud's limit of 400 GiB" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample.raw"]


# --- What was typed ---------------------------------------------------------------------------------------------


def test_a_name_the_preset_does_not_write_is_refused_naming_the_one_it_would(tmp_path: Path) -> None:
    source = sample(tmp_path, AZURE_SIZE)
    done = run_cli("convert", str(source), str(tmp_path / "out.qcow2"), "--for", "azure")
    assert done.returncode == EXIT_USAGE
    assert "name it out.vhd" in done.stderr
    done = run_cli("convert", str(source), str(tmp_path / "out.vhd"), "--for", "gcp")
    assert "name it out.tar.gz" in done.stderr


@pytest.mark.parametrize(
    "extra,said",
    [
        (["--for", "azure", "--to", "vhd"], "--to and --for cannot be used together"),
        (["--for", "nowhere"], "unknown target 'nowhere'"),
        (["--resize-up"], "--resize-up applies with --for"),
        (["--for", "azure", "--os", "Linux"], "--os applies only to a .oci target"),
    ],
)
def test_options_that_do_not_go_with_for_are_usage_errors(tmp_path: Path, extra: list[str], said: str) -> None:
    source = sample(tmp_path, AZURE_SIZE)
    done = run_cli("convert", str(source), str(tmp_path / "out.vhd"), *extra)
    assert done.returncode == EXIT_USAGE
    assert said in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample.raw"]


def test_for_list_prints_every_preset_in_text_and_json() -> None:
    text = run_cli("convert", "--for", "list")
    assert text.returncode == 0, text.stderr
    names = ["oci", "azure", "aws", "esxi", "vsphere", "gcp", "virtualbox", "hyperv"]
    assert [line.split()[0] for line in text.stdout.splitlines() if not line.startswith(" ")] == names
    assert "subformat=fixed, force_size=on" in text.stdout
    listed = json_of(run_cli("convert", "--for", "list", "--json"))["presets"]
    assert [preset["name"] for preset in listed] == names  # type: ignore[union-attr,index]
    (azure,) = [preset for preset in listed if preset["name"] == "azure"]  # type: ignore[union-attr,index]
    assert azure["align"] == MiB and azure["outputs"][0]["options"]["subformat"] == "fixed"
