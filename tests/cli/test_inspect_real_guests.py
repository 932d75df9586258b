"""inspect on the real Debian 12 guests built from Debian's own packages (tests/guests.py): what each states of its
system, firmware, kernels and boot entry, the readiness rules on them, and pack taking its values from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli

FIRMWARE = {"uefi-ext4": ["UEFI_64"], "bios-ext4": ["BIOS"], "lvm-xfs": ["UEFI_64", "BIOS"]}
ROOT = {"uefi-ext4": "partition 2", "bios-ext4": "partition 1", "lvm-xfs": "lv guestvg/root"}
VIRTIO = ("virtio_blk", "virtio_scsi", "virtio_net", "virtio_pci")


def inspected(disk: Path, *args: str) -> tuple[int, dict[str, Any]]:
    done = run_cli("inspect", str(disk), "--json", *args)
    assert done.stdout, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, report


@pytest.mark.parametrize("name", sorted(FIRMWARE))
def test_each_guest_states_its_system_firmware_kernel_and_console(debian_guests: dict[str, Path], name: str) -> None:
    code, report = inspected(debian_guests[name], "--for", "oci")
    assert code == 0, report
    system = report["os"]
    assert (system["family"], system["id"], system["version"]) == ("linux", "debian", "12")
    assert system["root"] == ROOT[name] and system["unmounted"] == []
    assert sorted(report["boot"]["firmware"]) == sorted(FIRMWARE[name]) and report["boot"]["loader"] == "GRUB 2"
    config = report["config"]
    (kernel,) = [k for k in config["kernels"] if k["version"] == config["default_kernel"]]
    where = {driver["name"]: driver["where"] for driver in kernel["drivers"]}
    assert all(where[driver] in ("initramfs", "built-in") for driver in VIRTIO), where
    assert "console=ttyS0" in config["boot"]["default"]["cmdline"]
    assert config["cloud_init"]["installed"] is True
    readiness = report["readiness"]
    assert readiness["ready"] is True
    # Debian is not on OCI's list: said, and the only finding on these guests.
    assert [f["id"] for f in readiness["findings"]] == ["guest.os-unlisted"]


def test_emulated_mode_is_refused_for_a_kernel_without_e1000(debian_guests: dict[str, Path]) -> None:
    code, report = inspected(debian_guests["uefi-ext4"], "--for", "oci", "--launch-mode", "EMULATED")
    assert code != 0 and report["readiness"]["ready"] is False
    (finding,) = [f for f in report["readiness"]["findings"] if f["id"] == "linux.emulated-drivers"]
    assert finding["severity"] == "error" and "e1000" in finding["message"]


def test_the_lvm_guest_is_read_through_its_logical_volume(debian_guests: dict[str, Path]) -> None:
    _, report = inspected(debian_guests["lvm-xfs"])
    mounts = {mount["path"]: (mount["block"], mount["filesystem"]) for mount in report["os"]["mounts"]}
    assert mounts["/"] == ("lv guestvg/root", "xfs") and mounts["/boot"][1] == "ext4"
    assert mounts["/boot/efi"][1] == "vfat"


def test_pack_of_a_debian_guest_needs_no_os_and_verify_agrees(debian_guests: dict[str, Path], tmp_path: Path) -> None:
    archive = tmp_path / "debian.oci"
    done = run_cli("pack", str(debian_guests["uefi-ext4"]), str(archive), "--json")
    assert done.returncode == 0, done.stderr
    packed = json.loads(done.stdout)
    metadata = packed["metadata"]
    assert (metadata["operatingSystem"], metadata["operatingSystemVersion"]) == ("Debian GNU/Linux", "12")
    assert metadata["externalLaunchOptions"]["firmware"] == "UEFI_64"
    assert packed["sources"]["operatingSystem"]["from"] == "guest"
    verified = run_cli("verify", str(archive), "--json")
    assert verified.returncode == 0, verified.stdout
    assert json.loads(verified.stdout)["ready"] is True


def test_verify_of_a_bios_only_guest_packed_as_uefi_says_not_ready_and_why(
    debian_guests: dict[str, Path], tmp_path: Path
) -> None:
    archive = tmp_path / "bios-as-uefi.oci"
    args = ["pack", str(debian_guests["bios-ext4"]), str(archive), "--firmware", "UEFI_64"]
    refused = run_cli(*args)
    assert refused.returncode != 0 and "UEFI shell" in refused.stderr and not archive.exists()
    assert run_cli(*args, "--guest-mismatch-ok").returncode == 0
    done = run_cli("verify", str(archive), "--json")
    report = json.loads(done.stdout)
    assert done.returncode == 3 and report["ready"] is False
    firmware = [rule for rule in report["guest"]["rules"] if "firmware" in rule["id"]]
    assert firmware and firmware[0]["severity"] == "error" and "UEFI" in firmware[0]["message"], report["guest"]


def test_a_bios_boot_partition_is_named_as_grubs_core_image_not_an_unreadable_file_system(
    debian_guests: dict[str, Path],
) -> None:
    _, report = inspected(debian_guests["lvm-xfs"])
    (bios_boot,) = [block for block in report["storage"]["blocks"] if block.get("type_name") == "BIOS boot"]
    assert bios_boot["filesystem"] == "BIOS_boot" and report["unreadable"] == []
    text = run_cli("inspect", str(debian_guests["lvm-xfs"]))
    assert text.returncode == 0, text.stderr
    (line,) = [line for line in text.stdout.splitlines() if "[BIOS boot]" in line]
    assert line.endswith("GRUB's core image (no file system)") and "cannot read" not in line
