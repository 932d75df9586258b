"""A qcow2 whose file is not a whole number of 512-byte sectors (a fresh `qemu-img create`) packs into a .oci
that every verb reads; so does a .oci another tool made with such a member, and one the one-pass writer made."""

from __future__ import annotations

import gzip
import json
import tarfile
from pathlib import Path

import pytest

from tests.conftest import SPEC_METADATA, qemu_img, run_cli

OCI = ["--os", "Oracle Linux", "--os-version", "9", "--firmware", "BIOS"]


@pytest.fixture
def fresh(tmp_path: Path) -> Path:
    disk = tmp_path / "fresh.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(disk), "64M")
    assert disk.stat().st_size % 512 != 0
    return disk


def _packed(fresh: Path, tmp_path: Path, how: str) -> Path:
    out = tmp_path / f"{how}.oci"
    if how == "by-hand":  # another tool's tar: the member as the file is, padded by tar
        meta = tmp_path / "meta.json"
        meta.write_text(json.dumps(SPEC_METADATA))
        with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tar:
            tar.add(meta, "image_metadata.json")
            tar.add(fresh, "output.QCOW2")
        return out
    source = fresh
    if how == "one-pass":
        source = fresh.with_name("fresh.qcow2.gz")
        source.write_bytes(gzip.compress(fresh.read_bytes()))
    done = run_cli("pack", str(source), str(out), *OCI)
    assert done.returncode == 0, done.stderr
    with tarfile.open(out) as tar:
        assert tar.getmember("output.QCOW2").size % 512 == 0
    return out


@pytest.mark.parametrize("how", ["pack", "one-pass", "by-hand"])
def test_every_verb_reads_an_archive_of_a_qcow2_of_odd_length(how: str, fresh: Path, tmp_path: Path) -> None:
    archive = _packed(fresh, tmp_path, how)
    assert run_cli("info", str(archive)).returncode == 0
    verified = run_cli("verify", str(archive))
    assert "cannot read" not in verified.stdout + verified.stderr and "multiple of 512" not in verified.stderr
    unpacked = tmp_path / f"unpacked-{how}"
    assert run_cli("unpack", str(archive), "-d", str(unpacked)).returncode == 0
    assert qemu_img("check", str(unpacked / f"{how}.qcow2")).returncode == 0
    converted = run_cli("convert", str(archive), str(tmp_path / f"{how}.raw"))
    assert converted.returncode == 0, converted.stderr
    assert (tmp_path / f"{how}.raw").stat().st_size == 64 * 1024**2
    assert run_cli("meta", "show", str(archive)).returncode == 0
    edited = run_cli("meta", "set", str(archive), "operatingSystemVersion=8")
    assert edited.returncode == 0, edited.stderr
    assert run_cli("info", str(archive)).returncode == 0
