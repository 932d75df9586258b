"""OVAs that state sizes to make the reader do unbounded work: capacity units with huge or malformed exponents,
members whose header claims far more than the archive stores. Each is refused in one clear line, fast, with
nothing left behind and the input untouched."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests import sparsetar
from tests.cli.test_convert_ova import SIZE, ova_parts, python_tar, raw_disk
from tests.conftest import file_digest, leftovers, run_cli

__all__ = ["raw_disk"]  # the fixture, shared with test_ova


def refused(tmp_path: Path, ova: Path, verb: str, expected: str) -> None:
    before = file_digest(ova)
    out = tmp_path / "out.qcow2"
    result = run_cli(verb, str(ova), str(out), timeout=60) if verb == "convert" else run_cli(verb, str(ova), timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "internal error" not in result.stderr
    assert not out.exists()
    assert leftovers(tmp_path) == []
    assert file_digest(ova) == before


UNKNOWN, ABOVE, NOT_A_NUMBER = "is not one we know", "above 2^64 bytes", "not a number"
HOSTILE_UNITS = {
    "huge-exponent": ("8", "byte * 2^4000000000", UNKNOWN),
    "exponent-past-64": ("8", "byte * 2^65", UNKNOWN),
    "product-past-64": ("8", "byte * 2^62", ABOVE),
    "huge-number-times-unit": ("99999999999999999999", "byte * 2^40", ABOVE),
    "negative-exponent": ("8", "byte * 2^-20", UNKNOWN),
    "nested-exponent": ("8", "byte * 2^2^30", UNKNOWN),
    "huge-multiplier": ("8", "byte * 99999999999999999999999999 * 2^20", UNKNOWN),
    "non-numeric-exponent": ("8", "byte * 2^x", UNKNOWN),
    "unicode-exponent": ("8", "byte * 2^\u0662\u0660", UNKNOWN),
    "superscript-capacity": ("\u00b2", "byte * 2^20", NOT_A_NUMBER),
    "unicode-capacity": ("\u0668", "byte * 2^20", NOT_A_NUMBER),
    "huge-capacity": ("9" * 5000, "byte", NOT_A_NUMBER),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_UNITS))
def test_a_hostile_capacity_unit_is_refused_without_computing_it(tmp_path: Path, raw_disk: Path, kind: str) -> None:
    capacity, unit, expected = HOSTILE_UNITS[kind]
    text, disk = ova_parts(tmp_path, raw_disk, capacity_mib=SIZE // 1024**2)
    text = text.replace('ovf:capacity="8"', f'ovf:capacity="{capacity}"').replace("byte * 2^20", unit)
    ova = python_tar(tmp_path / "units.ova", [("vm.ovf", text.encode()), ("vm-disk1.vmdk", disk)])
    refused(tmp_path, ova, "info", expected)


def test_a_capacity_unit_up_to_2_64_bytes_is_read(tmp_path: Path, raw_disk: Path) -> None:
    text, disk = ova_parts(tmp_path, raw_disk)
    text = text.replace('ovf:capacity="8"', 'ovf:capacity="8388608"').replace("byte * 2^20", "byte")
    ova = python_tar(tmp_path / "bytes.ova", [("vm.ovf", text.encode()), ("vm-disk1.vmdk", disk)])
    result = run_cli("info", str(ova), "--json")
    assert result.returncode == 0, result.stderr
    assert f'"capacity": {SIZE}' in result.stdout


# --- members bounded before anything is read or hashed ------------------------------------------------------------

NVRAM = '<File ovf:href="vm.nvram" ovf:id="file2"/>\n  </References>'


def ova_with(tmp_path: Path, raw_disk: Path, *extra: bytes, disk_member: bytes | None = None, mf: str = "") -> Path:
    """A one-disk ovftool OVA whose descriptor also references vm.nvram, with `extra` members after the disk."""
    text, disk = ova_parts(tmp_path, raw_disk)
    text = text.replace("</References>", NVRAM, 1)
    parts = [sparsetar.plain("vm.ovf", text.encode()), disk_member or sparsetar.plain("vm-disk1.vmdk", disk), *extra]
    if mf:
        parts.append(sparsetar.plain("vm.mf", mf.encode()))
    ova = tmp_path / "bounded.ova"
    ova.write_bytes(sparsetar.archive(*parts))
    return ova


@pytest.mark.parametrize("claimed", [2**50, 2**30], ids=["1-PiB", "1-GiB"])
def test_a_sparse_nvram_claiming_far_more_than_stored_is_refused_before_hashing(
    tmp_path: Path, raw_disk: Path, claimed: int
) -> None:
    nvram = sparsetar.old_gnu("vm.nvram", claimed, [(0, 512), (claimed, 0)], b"n" * 512)
    ova = ova_with(tmp_path, raw_disk, nvram, mf=f"SHA256(vm.nvram)= {'0' * 64}\n")
    expected = "GNU-sparse" if claimed < 2**40 else f"claims {claimed} bytes"
    refused(tmp_path, ova, "info", expected)
    refused(tmp_path, ova, "convert", expected)


def test_a_sparse_disk_member_is_refused_before_its_zeroes_are_hashed(tmp_path: Path, raw_disk: Path) -> None:
    claimed = 300 * 1024**3
    disk = sparsetar.old_gnu("vm-disk1.vmdk", claimed, [(0, 512), (claimed, 0)], b"d" * 512)
    refused(tmp_path, ova_with(tmp_path, raw_disk, disk_member=disk), "convert", "GNU-sparse")


@pytest.mark.parametrize(
    ("name", "size"), [("vm.mf", 1024**2 + 1), ("vm.cert", 1024**2 + 1), ("vm.nvram", 64 * 1024**2 + 1)]
)
def test_a_small_member_larger_than_such_a_file_can_be_is_refused(
    tmp_path: Path, raw_disk: Path, name: str, size: int
) -> None:
    nvram = [] if name == "vm.nvram" else [sparsetar.plain("vm.nvram", b"n" * 8192)]
    ova = ova_with(tmp_path, raw_disk, *nvram, sparsetar.plain(name, bytes(size)))
    refused(tmp_path, ova, "info", f"member '{name}' of {size} bytes is larger than")


def test_a_manifest_listing_the_disk_twice_is_refused_not_hashed_twice(tmp_path: Path, raw_disk: Path) -> None:
    text, disk = ova_parts(tmp_path, raw_disk)
    digest = hashlib.sha256(disk).hexdigest()
    mf = f"SHA256(vm-disk1.vmdk)= {digest}\n" * 2
    ova = tmp_path / "twice.ova"
    ova.write_bytes(
        sparsetar.archive(
            sparsetar.plain("vm.ovf", text.encode()),
            sparsetar.plain("vm-disk1.vmdk", disk),
            sparsetar.plain("vm.mf", mf.encode()),
        )
    )
    refused(tmp_path, ova, "info", "lists twice")


def test_an_ova_with_a_plain_nvram_in_its_manifest_is_read(tmp_path: Path, raw_disk: Path) -> None:
    nvram = b"n" * 8192
    mf = f"SHA256(vm.nvram)= {hashlib.sha256(nvram).hexdigest()}\n"
    ova = ova_with(tmp_path, raw_disk, sparsetar.plain("vm.nvram", nvram), mf=mf)
    result = run_cli("info", str(ova), "--json")
    assert result.returncode == 0, result.stderr
    assert "vm.nvram" in result.stdout
