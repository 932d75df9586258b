"""boot-test and verify --boot on small disks the tests build (tests/bootdisks.py): each boots under the right
firmware and launch mode, and fails under the wrong one saying why. The machines run under TCG, which works
everywhere and the same way everywhere; one test checks the default choice of KVM."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imagepack.core.errors import BootError
from imagepack.verbs.boot.machine import find_ovmf, kvm_unusable_reason
from imagepack.verbs.boot.run import DEFAULT_MARKER, default_seed
from tests import bootdisks
from tests.conftest import file_digest, holds_open, interrupt_when, leftovers, run_cli

TCG = ("--accel", "tcg")


def _qemu_system() -> None:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86 ovmf)")


def _tools(*names: str) -> None:
    _qemu_system()
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: scripts/setup with IMAGEPACK_TEST_TOOLS=1 installs them")


@pytest.fixture(scope="session")
def disk_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bootdisks")


@pytest.fixture(scope="session")
def bios_disk(disk_dir: Path) -> Path:
    _qemu_system()
    path = disk_dir / "bios.raw"
    bootdisks.write_bios_disk(path)
    return path


@pytest.fixture(scope="session")
def uefi_disk(disk_dir: Path) -> Path:
    _tools("grub-mkstandalone", "mformat", "mcopy")
    try:
        find_ovmf()
    except BootError as e:
        pytest.skip(str(e))
    work = disk_dir / "uefi"
    work.mkdir()
    path = disk_dir / "uefi.raw"
    bootdisks.write_uefi_disk(path, work)
    return path


@pytest.fixture(scope="session")
def virtio_disk(disk_dir: Path) -> Path:
    _tools("grub-mkimage", "mformat", "mcopy", "busybox")
    if not Path("/usr/lib/grub/i386-pc/boot.img").exists():
        pytest.skip("grub-pc-bin is not installed: scripts/setup with IMAGEPACK_TEST_TOOLS=1 installs it")
    kernel = bootdisks.find_kernel()
    if kernel is None:
        pytest.skip("no kernel with modular virtio drivers: scripts/setup with IMAGEPACK_TEST_TOOLS=1 unpacks one")
    work = disk_dir / "virtio"
    work.mkdir()
    path = disk_dir / "virtio.raw"
    bootdisks.write_virtio_disk(path, work, kernel)
    return path


def _pack(disk: Path, out: Path, *options: str) -> Path:
    done = run_cli("pack", str(disk), str(out), "--os", "Oracle Linux", "--os-version", "9", "-q", *options)
    assert done.returncode == 0, done.stderr
    return out


def _boot(*args: str) -> tuple[int, dict[str, Any], str]:
    done = run_cli("boot-test", *args, "--json", timeout=180)
    return done.returncode, json.loads(done.stdout), done.stderr


def test_bios_disk_boots_under_bios_and_the_console_log_is_kept(bios_disk: Path, tmp_path: Path) -> None:
    log = tmp_path / "console.txt"
    status, report, stderr = _boot(
        str(bios_disk), "--expect", bootdisks.BIOS_MARKER, "--console-log", str(log), *TCG, "--timeout", "60"
    )
    assert status == 0, stderr
    assert report["booted"] is True
    assert report["firmware"] == "BIOS"  # from the MBR: no EFI system partition
    assert report["launch_mode"] == "PARAVIRTUALIZED" and report["disk_bus"] == "virtio-blk"
    assert report["accelerator"] == "tcg"
    assert report["seconds_to"]["boot_loader"] is not None  # SeaBIOS jumped to the boot sector
    assert report["seconds_to"]["marker"] >= report["seconds_to"]["boot_loader"]
    assert bootdisks.BIOS_MARKER in log.read_text()
    assert leftovers(tmp_path) == []


def test_bios_disk_under_uefi_has_no_boot_loader_for_want_of_an_efi_system_partition(bios_disk: Path) -> None:
    status, report, _ = _boot(str(bios_disk), "--firmware", "uefi_64", "--expect", bootdisks.BIOS_MARKER, *TCG)
    assert status == 3
    assert report["outcome"] == "no-boot-loader"
    assert report["message"] == "no boot loader under UEFI_64: the disk has no EFI system partition"
    assert report["reached"] in (None, "firmware")


def test_uefi_disk_in_a_oci_boots_in_place_under_the_metadata_firmware(uefi_disk: Path, tmp_path: Path) -> None:
    archive = _pack(uefi_disk, tmp_path / "uefi.oci")  # firmware UEFI_64, read from the disk's ESP
    before = file_digest(archive)
    status, report, stderr = _boot(str(archive), "--expect", bootdisks.UEFI_MARKER, *TCG, "--timeout", "90")
    assert status == 0, stderr
    assert report["firmware"] == "UEFI_64"
    assert report["seconds_to"]["boot_loader"] is not None  # OVMF started the disk's BOOTX64.EFI
    assert file_digest(archive) == before
    assert leftovers(tmp_path) == []


def test_uefi_disk_under_bios_has_no_boot_code_in_its_mbr(uefi_disk: Path) -> None:
    status, report, _ = _boot(str(uefi_disk), "--firmware", "BIOS", "--expect", bootdisks.UEFI_MARKER, *TCG)
    assert status == 3
    assert report["outcome"] == "no-boot-loader"
    assert report["message"].startswith("no boot loader under BIOS: the disk's MBR holds no boot code")


@pytest.fixture(scope="session")
def emulated_oci(virtio_disk: Path, disk_dir: Path) -> Path:
    """The virtio-only disk packed for EMULATED mode (IDE boot disk)."""
    return _pack(virtio_disk, disk_dir / "emulated.oci", "--launch-mode", "EMULATED")


def test_virtio_only_kernel_boots_when_the_launch_mode_option_overrides_emulated(emulated_oci: Path) -> None:
    before = file_digest(emulated_oci)
    args = [str(emulated_oci), "--launch-mode", "paravirtualized", "--expect", bootdisks.VIRTIO_MARKER, *TCG]
    status, report, stderr = _boot(*args, "--timeout", "120")
    assert status == 0, stderr
    assert report["launch_mode"] == "PARAVIRTUALIZED" and report["disk_bus"] == "virtio-blk"
    times = report["seconds_to"]
    assert times["boot_loader"] <= times["kernel"] <= times["marker"]
    assert file_digest(emulated_oci) == before  # the guest wrote nothing into the archive


def test_virtio_only_kernel_in_an_emulated_oci_finds_no_root_file_system(emulated_oci: Path) -> None:
    status, report, _ = _boot(str(emulated_oci), "--expect", bootdisks.VIRTIO_MARKER, *TCG, "--timeout", "120")
    assert status == 3
    assert report["launch_mode"] == "EMULATED" and report["disk_bus"] == "ide"
    assert report["outcome"] == "no-root-file-system"
    assert report["reached"] == "userspace"  # the initramfs ran, and found no root
    assert "a missing driver for this launch mode is the usual cause" in report["message"]
    assert "Gave up waiting for root file system device" in report["message"]  # the console's own line


def test_no_marker_before_the_timeout_says_what_was_reached(virtio_disk: Path) -> None:
    status, report, _ = _boot(str(virtio_disk), "--expect", "never printed", *TCG, "--timeout", "2")
    assert status == 3
    assert report["outcome"] == "timeout"
    assert report["message"].startswith("no marker within 2 s; ")


def test_the_machine_that_powers_off_before_the_marker_is_reported_stopped(bios_disk: Path) -> None:
    status, report, _ = _boot(str(bios_disk), "--expect", "never printed", *TCG, "--timeout", "60")
    assert status == 3
    assert report["outcome"] == "stopped"
    assert report["reached"] == "boot_loader"


def test_kvm_is_used_when_dev_kvm_is_usable_and_tcg_otherwise(bios_disk: Path) -> None:
    reason = kvm_unusable_reason()
    status, report, stderr = _boot(str(bios_disk), "--expect", bootdisks.BIOS_MARKER, "--timeout", "120")
    assert status == 0, stderr
    assert report["accelerator"] == ("tcg" if reason else "kvm")
    assert (report["accelerator_note"] is not None) == bool(reason)


def _qemu_running_on(path: Path) -> Callable[[], bool]:
    def running() -> bool:
        for pid in os.listdir("/proc"):
            try:
                cmdline = Path("/proc", pid, "cmdline").read_bytes()
            except (OSError, ValueError):
                continue
            # The disk is handed over as an open descriptor; a name on the command line is the older way.
            if b"qemu-system" in cmdline and (str(path).encode() in cmdline or holds_open(int(pid), path)):
                return True
        return False

    return running


@pytest.mark.parametrize("signum_name", ["SIGTERM", "SIGINT"])
def test_an_interrupted_boot_test_leaves_no_qemu_running(virtio_disk: Path, tmp_path: Path, signum_name: str) -> None:
    import signal

    disk = tmp_path / "interrupted.raw"
    shutil.copyfile(virtio_disk, disk)
    running = _qemu_running_on(disk)
    args = ["boot-test", str(disk), "--expect", "never printed", *TCG, "--console-log", str(tmp_path / "c.txt")]
    status, stderr = interrupt_when(args, running, signum=getattr(signal, signum_name))
    assert status == 128 + getattr(signal, signum_name), stderr
    deadline = time.monotonic() + 5
    while running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running()
    assert leftovers(tmp_path) == [] and not (tmp_path / "c.txt").exists()


def test_verify_boot_adds_the_boot_test_to_the_checks(bios_disk: Path, uefi_disk: Path, tmp_path: Path) -> None:
    good = _pack(bios_disk, tmp_path / "bios.oci")
    done = run_cli("verify", str(good), "--boot", "--expect", bootdisks.BIOS_MARKER, *TCG, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["facts"]["boot"]["booted"] is True
    # A UEFI-only disk declared BIOS: the import would take it, the instance would never boot.
    wrong = _pack(uefi_disk, tmp_path / "declared-bios.oci", "--firmware", "BIOS", "--guest-mismatch-ok")
    done = run_cli("verify", str(wrong), "--boot", "--expect", bootdisks.UEFI_MARKER, *TCG, "--json")
    assert done.returncode == 3
    codes = [p["code"] for p in json.loads(done.stdout)["problems"]]
    assert "boot.no-boot-loader" in codes


def test_verify_refuses_boot_options_without_boot(bios_disk: Path) -> None:
    done = run_cli("verify", str(bios_disk), "--expect", "x")
    assert done.returncode == 2
    assert "applies only with --boot" in done.stderr


def test_without_qemu_system_the_boot_test_cannot_run_and_says_how_to_install_it(tmp_path: Path) -> None:
    disk = tmp_path / "bios.raw"
    bootdisks.write_bios_disk(disk)
    env = {**os.environ, "IMAGEPACK_QEMU_SYSTEM": str(tmp_path / "no-such-qemu")}
    done = run_cli("boot-test", str(disk), env=env)
    assert done.returncode == 1
    assert "apt-get install qemu-system-x86 ovmf" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--expect", "("], "not a regular expression"),
        (["--launch-mode", "CUSTOM"], "CUSTOM takes its devices from a .oci"),
        (["--firmware", "EFI"], "use one of BIOS | UEFI_64"),
        (["--accel", "hvf"], "use one of kvm | tcg"),
    ],
)
def test_wrong_boot_options_are_usage_errors(tmp_path: Path, args: list[str], said: str) -> None:
    disk = tmp_path / "bios.raw"
    bootdisks.write_bios_disk(disk)
    done = run_cli("boot-test", str(disk), *args)
    assert done.returncode == 2, done.stderr
    assert said in done.stderr


def test_a_missing_seed_is_refused_before_anything_boots(tmp_path: Path) -> None:
    disk = tmp_path / "bios.raw"
    bootdisks.write_bios_disk(disk)
    done = run_cli("boot-test", str(disk), "--seed", str(tmp_path / "seed.iso"))
    assert done.returncode == 1
    assert "seed.iso: no such file" in done.stderr


@pytest.mark.parametrize(
    "line",
    [
        "dracut-initqueue[301]: Warning: dracut-initqueue: timeout, still waiting for following initqueue hooks:",
        "[  188.000000] dracut Warning: Could not boot.",
        "[ TIME ] Timed out waiting for device dev-mapper-ol\\x2droot.device - /dev/mapper/ol-root.",
        "[    2.345678] VFS: Unable to mount root fs on unknown-block(0,0)",
    ],
)
def test_the_console_knows_how_other_initramfs_say_the_root_is_missing(line: str) -> None:
    import re

    from imagepack.verbs.boot.console import Console, Ending, Stage

    console = Console(re.compile("login:"))
    console.feed("[    0.000000] Linux version 5.15.0-200.131.27.el8uek.x86_64\r\n", 1.0)
    console.feed(line + "\r\n", 2.0)
    assert console.reached.get(Stage.KERNEL) == 1.0
    assert console.ending is Ending.NO_ROOT


@pytest.mark.parametrize(
    ("mode", "bus", "nic"),
    [("NATIVE", "nvme", "e1000e"), ("EMULATED", "ide", "e1000"), ("PARAVIRTUALIZED", "virtio-blk", "virtio-net")],
)
def test_each_launch_mode_boots_from_its_own_disk_controller(bios_disk: Path, mode: str, bus: str, nic: str) -> None:
    """SeaBIOS boots from IDE, virtio-blk and NVMe alike, so the boot sector shows each machine is well formed."""
    status, report, stderr = _boot(str(bios_disk), "--launch-mode", mode, "--expect", bootdisks.BIOS_MARKER, *TCG)
    assert status == 0, stderr
    assert (report["launch_mode"], report["disk_bus"], report["nic"]) == (mode, bus, nic)


def test_without_expect_the_default_seed_is_attached_and_its_marker_awaited(bios_disk: Path) -> None:
    status, report, stderr = _boot(str(bios_disk), *TCG, "--timeout", "60")
    assert status == 3, stderr  # the boot sector powers off: no cloud-init ever prints the marker
    assert report["seed"] == "default"
    assert report["expect"] == DEFAULT_MARKER
    assert report["outcome"] == "stopped"


def test_the_default_seed_is_a_cidata_iso_whose_user_data_prints_the_marker(tmp_path: Path) -> None:
    if shutil.which("isoinfo") is None or shutil.which("blkid") is None:
        pytest.skip("isoinfo (genisoimage) and blkid are needed to read the seed back")
    seed = default_seed(tmp_path, DEFAULT_MARKER)
    probe = subprocess.run(["blkid", "-p", "-o", "export", str(seed)], capture_output=True, text=True, check=True)
    assert "LABEL=cidata" in probe.stdout.splitlines() and "TYPE=iso9660" in probe.stdout.splitlines()
    user_data = subprocess.run(
        ["isoinfo", "-R", "-i", str(seed), "-x", "/user-data"], capture_output=True, text=True, check=True
    ).stdout
    assert user_data.startswith("#cloud-config")
    assert DEFAULT_MARKER in user_data


def test_a_kvm_boot_stuck_before_the_kernel_suggests_tcg() -> None:
    """Some hosts' KVM stops in the boot loader (nested virtualisation): the timeout says so and names TCG."""
    import re
    from pathlib import Path

    from imagepack.cli.output import with_remedy
    from imagepack.formats.partitions import Firmware, PartitionLayout, PartitionTable
    from imagepack.oci.metadata import LaunchMode
    from imagepack.verbs.boot.console import Console
    from imagepack.verbs.boot.machine import Accelerator, Devices, DiskBus, Nic
    from imagepack.verbs.boot.run import BootReport, BootRequest, Outcome, _verdict

    console = Console(re.compile("login:"))
    console.feed("Booting from Hard Disk...\n", 0.5, firmware_port=True)
    console.feed("Booting from 0000:7c00\n", 0.6, firmware_port=True)
    devices = Devices(DiskBus.VIRTIO_BLK, Nic.VIRTIO_NET)
    for accelerator, hinted in ((Accelerator.KVM, True), (Accelerator.TCG, False)):
        report = BootReport(
            Path("d.qcow2"), LaunchMode.PARAVIRTUALIZED, Firmware.BIOS, devices, accelerator, None, Outcome.TIMEOUT, ""
        )
        request = BootRequest(expect="login:", timeout=150)
        outcome, message = _verdict(console, "timeout", report, PartitionLayout(PartitionTable.MBR), request)
        assert outcome is Outcome.TIMEOUT
        assert message.startswith("no marker within 150 s; the boot loader started, no kernel message")
        said = with_remedy(message, report.remedy)
        assert ("KVM may hang at the boot loader on this host; try again with --accel tcg" in said) is hinted
