"""boot-test on real Debian 12 guests built from Debian's packages (tests/guests.py: the cloud kernel, its
initramfs, GRUB, cloud-init), under TCG: what the report says is checked against what such a guest does when booted
as OCI would launch it. Each boot takes about a minute under TCG, so only two guests are booted."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from imagepack.core.errors import BootError
from imagepack.verbs.boot.machine import find_ovmf
from tests.conftest import run_cli
from tests.guests import DISK_SIZE, fs_uuid


def _needs_qemu(uefi: bool) -> None:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 not installed: scripts/setup with IMAGEPACK_TEST_TOOLS=1 installs it")
    if uefi:
        try:
            find_ovmf()
        except BootError as e:
            pytest.skip(str(e))


def _boot(disk: Path, *args: str, console: Path) -> tuple[int, dict[str, Any]]:
    common = ("--accel", "tcg", "--console-log", str(console), "--json")
    done = run_cli("boot-test", str(disk), *common, *args, timeout=420)
    assert done.returncode in (0, 3), done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    assert (done.returncode == 0) == report["booted"]
    return done.returncode, report


def test_the_uefi_guest_boots_paravirtualized_with_its_network_up(
    debian_guests: dict[str, Path], tmp_path: Path
) -> None:
    _needs_qemu(uefi=True)
    console = tmp_path / "console.txt"
    code, report = _boot(debian_guests["uefi-ext4"], "--launch-mode", "PARAVIRTUALIZED", console=console)
    assert code == 0 and report["outcome"] == "booted", report["last_lines"]
    # The firmware comes from the disk's EFI system partition; the seed CD was found (cloud-init ran it).
    assert report["firmware"] == "UEFI_64" and report["disk_bus"] == "virtio-blk" and report["nic"] == "virtio-net"
    assert report["seed"] == "default" and report["reached"] == "marker"
    assert report["network_checked"] is True and "10.0.2.15" in report["network"]  # qemu's DHCP lease
    stages = report["seconds_to"]
    assert stages["boot_loader"] <= stages["kernel"] <= stages["userspace"] <= stages["cloud_init"]
    assert stages["cloud_init"] <= stages["network"] <= stages["marker"]
    log = console.read_text(errors="replace")
    # The guest's own GRUB booted its kernel from the ext4 root named by UUID, on the serial console.
    assert f"root=UUID={fs_uuid('uefi-ext4', 'root')}" in log and "console=ttyS0" in log


def test_the_lvm_guest_under_bios_in_emulated_mode_boots_but_is_not_called_a_success(
    debian_guests: dict[str, Path], tmp_path: Path
) -> None:
    """GRUB from the GPT's BIOS boot partition, the XFS root on LVM, from an IDE disk: cloud-init runs and prints
    the marker, but Debian's cloud kernel has no driver for EMULATED's e1000, so an instance would be unreachable."""
    _needs_qemu(uefi=False)
    console = tmp_path / "console.txt"
    args = ("--firmware", "BIOS", "--launch-mode", "EMULATED")
    code, report = _boot(debian_guests["lvm-xfs"], *args, console=console)
    assert report["seconds_to"]["marker"] is not None, report["last_lines"]
    assert code == 3 and report["outcome"] == "no-network" and report["booted"] is False
    assert report["firmware"] == "BIOS" and report["disk_bus"] == "ide" and report["nic"] == "e1000"
    assert report["network"] is None and report["network_checked"] is True
    assert "e1000" in report["message"]
    log = console.read_text(errors="replace")
    assert "root=/dev/mapper/guestvg-root" in log and "XFS (dm-0): Mounting" in log


def test_a_uefi_only_guest_under_bios_has_no_boot_loader(debian_guests: dict[str, Path], tmp_path: Path) -> None:
    """The UEFI guest's protective MBR holds no boot code: known without booting, and said so."""
    _needs_qemu(uefi=False)
    code, report = _boot(debian_guests["uefi-ext4"], "--firmware", "BIOS", console=tmp_path / "console.txt")
    assert code == 3 and report["outcome"] == "no-boot-loader", report
    assert "MBR holds no boot code" in report["message"]


@pytest.mark.parametrize(
    ("name", "table", "types"),
    [
        ("uefi-ext4", "gpt", ["EF00", "8300"]),
        ("bios-ext4", "dos", ["83"]),
        ("lvm-xfs", "gpt", ["EF02", "EF00", "8300", "8E00"]),
    ],
)
def test_each_guest_is_a_sparse_read_only_disk_with_its_layout(
    debian_guests: dict[str, Path], name: str, table: str, types: list[str]
) -> None:
    """What the inspect tests rely on, read by sfdisk and sgdisk rather than by imagepack."""
    disk = debian_guests[name]
    st = disk.stat()
    assert st.st_size == DISK_SIZE and st.st_mode & 0o222 == 0
    assert st.st_blocks * 512 < DISK_SIZE // 2  # holes kept: the guest's file systems are mostly empty
    if shutil.which("sfdisk") is None or shutil.which("sgdisk") is None:
        pytest.skip("sfdisk or sgdisk not installed")
    layout = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, check=True).stdout)
    assert layout["partitiontable"]["label"] == table
    if table == "gpt":
        printed = subprocess.run(["sgdisk", "-p", str(disk)], capture_output=True, text=True, check=True).stdout
        codes = [line.split()[5] for line in printed.splitlines() if line.strip()[:1].isdigit()]
        assert codes == types, printed
    else:
        assert [p["type"] for p in layout["partitiontable"]["partitions"]] == types
