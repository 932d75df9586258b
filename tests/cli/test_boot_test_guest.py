"""boot-test on a guest that boots like a cloud image (tests/bootdisks.py write_guest_disk: GRUB, Debian's cloud
kernel, an initramfs with every driver the launch modes' devices need): under both firmwares and in every launch
mode the guest sees its boot disk and the seed CD, and the report says whether the network came up."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from imagepack.core.errors import BootError
from imagepack.verbs.boot.machine import find_ovmf
from imagepack.verbs.boot.run import DEFAULT_MARKER, default_seed
from tests import bootdisks
from tests.conftest import run_cli

TCG = ("--accel", "tcg")
MODES = ("PARAVIRTUALIZED", "EMULATED", "NATIVE")


def _needs(*tools: str) -> None:
    missing = [tool for tool in ("qemu-system-x86_64", *tools) if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: scripts/setup with IMAGEPACK_TEST_TOOLS=1 installs them")


@pytest.fixture(scope="module")
def guest_kernel() -> bootdisks.Kernel:
    _needs("grub-mkimage", "grub-mkstandalone", "mformat", "mcopy", "busybox")
    kernel = bootdisks.find_kernel(bootdisks.GUEST_MODULES)
    if kernel is None:
        pytest.skip("no cloud kernel with its IDE, SCSI, CD-ROM and virtio modules: scripts/setup unpacks one")
    return kernel


@pytest.fixture(scope="module")
def guests(guest_kernel: bootdisks.Kernel, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One guest disk per firmware, and a seed ISO made as the boot test makes its own."""
    base = tmp_path_factory.mktemp("guests")
    made = {"seed": default_seed(base, DEFAULT_MARKER)}
    for firmware in ("BIOS", "UEFI_64"):
        if firmware == "UEFI_64":
            try:
                find_ovmf()
            except BootError as e:
                pytest.skip(str(e))
        work = base / firmware
        work.mkdir()
        made[firmware] = base / f"{firmware}.raw"
        uefi = firmware == "UEFI_64"
        bootdisks.write_guest_disk(made[firmware], work, guest_kernel, uefi=uefi, marker=DEFAULT_MARKER)
    return made


def _boot(*args: str) -> dict[str, Any]:
    done = run_cli("boot-test", *args, *TCG, "--json", timeout=400)
    assert done.returncode in (0, 3), done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    assert (done.returncode == 0) == report["booted"]
    return report


@pytest.mark.parametrize("firmware", ["UEFI_64", "BIOS"])
@pytest.mark.parametrize("mode", MODES)
def test_the_guest_sees_the_seed_cd_under_each_firmware_and_launch_mode(
    guests: dict[str, Path], firmware: str, mode: str
) -> None:
    args = [str(guests[firmware]), "--firmware", firmware, "--launch-mode", mode, "--seed", str(guests["seed"])]
    report = _boot(*args, "--expect", bootdisks.GUEST_DONE, "--timeout", "240")
    assert report["outcome"] == "booted", report["last_lines"]
    seen = "\n".join(report["last_lines"])
    assert bootdisks.GUEST_ROOT_MARKER in seen  # the boot disk, on the launch mode's controller
    assert bootdisks.GUEST_SEED_MARKER in seen, seen  # and the seed CD, with its label read


def test_a_guest_whose_network_comes_up_boots_and_the_report_names_its_address(guests: dict[str, Path]) -> None:
    report = _boot(str(guests["UEFI_64"]), "--launch-mode", "PARAVIRTUALIZED", "--timeout", "240")
    assert report["seed"] == "default" and report["outcome"] == "booted", report["last_lines"]
    assert report["network"] == "10.0.2.15" and report["network_checked"] is True  # qemu's DHCP lease
    assert report["seconds_to"]["network"] <= report["seconds_to"]["marker"]
    assert "network up (10.0.2.15)" in report["message"]


def test_a_guest_without_a_driver_for_its_nic_did_not_boot_though_it_printed_the_marker(
    guests: dict[str, Path],
) -> None:
    """The cloud kernel has no e1000 driver: in EMULATED mode the guest reads its seed and prints the marker, and
    an instance of it would still be unreachable."""
    report = _boot(str(guests["UEFI_64"]), "--launch-mode", "EMULATED", "--timeout", "240")
    assert report["seconds_to"]["marker"] is not None, report["last_lines"]
    assert report["outcome"] == "no-network" and report["booted"] is False
    assert report["network"] is None and report["network_checked"] is True
    assert "no driver for the e1000 network device" in report["message"]


def test_with_expect_a_boot_without_network_says_the_network_was_not_checked(guests: dict[str, Path]) -> None:
    args = [str(guests["BIOS"]), "--launch-mode", "EMULATED", "--expect", bootdisks.GUEST_DONE]
    done = run_cli("boot-test", *args, *TCG, "--timeout", "240", timeout=400)
    assert done.returncode == 0, done.stderr
    assert "network NOT checked" in done.stdout
    assert "network:      NOT checked" in done.stdout
    # What it waits for, said at the start, and the stages as they pass.
    assert f"waiting up to 240 s for '{bootdisks.GUEST_DONE}' on the serial console" in done.stderr
    for passed in ("the boot loader started", "the kernel started", "user space started", "the marker appeared"):
        assert passed in done.stderr
