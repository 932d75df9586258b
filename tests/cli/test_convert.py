"""`imagepack convert` between every pair of formats and with the format options users ask for, each output
checked by `qemu-img compare` and, byte for byte, by an independent reader."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ODD_SIZE, file_digest, leftovers, run_cli
from tests.readers import (
    FORMATS,
    VDI_STATIC,
    VHD_FIXED,
    VMDK_FLAG_COMPRESSED,
    VMDK_FLAG_MARKERS,
    qemu_compare,
    qemu_info,
    read_guest_disk,
    read_qcow2_header,
    read_vdi_image_type,
    read_vhd_footer,
    read_vmdk_extent_names,
    read_vmdk_header,
)

PAIRS = [(src, dst) for src in FORMATS for dst in FORMATS if src != dst]
# qemu-img would round a VHD's size to a CHS geometry; the source keeps the sample's exact size.
SOURCE_OPTIONS = {"vhd": "force_size=on"}


@pytest.fixture
def make_source(make_image: Callable[..., Path]) -> Callable[[str], Path]:
    """The sample disk in `fmt`, written by qemu-img itself, with the sample's exact virtual size."""

    def make(fmt: str) -> Path:
        source = make_image(fmt, options=SOURCE_OPTIONS.get(fmt))
        assert qemu_info(source, fmt)["virtual-size"] == ODD_SIZE
        return source

    return make


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


def convert_and_check(
    source: Path, target: Path, target_fmt: str, sample_raw: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run the CLI, then check what every conversion promises: success, input untouched, no temporary file,
    and an output holding exactly the sample's bytes at exactly its size (qemu-img and dissect agree)."""
    before = file_digest(source)
    done = run_cli("convert", *args, str(source), str(target))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert file_digest(source) == before, "the input was modified"
    assert leftovers(target.parent) == []
    compared = qemu_compare(sample_raw, "raw", target, target_fmt)
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert qemu_info(target, target_fmt)["virtual-size"] == ODD_SIZE
    assert read_guest_disk(target, target_fmt) == read_guest_disk(sample_raw, "raw")
    return done


@pytest.mark.parametrize(("src_fmt", "dst_fmt"), PAIRS, ids=[f"{s}-to-{d}" for s, d in PAIRS])
def test_convert_keeps_every_byte_and_the_exact_virtual_size(
    src_fmt: str, dst_fmt: str, make_source: Callable[[str], Path], sample_raw: Path, out_dir: Path
) -> None:
    source = make_source(src_fmt)
    target = out_dir / f"converted.{dst_fmt}"
    done = convert_and_check(source, target, dst_fmt, sample_raw)
    assert f"({src_fmt})" in done.stdout and f"({dst_fmt}," in done.stdout


def test_convert_compress_to_qcow2_writes_every_cluster_compressed(sample_raw: Path, out_dir: Path) -> None:
    target = out_dir / "small.qcow2"
    convert_and_check(sample_raw, target, "qcow2", sample_raw, "--compress")
    header = read_qcow2_header(target)
    assert header.allocated_clusters > 0
    assert header.compressed_clusters == header.allocated_clusters
    assert header.compression_type == 0  # zlib unless asked


def test_convert_compress_to_vmdk_writes_stream_optimized(sample_raw: Path, out_dir: Path) -> None:
    target = out_dir / "small.vmdk"
    convert_and_check(sample_raw, target, "vmdk", sample_raw, "--compress")
    header = read_vmdk_header(target)
    assert header.create_type == "streamOptimized"
    assert header.flags & VMDK_FLAG_COMPRESSED and header.flags & VMDK_FLAG_MARKERS
    assert header.compress_algorithm == 1  # deflate
    assert qemu_info(target, "vmdk")["format-specific"]["data"]["create-type"] == "streamOptimized"


def test_convert_with_vmdk_subformat_stream_optimized_writes_stream_optimized(sample_raw: Path, out_dir: Path) -> None:
    target = out_dir / "stream.vmdk"
    convert_and_check(sample_raw, target, "vmdk", sample_raw, "-o", "subformat=streamOptimized")
    header = read_vmdk_header(target)
    assert header.create_type == "streamOptimized"
    assert header.compress_algorithm == 1


def test_convert_to_vmdk_is_monolithic_sparse_with_ide_unless_told(sample_raw: Path, out_dir: Path) -> None:
    target = out_dir / "plain.vmdk"
    convert_and_check(sample_raw, target, "vmdk", sample_raw)
    header = read_vmdk_header(target)
    assert (header.create_type, header.adapter_type, header.compress_algorithm) == ("monolithicSparse", "ide", 0)


@pytest.mark.parametrize("subformat", ["monolithicSparse", "streamOptimized"])
def test_convert_to_vmdk_names_the_output_file_in_its_descriptor(
    subformat: str, sample_raw: Path, out_dir: Path
) -> None:
    """VMware tools open the extent the descriptor names: it must be the file itself, not a name used while writing."""
    target = out_dir / f"d-{subformat}.vmdk"
    convert_and_check(sample_raw, target, "vmdk", sample_raw, "-o", f"subformat={subformat}")
    assert read_vmdk_header(target).create_type == subformat
    assert read_vmdk_extent_names(target) == [target.name]


def test_convert_with_vmdk_adapter_type_lsilogic_writes_it_in_the_descriptor(sample_raw: Path, out_dir: Path) -> None:
    target = out_dir / "esxi.vmdk"
    convert_and_check(sample_raw, target, "vmdk", sample_raw, "-o", "adapter_type=lsilogic")
    header = read_vmdk_header(target)
    assert header.adapter_type == "lsilogic"
    assert header.create_type == "monolithicSparse"


def test_convert_with_vhd_subformat_fixed_writes_a_fixed_vhd_of_the_exact_size(sample_raw: Path, out_dir: Path) -> None:
    target = out_dir / "azure.vhd"
    convert_and_check(sample_raw, target, "vhd", sample_raw, "-o", "subformat=fixed")
    footer = read_vhd_footer(target)
    assert footer.disk_type == VHD_FIXED
    assert footer.current_size == ODD_SIZE
    assert target.stat().st_size == ODD_SIZE + 512  # the data, then only the footer


def test_convert_to_vhd_with_force_size_off_gets_qemus_chs_rounding(sample_raw: Path, out_dir: Path) -> None:
    """The user's option wins over imagepack's force_size=on default (and shows why that default exists)."""
    target = out_dir / "rounded.vhd"
    done = run_cli("convert", "-o", "force_size=off", str(sample_raw), str(target))
    assert done.returncode == 0, done.stderr
    rounded = qemu_info(target, "vhd")["virtual-size"]
    assert rounded > ODD_SIZE
    assert read_vhd_footer(target).current_size == rounded
    assert qemu_compare(sample_raw, "raw", target, "vhd").returncode == 0  # same data, zeros after it


def test_convert_with_vdi_static_on_writes_a_preallocated_vdi(sample_raw: Path, out_dir: Path) -> None:
    target = out_dir / "static.vdi"
    convert_and_check(sample_raw, target, "vdi", sample_raw, "-o", "static=on")
    assert read_vdi_image_type(target) == VDI_STATIC
    assert target.stat().st_size >= ODD_SIZE


def test_convert_with_qcow2_compat_0_10_writes_a_version_2_header(sample_raw: Path, out_dir: Path) -> None:
    target = out_dir / "old.qcow2"
    convert_and_check(sample_raw, target, "qcow2", sample_raw, "-o", "compat=0.10")
    assert read_qcow2_header(target).version == 2
    assert qemu_info(target, "qcow2")["format-specific"]["data"]["compat"] == "0.10"


def test_convert_with_qcow2_compression_type_zstd_writes_zstd_clusters(sample_raw: Path, out_dir: Path) -> None:
    target = out_dir / "zstd.qcow2"
    convert_and_check(sample_raw, target, "qcow2", sample_raw, "--compress", "-o", "compression_type=zstd")
    header = read_qcow2_header(target)
    assert header.version == 3
    assert header.compression_type == 1
    assert header.compressed_clusters > 0
    assert qemu_info(target, "qcow2")["format-specific"]["data"]["compression-type"] == "zstd"


def test_convert_to_flag_wins_over_the_output_suffix(sample_raw: Path, out_dir: Path) -> None:
    target = out_dir / "cloud.img"
    convert_and_check(sample_raw, target, "qcow2", sample_raw, "--to", "qcow2")
    assert target.read_bytes()[:4] == b"QFI\xfb"


def test_convert_to_an_img_name_writes_raw(make_source: Callable[[str], Path], sample_raw: Path, out_dir: Path) -> None:
    target = out_dir / "disk.img"
    convert_and_check(make_source("qcow2"), target, "raw", sample_raw)
    assert target.stat().st_size == ODD_SIZE


def test_convert_json_reports_formats_and_sizes(sample_raw: Path, out_dir: Path) -> None:
    target = out_dir / "report.qcow2"
    done = convert_and_check(sample_raw, target, "qcow2", sample_raw, "--json")
    report = json.loads(done.stdout)
    assert report["source_format"] == "raw"
    assert report["format"] == "qcow2"
    assert report["virtual_size"] == ODD_SIZE
    assert report["size"] == target.stat().st_size


def test_convert_handles_names_with_spaces_commas_and_colons(make_image: Callable[..., Path], out_dir: Path) -> None:
    """qemu-img reads 'a, b:c' as options or a protocol unless it is handed a plain absolute file name."""
    source = make_image("qcow2", name="my disk, v1:final.qcow2")
    target = out_dir / "for esxi, v2:stream.vmdk"
    done = run_cli("convert", str(source), str(target), cwd=str(source.parent))
    assert done.returncode == 0, done.stderr
    assert qemu_compare(source, "qcow2", target, "vmdk").returncode == 0
    assert leftovers(out_dir) == []


def test_convert_quiet_prints_nothing_on_success(sample_raw: Path, out_dir: Path) -> None:
    target = out_dir / "quiet.qcow2"
    done = run_cli("convert", "--quiet", str(sample_raw), str(target))
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")
    assert qemu_compare(sample_raw, "raw", target, "qcow2").returncode == 0
