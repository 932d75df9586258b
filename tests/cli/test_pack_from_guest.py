"""`pack`, `convert` to a .oci and `batch` take the operating system, its version and the firmware from the guest on
the disk when they are not given, say where each came from, and refuse a given value the guest contradicts: a
Windows release or edition always, a Linux system or a firmware unless --guest-mismatch-ok says it is right.
Synthetic guests made with the real tools (mkfs, sgdisk, sfdisk, mtools, mkntfs, hivex)."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.guestdisks import ext4, fat, gpt_disk, mbr_disk, tree
from tests.ntfsmake import make_ntfs
from tests.unit.test_sources_guest_windows import CONFIG, CURRENT_VERSION, edit_hive
from tests.unit.test_sources_guest_windows import base as base

ROOT_UUID = "6f1b2a3c-1111-4222-8333-944455556666"
GRUB_BOOT_IMG = Path("/usr/lib/grub/i386-pc/boot.img")
DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n'
UBUNTU = 'NAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\nID_LIKE=debian\n'
ORACLE = 'NAME="Oracle Linux Server"\nVERSION="8.9"\nID="ol"\nVERSION_ID="8.9"\n'


def _root(tmp: Path, os_release: str) -> Path:
    files = {"etc/fstab": f"UUID={ROOT_UUID} / ext4 defaults 0 1\n", "usr/lib/os-release": os_release}
    root_dir = tree(tmp / "root", files, {"etc/os-release": "../usr/lib/os-release"})
    return ext4(tmp / "root.img", root_dir, 16, uuid=ROOT_UUID, label="root")


def uefi_guest(tmp: Path, os_release: str) -> Path:
    """GPT: an ESP holding the removable-media loader, and the root file system. No boot code in the MBR."""
    tmp.mkdir(parents=True, exist_ok=True)
    esp = fat(tmp / "esp.img", {"EFI/BOOT/BOOTX64.EFI": b"MZ"}, 8, label="ESP")
    return gpt_disk(tmp / "uefi.raw", [("ef00", esp), ("8300", _root(tmp, os_release))], size_mib=32)


def bios_guest(tmp: Path, os_release: str) -> Path:
    """MBR with GRUB's boot code, and the root file system."""
    tmp.mkdir(parents=True, exist_ok=True)
    root = _root(tmp, os_release)
    return mbr_disk(tmp / "bios.raw", [("83", root)], size_mib=24, boot_code=GRUB_BOOT_IMG.read_bytes())


@pytest.fixture(scope="module")
def debian(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return uefi_guest(tmp_path_factory.mktemp("debian"), DEBIAN)


def metadata_of(archive: Path) -> dict[str, Any]:
    with tarfile.open(archive) as tar:
        member = tar.extractfile("image_metadata.json")
        assert member is not None
        found: dict[str, Any] = json.loads(member.read())
    return found


def pack_json(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("pack", "--json", *args)


def test_pack_takes_a_debian_guests_system_and_firmware_and_says_where(debian: Path, tmp_path: Path) -> None:
    out = tmp_path / "debian.oci"
    done = run_cli("pack", str(debian), str(out))
    assert done.returncode == 0, done.stderr
    assert "os: Debian GNU/Linux 12 (read from the guest's /etc/os-release)" in done.stdout
    assert "firmware: UEFI_64 (read from the guest's boot set-up: an EFI loader on its ESP, /EFI/BOOT/BOOTX64.EFI)" in (
        done.stdout
    )
    metadata = metadata_of(out)
    assert (metadata["operatingSystem"], metadata["operatingSystemVersion"]) == ("Debian GNU/Linux", "12")
    assert metadata["externalLaunchOptions"]["firmware"] == "UEFI_64"
    assert "not on OCI's list" in done.stderr  # Debian is not on it: the list's warning, never a made-up name


def test_the_json_says_where_each_value_came_from(debian: Path, tmp_path: Path) -> None:
    done = pack_json(str(debian), str(tmp_path / "d.oci"), "--os-version", "12")
    assert done.returncode == 0, done.stderr
    sources = json.loads(done.stdout)["sources"]
    assert sources["operatingSystem"] == {"from": "guest", "text": "read from the guest's /etc/os-release"}
    assert sources["operatingSystemVersion"] == {"from": "given", "text": "given"}
    assert sources["firmware"]["from"] == "guest"


@pytest.mark.parametrize(
    ("os_release", "name", "version", "make"),
    [
        (UBUNTU, "Ubuntu", "22.04", bios_guest),
        (ORACLE, "Oracle Linux", "8.9", uefi_guest),
    ],
)
def test_a_listed_system_is_named_as_oci_lists_it(
    tmp_path: Path, os_release: str, name: str, version: str, make: Any
) -> None:
    disk = make(tmp_path / "guest", os_release)
    out = tmp_path / "g.oci"
    done = pack_json(str(disk), str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["metadata"]["operatingSystem"], result["metadata"]["operatingSystemVersion"]) == (name, version)
    assert result["sources"]["operatingSystem"]["from"] == "guest"
    firmware = "BIOS" if make is bios_guest else "UEFI_64"
    assert metadata_of(out)["externalLaunchOptions"]["firmware"] == firmware
    assert not [p for p in result["problems"] if p["code"].startswith(("metadata.unknown", "metadata.os-"))]


def test_a_linux_system_the_guest_contradicts_is_refused_unless_said_right(debian: Path, tmp_path: Path) -> None:
    out = tmp_path / "u.oci"
    done = pack_json(str(debian), str(out), "--os", "Ubuntu", "--os-version", "22.04")
    assert done.returncode != 0 and not out.exists()
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "metadata.guest-os"
    assert "the guest says it is Debian GNU/Linux" in error["message"]
    assert "--guest-mismatch-ok" in done.stderr and "Traceback" not in done.stderr
    done = pack_json(str(debian), str(out), "--os", "Ubuntu", "--os-version", "22.04", "--guest-mismatch-ok")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["metadata"]["operatingSystem"] == "Ubuntu"
    assert [p["severity"] for p in result["problems"] if p["code"] == "metadata.guest-os"] == ["warning"]


def test_a_name_and_version_that_agree_with_the_guest_are_kept(debian: Path, tmp_path: Path) -> None:
    done = pack_json(str(debian), str(tmp_path / "d.oci"), "--os", "Debian", "--os-version", "12.4")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["metadata"]["operatingSystem"] == "Debian"
    done = pack_json(str(debian), str(tmp_path / "e.oci"), "--os", "Debian", "--os-version", "11")
    assert json.loads(done.stdout)["error"]["code"] == "metadata.guest-os-version"


def test_bios_for_a_uefi_only_guest_is_refused_as_oci_would_show_a_uefi_shell(debian: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.oci"
    done = pack_json(str(debian), str(out), "--firmware", "BIOS")
    assert done.returncode != 0 and not out.exists()
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "metadata.guest-firmware"
    assert "the guest boots only by UEFI_64" in error["message"]
    done = pack_json(str(debian), str(out), "--firmware", "BIOS", "--guest-mismatch-ok")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["sources"]["firmware"] == {"from": "given", "text": "given"}
    assert "metadata.guest-firmware" in [p["code"] for p in result["problems"]]


def test_a_guest_set_up_for_both_keeps_the_partition_tables_choice_and_says_so(tmp_path: Path) -> None:
    disk = uefi_guest(tmp_path / "guest", UBUNTU)
    with open(disk, "r+b") as f:
        f.write(GRUB_BOOT_IMG.read_bytes()[:440])
    done = pack_json(str(disk), str(tmp_path / "both.oci"))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["metadata"]["externalLaunchOptions"]["firmware"] == "UEFI_64"  # GPT's choice
    assert "the guest boots by either" in result["sources"]["firmware"]["text"]
    assert "kept the partition table's choice" in result["sources"]["firmware"]["text"]


def test_convert_to_a_oci_and_a_compressed_input_take_the_guests_values(debian: Path, tmp_path: Path) -> None:
    done = run_cli("convert", "--json", str(debian), str(tmp_path / "c.oci"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["metadata"]["operatingSystem"] == "Debian GNU/Linux"
    done = run_cli("convert", "--json", "--for", "oci", str(debian), str(tmp_path / "f.oci"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sources"]["operatingSystemVersion"]["from"] == "guest"
    qcow2 = tmp_path / "d.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(debian), str(qcow2)], check=True)
    subprocess.run(["zstd", "-q", str(qcow2)], check=True)
    out = tmp_path / "z.oci"
    done = pack_json(str(qcow2) + ".zst", str(out))  # packed in one pass: the guest read from the written member
    assert done.returncode == 0, done.stderr
    assert metadata_of(out)["operatingSystemVersion"] == "12"
    done = run_cli("verify", str(out))
    assert done.returncode == 0, done.stdout + done.stderr


def test_an_unreadable_guest_falls_back_to_asking_for_the_os(debian: Path, tmp_path: Path) -> None:
    env = {**__import__("os").environ, "IMAGEPACK_INSPECT_MEMORY": "16M"}
    done = run_cli("pack", str(debian), str(tmp_path / "x.oci"), env=env)
    assert done.returncode != 0
    assert "the archive needs an operating system and its version; pass --os NAME" in done.stderr
    assert "Traceback" not in done.stderr
    done = run_cli("pack", str(debian), str(tmp_path / "x.oci"), "--os", "Ubuntu", "--os-version", "22.04", env=env)
    assert done.returncode == 0, done.stderr  # nothing read, nothing contradicted: today's behaviour
    assert "the guest could not be read" in done.stderr


def test_a_name_no_system_has_is_not_taken_from_the_guest(tmp_path: Path) -> None:
    disk = uefi_guest(tmp_path / "guest", f'NAME="{"Debian " * 40}"\nID=debian\nVERSION_ID=12\n')
    done = run_cli("pack", str(disk), str(tmp_path / "x.oci"))
    assert done.returncode != 0 and "pass --os NAME" in done.stderr
    disk = uefi_guest(tmp_path / "bare", "ID=debian\n")  # no NAME, no VERSION_ID: nothing made up
    done = run_cli("pack", str(disk), str(tmp_path / "y.oci"), "--os-version", "12")
    assert done.returncode != 0 and "pass --os NAME" in done.stderr


def windows_guest(tmp: Path, hives: dict[str, Path], build: int, edition_id: str, product_name: str) -> Path:
    software = edit_hive(
        hives["SOFTWARE"],
        tmp / "SOFTWARE",
        {
            CURRENT_VERSION: {
                "ProductName": f"string:{product_name}",
                "EditionID": f"string:{edition_id}",
                "InstallationType": "string:Server",
                "CurrentBuild": f"string:{build}",
                "CurrentBuildNumber": f"string:{build}",
            }
        },
    )
    volume = make_ntfs(tmp / "ntfs.img", {f"{CONFIG}/SOFTWARE": software, f"{CONFIG}/SYSTEM": hives["SYSTEM"]})
    return mbr_disk(tmp / "windows.raw", [("7", volume)], size_mib=72, boot_code=GRUB_BOOT_IMG.read_bytes())


@pytest.fixture(scope="module")
def windows_2019_standard(base: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("windows")
    return windows_guest(tmp, base, 17763, "ServerStandard", "Windows Server 2019 Standard")


def test_a_windows_guest_is_packed_as_the_release_and_edition_it_holds(
    windows_2019_standard: Path, tmp_path: Path
) -> None:
    done = run_cli("pack", str(windows_2019_standard), str(tmp_path / "w.oci"))
    assert done.returncode == 0, done.stderr
    assert "os: Windows Server 2019 Standard (read from the guest's registry" in done.stdout
    metadata = metadata_of(tmp_path / "w.oci")
    assert (metadata["operatingSystem"], metadata["operatingSystemVersion"]) == ("Windows", "Server 2019 Standard")


@pytest.mark.parametrize("version", ["Server 2022 Standard", "Server 2019 Datacenter", "Server 2012 R2 Datacenter"])
def test_another_windows_release_or_edition_is_refused_without_override(
    windows_2019_standard: Path, tmp_path: Path, version: str
) -> None:
    out = tmp_path / "w.oci"
    for extra in ([], ["--guest-mismatch-ok"]):
        done = pack_json(str(windows_2019_standard), str(out), "--os", "Windows", "--os-version", version, *extra)
        assert done.returncode != 0 and not out.exists(), done.stdout
        error = json.loads(done.stdout)["error"]
        assert error["code"] == "metadata.guest-windows"
        assert "the guest holds Windows Server 2019 Standard" in error["message"]
        assert "--guest-mismatch-ok" not in done.stderr


def test_a_linux_name_on_a_windows_guest_is_refused(windows_2019_standard: Path, tmp_path: Path) -> None:
    args = ["--os", "Oracle Linux", "--os-version", "8", "--guest-mismatch-ok"]
    done = pack_json(str(windows_2019_standard), str(tmp_path / "w.oci"), *args)
    assert json.loads(done.stdout)["error"]["code"] == "metadata.guest-windows"


def test_a_batch_output_without_os_takes_it_from_the_guest(debian: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "batch.toml"
    manifest.write_text(
        f'[[source]]\npath = "{debian}"\n[[source.output]]\npath = "out/debian.oci"\n'
        f'[[source.output]]\npath = "out/ubuntu.oci"\noci = {{ os = "Ubuntu", os_version = "22.04", '
        "guest_mismatch_ok = true }\n"
    )
    dry = run_cli("batch", str(manifest), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "out/debian.oci" in dry.stdout and "system, version and firmware read from the guest" in dry.stdout
    rows = json.loads(run_cli("batch", str(manifest), "--dry-run", "--json").stdout)["outputs"]
    assert [row["from_guest"] for row in rows] == [["system", "version", "firmware"], ["firmware"]]
    done = run_cli("batch", str(manifest))
    assert done.returncode == 0, done.stdout + done.stderr
    metadata = metadata_of(tmp_path / "out" / "debian.oci")
    assert (metadata["operatingSystem"], metadata["operatingSystemVersion"]) == ("Debian GNU/Linux", "12")
    assert metadata_of(tmp_path / "out" / "ubuntu.oci")["operatingSystem"] == "Ubuntu"
    manifest.write_text(manifest.read_text().replace("guest_mismatch_ok = true", "guest_mismatch_ok = false"))
    refused = run_cli("batch", str(manifest), "--keep-going")
    assert refused.returncode == 1 and "set guest_mismatch_ok = true in the output's oci table" in refused.stderr
