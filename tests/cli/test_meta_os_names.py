"""Operating system names: one typo from a name on OCI's list is refused with the name meant unless --os-unlisted
says it is right; `meta set` keys in any case, with the key meant; `verify` names `meta set` as the fix."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.test_import_request import URL, request_cli
from tests.conftest import leftovers, run_cli

TYPOS = {
    "Ubunto": "Ubuntu",  # a letter changed
    "Ubnutu": "Ubuntu",  # two swapped
    "ubuntuu": "Ubuntu",  # one added, in another case
    "Orcle Linux": "Oracle Linux",  # one dropped
    "oracle-linx": "Oracle Linux",
    "CentOS Strem": "CentOS Stream",
    "Windos": "Windows",
}
PACK = ["--os-version", "22.04", "--firmware", "BIOS", "--json"]


def pack(source: Path, out: Path, os_name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli("pack", str(source), str(out), "--os", os_name, *PACK, *extra)


def error_of(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    error: dict[str, str] = json.loads(done.stdout)["error"]
    return error


@pytest.mark.parametrize("typed", TYPOS)
def test_a_name_one_typo_from_a_listed_one_is_refused_with_the_name_meant(
    typed: str, sample_raw: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out" / "disk.oci"
    out.parent.mkdir()
    done = pack(sample_raw, out, typed)
    assert done.returncode == 1, done.stdout + done.stderr
    error = error_of(done)
    assert error["code"] == "metadata.os-typo"
    assert f"did you mean {TYPOS[typed]}?" in error["message"] and "--os-unlisted" in error["message"]
    assert not out.exists() and leftovers(out.parent) == []


def test_convert_to_an_oci_refuses_the_typo_too(sample_raw: Path, tmp_path: Path) -> None:
    done = run_cli("convert", str(sample_raw), str(tmp_path / "d.oci"), "--os", "Ubunto", *PACK)
    assert done.returncode == 1 and error_of(done)["code"] == "metadata.os-typo"
    assert not (tmp_path / "d.oci").exists()


def test_os_unlisted_packs_the_name_as_typed_with_the_list_s_warning(sample_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "disk.oci"
    done = pack(sample_raw, out, "Ubunto", "--os-unlisted")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["metadata"]["operatingSystem"] == "Ubunto"
    assert "metadata.unknown-os" in {problem["code"] for problem in report["problems"]}


@pytest.mark.parametrize("name", ["Debian", "Kubuntu", "Rocky Linux"])
def test_a_name_that_is_no_typo_packs_with_a_warning(name: str, sample_raw: Path, tmp_path: Path) -> None:
    done = pack(sample_raw, tmp_path / "disk.oci", name)
    assert done.returncode == 0, done.stderr
    assert "metadata.unknown-os" in done.stdout


@pytest.fixture
def unlisted_archive(sample_raw: Path, tmp_path: Path) -> Path:
    out = tmp_path / "disk.oci"
    assert pack(sample_raw, out, "Ubunto", "--os-unlisted").returncode == 0
    return out


def test_verify_names_meta_set_as_the_fix_not_an_option_it_lacks(unlisted_archive: Path) -> None:
    done = run_cli("verify", str(unlisted_archive))
    assert "did you mean Ubuntu?" in done.stdout
    assert "imagepack meta set" in done.stdout
    assert "pass --os" not in done.stdout


def test_meta_set_refuses_a_typo_being_set_unless_os_unlisted(unlisted_archive: Path) -> None:
    before = unlisted_archive.read_bytes()
    done = run_cli("meta", "set", str(unlisted_archive), "operatingSystem=Ubnutu", "--json")
    assert done.returncode == 1 and error_of(done)["code"] == "metadata.os-typo"
    assert unlisted_archive.read_bytes() == before
    insisted = run_cli("meta", "set", str(unlisted_archive), "operatingSystem=Ubnutu", "--os-unlisted")
    assert insisted.returncode == 0, insisted.stderr
    # The archive's name is not being set here: reported, not refused.
    other = run_cli("meta", "set", str(unlisted_archive), "firmware=UEFI_64")
    assert other.returncode == 0, other.stderr


def test_meta_set_keys_are_taken_in_any_case(unlisted_archive: Path) -> None:
    done = run_cli("meta", "set", str(unlisted_archive), "OPERATINGSYSTEM=ubuntu", "operatingsystemversion=24.04")
    assert done.returncode == 0, done.stderr
    shown = json.loads(run_cli("meta", "show", str(unlisted_archive), "--json").stdout)
    metadata = shown.get("metadata", shown)
    assert (metadata["operatingSystem"], metadata["operatingSystemVersion"]) == ("Ubuntu", "24.04")


def test_an_unknown_meta_set_key_names_the_key_meant(unlisted_archive: Path) -> None:
    done = run_cli("meta", "set", str(unlisted_archive), "operatingSytem=Ubuntu", "--json")
    assert done.returncode == 2
    assert "did you mean operatingSystem?" in error_of(done)["message"]
    twice = run_cli("meta", "set", str(unlisted_archive), "firmware=BIOS", "FIRMWARE=UEFI_64")
    assert twice.returncode == 2 and "given twice" in twice.stderr


def test_import_request_refuses_the_typo_unless_os_unlisted(make_image: Callable[..., Path]) -> None:
    image = make_image("qcow2")
    done = request_cli(image, "--uri", f"{URL}.qcow2", "--os", "Ubunto", "--os-version", "22.04", "--json")
    assert done.returncode != 0 and "did you mean Ubuntu?" in done.stdout
    insisted = request_cli(image, "--uri", f"{URL}.qcow2", "--os", "Ubunto", "--os-version", "22.04", "--os-unlisted")
    assert insisted.returncode == 0, insisted.stderr


def _manifest(folder: Path, source: Path, extra: str) -> Path:
    manifest = folder / "release.toml"
    manifest.write_text(
        f'[[source]]\npath = "{source.name}"\n'
        '  [[source.output]]\n  path = "out/disk.oci"\n'
        f'  [source.output.oci]\n  os = "Ubunto"\n  os_version = "22.04"\n  firmware = "BIOS"\n{extra}'
    )
    return manifest


def test_a_batch_manifest_refuses_the_typo_unless_os_unlisted(sample_raw: Path, tmp_path: Path) -> None:
    done = run_cli("batch", str(_manifest(tmp_path, sample_raw, "")), "--json")
    assert done.returncode != 0
    assert "did you mean Ubuntu?" in done.stdout + done.stderr
    assert not (tmp_path / "out" / "disk.oci").exists()
    insisted = run_cli("batch", str(_manifest(tmp_path, sample_raw, "  os_unlisted = true\n")), "--json")
    assert insisted.returncode == 0, insisted.stdout + insisted.stderr
    assert (tmp_path / "out" / "disk.oci").exists()
