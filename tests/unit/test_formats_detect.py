"""Formats are told by their bytes: the name is only a claim that has to agree, and files that are not disks
(or look like two formats) are refused."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pycdlib
import pytest
import zstandard

from imagepack.core.process import Limits, run
from tests.conftest import ODD_SIZE, QEMU_IMG, file_digest, leftovers, run_cli
from tests.readers import qemu_compare, read_guest_disk

# (format, qemu-img -o options, subformat imagepack should report)
KINDS = [
    ("raw", None, None),
    ("qcow2", "compat=0.10", "compat=0.10"),
    ("qcow2", "compat=1.1", "compat=1.1"),
    ("vmdk", "subformat=monolithicSparse", "monolithicSparse"),
    ("vmdk", "subformat=streamOptimized", "streamOptimized"),
    ("vdi", None, "dynamic"),
    ("vdi", "static=on", "static"),
    ("vhd", "force_size=on", "dynamic"),
    ("vhd", "subformat=fixed,force_size=on", "fixed"),
    ("vhdx", None, "dynamic"),
    ("vhdx", "subformat=fixed", "fixed"),
]


def info_json(path: Path, *args: str) -> dict[str, object]:
    done = run_cli("info", "--json", *args, str(path))
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("imagepack: error: ")
    return lines[0]


@pytest.mark.parametrize(("fmt", "options", "subformat"), KINDS, ids=[f"{k[0]}-{k[2]}" for k in KINDS])
def test_info_detects_the_format_from_content_alone(
    fmt: str, options: str | None, subformat: str | None, make_image: Callable[..., Path]
) -> None:
    image = make_image(fmt, name="disk.bin", options=options)  # a name that claims nothing
    found = info_json(image)
    assert found["format"] == fmt
    assert found["subformat"] == subformat
    assert found["virtual_size"] == ODD_SIZE
    assert found["safe"] is True and found["problems"] == []
    assert found["partition_table"] == "gpt"  # the guest was read through qemu-img with the right driver


def test_convert_reads_a_fixed_vhd_as_vhd_and_drops_its_footer(
    make_image: Callable[..., Path], sample_raw: Path, tmp_path: Path
) -> None:
    """qemu-img alone would probe a fixed VHD as raw and copy its footer into the disk."""
    image = make_image("vhd", name="disk.bin", options="subformat=fixed,force_size=on")
    target = tmp_path / "disk.raw"
    done = run_cli("convert", str(image), str(target))
    assert done.returncode == 0, done.stderr
    assert target.stat().st_size == ODD_SIZE
    assert read_guest_disk(target, "raw") == read_guest_disk(sample_raw, "raw")


LIARS = [("qcow2", "x.vmdk"), ("vmdk", "x.qcow2"), ("raw", "x.qcow2"), ("vdi", "x.vhd")]


@pytest.mark.parametrize(("fmt", "name"), LIARS, ids=[f"{f}-named-{n}" for f, n in LIARS])
def test_convert_refuses_a_name_that_lies_about_the_content(
    fmt: str, name: str, make_image: Callable[..., Path], tmp_path: Path
) -> None:
    image = make_image(fmt, name=name)
    before = file_digest(image)
    target = tmp_path / "out.raw"
    done = run_cli("convert", str(image), str(target))
    assert done.returncode == 1
    line = one_error_line(done)
    claimed = Path(name).suffix.lstrip(".")
    assert f"name says {claimed}" in line and f"content is {fmt}" in line
    assert f"--from {fmt}" in line
    assert not target.exists() and leftovers(tmp_path) == []
    assert file_digest(image) == before


@pytest.mark.parametrize(("fmt", "name"), LIARS, ids=[f"{f}-named-{n}" for f, n in LIARS])
def test_convert_with_from_the_true_format_accepts_a_misnamed_image(
    fmt: str, name: str, make_image: Callable[..., Path], sample_raw: Path, tmp_path: Path
) -> None:
    image = make_image(fmt, name=name)
    target = tmp_path / "out.raw"
    done = run_cli("convert", "--from", fmt, str(image), str(target))
    assert done.returncode == 0, done.stderr
    assert qemu_compare(sample_raw, "raw", target, "raw").returncode == 0
    assert read_guest_disk(target, "raw") == read_guest_disk(sample_raw, "raw")


def test_convert_with_from_a_wrong_format_is_refused(make_image: Callable[..., Path], tmp_path: Path) -> None:
    image = make_image("qcow2", name="disk.qcow2")
    target = tmp_path / "out.raw"
    done = run_cli("convert", "--from", "vmdk", str(image), str(target))
    assert done.returncode == 1
    line = one_error_line(done)
    assert "format given is vmdk" in line and "content is qcow2" in line
    assert not target.exists() and leftovers(tmp_path) == []


def test_info_describes_a_misnamed_image_by_content_and_marks_it_refused(make_image: Callable[..., Path]) -> None:
    found = info_json(make_image("qcow2", name="x.vmdk"))
    assert found["format"] == "qcow2"
    assert found["safe"] is False
    problems = found["problems"]
    assert isinstance(problems, list) and len(problems) == 1
    assert problems[0]["code"] == "input.name-disagrees" and problems[0]["remedy"] == "from"
    assert "name says vmdk" in problems[0]["message"] and "--" not in problems[0]["message"]


def test_an_img_name_holding_qcow2_is_read_as_qcow2(
    make_image: Callable[..., Path], sample_raw: Path, tmp_path: Path
) -> None:
    image = make_image("qcow2", name="cloud.img")  # how many vendors ship qcow2
    assert info_json(image)["format"] == "qcow2"
    target = tmp_path / "cloud.vdi"
    done = run_cli("convert", str(image), str(target))
    assert done.returncode == 0, done.stderr
    assert "(qcow2)" in done.stdout
    assert qemu_compare(sample_raw, "raw", target, "vdi").returncode == 0
    assert read_guest_disk(target, "vdi") == read_guest_disk(sample_raw, "raw")


# --- files that are not disks -------------------------------------------------------------------------------------


def write_tar(sample: Path, path: Path) -> None:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        tar.add(sample, arcname="disk.raw")


def write_gzip(sample: Path, path: Path) -> None:
    path.write_bytes(gzip.compress(sample.read_bytes(), compresslevel=1))


def write_zstd(sample: Path, path: Path) -> None:
    path.write_bytes(zstandard.ZstdCompressor(level=1).compress(sample.read_bytes()))


def write_iso(sample: Path, path: Path) -> None:
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident="cidata", joliet=3, rock_ridge="1.09")
    data = b"#cloud-config\n"
    iso.add_fp(io.BytesIO(data), len(data), "/USERDATA.;1", rr_name="user-data", joliet_path="/user-data")
    iso.write(str(path))
    iso.close()


CONTAINERS: dict[str, Callable[[Path, Path], None]] = {
    "iso": write_iso,
    "tar": write_tar,
    "gzip": write_gzip,
    "zstd": write_zstd,
}


# What the refusal calls each kind, with its article.
CONTAINER_WORDS = {"iso": "an ISO 9660 image"}


# A compressed disk is read: tests/cli/test_convert_compressed_inputs.py;
# `info` describes an ISO: tests/cli/test_seed_iso.py.
@pytest.mark.parametrize("kind", ["iso"])
@pytest.mark.parametrize("command", ["convert"])
def test_a_container_is_recognised_and_refused_as_not_a_disk_image(
    kind: str, command: str, sample_raw: Path, tmp_path: Path
) -> None:
    container = tmp_path / "download.img"  # the name says nothing; the bytes do
    CONTAINERS[kind](sample_raw, container)
    target = tmp_path / "out.qcow2"
    args = [str(container), str(target)] if command == "convert" else [str(container)]
    done = run_cli(command, *args)
    assert done.returncode == 1
    line = one_error_line(done)
    assert CONTAINER_WORDS[kind] in line and "not a disk image" in line
    assert not target.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("command", ["convert", "info"])
def test_a_tar_that_is_neither_an_oci_archive_nor_a_gce_tarball_is_refused(
    command: str, sample_raw: Path, tmp_path: Path
) -> None:
    """tar is how .oci archives come (and GCE's disk.raw, tests/cli/test_convert_ova.py), so it is opened as one;
    any other disk wrapped in one is not. (A disk in a gzip is a compressed disk, read:
    tests/cli/test_convert_compressed_inputs.py.)"""
    container = tmp_path / "download.img"
    with tarfile.open(container, "w", format=tarfile.USTAR_FORMAT) as tar:
        tar.add(sample_raw, arcname="image.bin")
    target = tmp_path / "out.qcow2"
    args = [str(container), str(target)] if command == "convert" else [str(container)]
    done = run_cli(command, *args)
    assert done.returncode == 1
    line = one_error_line(done)
    assert "tar" in line
    assert not target.exists() and leftovers(tmp_path) == []
    assert done.stdout == ""


def test_convert_with_from_raw_takes_a_container_as_plain_bytes(sample_raw: Path, tmp_path: Path) -> None:
    """The refusal says how to take the bytes anyway; that way works."""
    container = tmp_path / "bundle.tar"
    write_tar(sample_raw, container)
    target = tmp_path / "bundle.qcow2"
    done = run_cli("convert", "--from", "raw", str(container), str(target))
    assert done.returncode == 0, done.stderr
    assert qemu_compare(container, "raw", target, "qcow2").returncode == 0


# --- one file, two formats ----------------------------------------------------------------------------------------


@pytest.fixture
def qcow2_and_vhd(make_image: Callable[..., Path], sample_raw: Path, tmp_path: Path) -> Path:
    """Raw bytes that start with the qcow2 magic and end with a real VHD footer."""
    fixed_vhd = make_image("vhd", name="fixed.vhd", options="subformat=fixed,force_size=on")
    footer = fixed_vhd.read_bytes()[-512:]
    assert footer[:8] == b"conectix"
    path = tmp_path / "both.img"
    data = bytearray(sample_raw.read_bytes())
    data[:4] = b"QFI\xfb"
    path.write_bytes(bytes(data) + footer)
    return path


@pytest.mark.parametrize(
    "args", [(), ("--from", "qcow2"), ("--from", "vhd")], ids=["detected", "from-qcow2", "from-vhd"]
)
def test_convert_refuses_a_file_that_matches_two_formats(
    args: tuple[str, ...], qcow2_and_vhd: Path, tmp_path: Path
) -> None:
    target = tmp_path / "out.raw"
    done = run_cli("convert", *args, str(qcow2_and_vhd), str(target))
    assert done.returncode == 1
    line = one_error_line(done)
    assert "ambiguous" in line and "qcow2" in line and "vhd" in line
    assert not target.exists() and leftovers(tmp_path) == []


def test_info_refuses_a_file_that_matches_two_formats(qcow2_and_vhd: Path) -> None:
    done = run_cli("info", "--json", str(qcow2_and_vhd))
    assert done.returncode == 1
    line = one_error_line(done)
    assert "ambiguous" in line and "qcow2" in line and "vhd" in line
    assert json.loads(done.stdout)["error"]["message"] in line  # --json: the same refusal as an error object


def test_qemu_img_reads_the_guest_reliably_under_an_address_space_cap(make_image: Callable[..., Path]) -> None:
    """info reads the partition table with `qemu-img dd` under a memory cap; glibc's per-thread arenas used to
    make that fail at random ("qemu_thread_create: Resource temporarily unavailable")."""
    image = make_image("vhd", options="force_size=on")
    cap = Limits(address_space=256 * 1024**2, wall_seconds=30)
    for attempt in range(12):
        head = image.parent / f"head{attempt}.raw"
        done = run(
            [QEMU_IMG, "dd", "-f", "vpc", "-O", "raw", "bs=512", "count=34", f"if={image}", f"of={head}"],
            limits=cap,
        )
        assert done.returncode == 0, f"attempt {attempt}: {done.stderr}"
        assert head.read_bytes()[512:520] == b"EFI PART"


def test_info_prints_a_readable_summary(make_image: Callable[..., Path]) -> None:
    image = make_image("vmdk", options="subformat=streamOptimized")
    done = run_cli("info", str(image))
    assert done.returncode == 0, done.stderr
    rows = dict(line.split(":", 1) for line in done.stdout.splitlines())
    assert rows["format"].strip() == "vmdk (streamOptimized)"
    assert f"({ODD_SIZE} bytes)" in rows["virtual size"]
    assert rows["partition table"].strip().startswith("gpt")
    assert "refused" not in rows
