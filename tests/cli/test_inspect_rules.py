"""The readiness rules (`inspect --for`, and `verify`) on synthetic guests made with the real tools: each rule fires
on a guest built to break it, with its evidence and fix, and stays quiet on a good guest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.guestdisks import ext4, gpt_disk, mbr_disk, sh
from tests.linuxguests import initramfs, kernel, write

ROOT_UUID = "7a1b2c3d-1111-4222-8333-944455556666"
GRUB_BOOT_IMG = Path("/usr/lib/grub/i386-pc/boot.img")
GOOD_KERNEL = "5.15.0-91-generic"
OLD_KERNEL = "3.2.0-4-amd64"
CLOUD_KERNEL = "6.1.0-13-cloud-amd64"


def grub_cfg(version: str, cmdline: str) -> str:
    return (
        'set default="0"\n'
        f"menuentry 'Linux' {{\n\tlinux\t/boot/vmlinuz-{version} root=UUID={ROOT_UUID} ro {cmdline}\n"
        f"\tinitrd\t/boot/initrd.img-{version}\n}}\n"
    )


def good_root(root: Path, work: Path) -> None:
    """Ubuntu 22.04 with every driver OCI's launch modes need in the initramfs, console=ttyS0, fstab by UUID,
    cloud-init."""
    drivers = ["virtio_blk", "virtio_scsi", "virtio_net", "virtio_pci", "ata_piix", "e1000"]
    image = initramfs(work, GOOD_KERNEL, drivers, "gzip", microcode=False)
    kernel(root, GOOD_KERNEL, initrd=f"initrd.img-{GOOD_KERNEL}", image=image, builtin=[], on_root=drivers)
    write(root, "/boot/grub/grub.cfg", grub_cfg(GOOD_KERNEL, "console=tty0 console=ttyS0,115200"))
    write(root, "/etc/fstab", f"UUID={ROOT_UUID} / ext4 defaults 0 1\n")
    write(root, "/etc/os-release", 'NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="22.04"\nPRETTY_NAME="Ubuntu 22.04"\n')
    write(root, "/usr/bin/cloud-init", "#!/usr/bin/python3\n")
    write(root, "/etc/cloud/cloud.cfg", "datasource_list: [Oracle, None]\n")


def bad_root(root: Path, work: Path) -> None:
    """Debian 12 with an old kernel whose initramfs has no virtio and which has no e1000 at all, no serial
    console, an fstab naming /dev/sdb1 and a missing UUID, a MAC-bound interface, and no cloud-init."""
    image = initramfs(work, OLD_KERNEL, ["ahci"], "gzip", microcode=False)
    kernel(root, OLD_KERNEL, initrd=f"initrd.img-{OLD_KERNEL}", image=image, builtin=[], on_root=["virtio_net"])
    write(root, "/boot/grub/grub.cfg", grub_cfg(OLD_KERNEL, "quiet"))
    fstab = f"UUID={ROOT_UUID} / ext4 defaults 0 1\n/dev/sdb1 /data ext4 defaults 0 2\n"
    fstab += "UUID=11111111-2222-4333-8444-555555555555 /srv ext4 defaults 0 2\n"
    write(root, "/etc/fstab", fstab)
    write(root, "/etc/os-release", 'NAME="Debian GNU/Linux"\nID=debian\nVERSION_ID="12"\n')
    write(root, "/etc/sysconfig/network-scripts/ifcfg-eth0", "DEVICE=eth0\nHWADDR=52:54:00:12:34:56\n")


def cloud_kernel_root(root: Path, work: Path) -> None:
    """Debian's cloud kernel: virtio in the initramfs, no e1000 and no IDE driver anywhere."""
    good_root(root, work)
    shutil.rmtree(root / "boot")
    shutil.rmtree(root / "lib")
    virtio = ["virtio_blk", "virtio_scsi", "virtio_net", "virtio_pci"]
    image = initramfs(work / "cloud", CLOUD_KERNEL, virtio, "gzip", microcode=False)
    kernel(root, CLOUD_KERNEL, initrd=f"initrd.img-{CLOUD_KERNEL}", image=image, builtin=[], on_root=virtio)
    write(root, "/boot/grub/grub.cfg", grub_cfg(CLOUD_KERNEL, "console=ttyS0"))


def root_only_root(root: Path, work: Path) -> None:
    """The good guest with its virtio drivers as modules on the root file system only, none in the initramfs."""
    good_root(root, work)
    shutil.rmtree(root / "boot")
    shutil.rmtree(root / "lib")
    image = initramfs(work / "rootonly", GOOD_KERNEL, ["ata_piix", "e1000"], "gzip", microcode=False)
    drivers = ["virtio_blk", "virtio_scsi", "virtio_net", "virtio_pci", "ata_piix", "e1000"]
    kernel(root, GOOD_KERNEL, initrd=f"initrd.img-{GOOD_KERNEL}", image=image, builtin=[], on_root=drivers)
    write(root, "/boot/grub/grub.cfg", grub_cfg(GOOD_KERNEL, "console=tty0 console=ttyS0,115200"))


def bios_disk(folder: Path, make: Any) -> Path:
    """An MBR disk with GRUB's boot code and one ext4 root: boots by BIOS only."""
    folder.mkdir()
    make(folder / "root", folder / "work")
    root = ext4(folder / "root.img", folder / "root", 24, uuid=ROOT_UUID, label="root")
    return mbr_disk(folder / "disk.raw", [("83", root)], size_mib=32, boot_code=GRUB_BOOT_IMG.read_bytes())


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bios_disk(tmp_path_factory.mktemp("rules") / "good", good_root)


@pytest.fixture(scope="module")
def root_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bios_disk(tmp_path_factory.mktemp("rules") / "root-only", root_only_root)


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bios_disk(tmp_path_factory.mktemp("rules") / "bad", bad_root)


def readiness(image: Path, *args: str, ready: bool) -> dict[str, Any]:
    done = run_cli("inspect", "--json", str(image), *args)
    assert done.returncode == (0 if ready else 3), done.stderr
    found: dict[str, Any] = json.loads(done.stdout)["readiness"]
    assert found["ready"] is ready
    return found


def by_id(found: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    ids: dict[str, list[dict[str, Any]]] = {}
    for finding in found["findings"]:
        ids.setdefault(finding["id"], []).append(finding)
    return ids


def test_a_good_guest_is_ready_in_each_launch_mode_and_its_firmware(good: Path) -> None:
    for mode in ("PARAVIRTUALIZED", "EMULATED"):
        found = readiness(good, "--for", "oci", "--launch-mode", mode, "--firmware", "BIOS", ready=True)
        assert found["findings"] == [] and found["launch_mode"] == mode
    assert readiness(good, "--for", "gcp", ready=True)["findings"] == []


def test_a_bios_only_guest_is_not_ready_for_uefi(good: Path) -> None:
    found = by_id(readiness(good, "--for", "oci", "--firmware", "UEFI_64", ready=False))
    assert list(found) == ["guest.firmware"]
    (firmware,) = found["guest.firmware"]
    assert firmware["severity"] == "error" and "UEFI shell" in firmware["message"]
    assert "MBR boot code: GRUB 2" in firmware["evidence"] and "firmware=BIOS" in firmware["fix"]


def test_each_linux_rule_fires_on_a_guest_built_to_break_it(bad: Path) -> None:
    found = by_id(readiness(bad, "--for", "oci", ready=False))
    (virtio,) = found["linux.virtio-drivers"]
    assert virtio["severity"] == "error" and "virtio_pci" in virtio["message"] and "virtio_blk" in virtio["message"]
    # The kernel has no virtio_blk or virtio_pci at all (in neither modules.dep nor modules.builtin): no initramfs
    # can hold them, so the fix is the other launch mode or another kernel, never update-initramfs.
    assert "EMULATED" in virtio["fix"] and f"kernel {OLD_KERNEL} has no virtio_pci, virtio_blk driver" in virtio["fix"]
    assert (
        "install a kernel built with virtio_pci, virtio_blk" in virtio["fix"] and "initramfs-tools" not in virtio["fix"]
    )
    assert found["linux.kernel-age"][0]["severity"] == "warning"
    assert "apt-get update && apt-get dist-upgrade" in found["linux.kernel-age"][0]["fix"]
    console = found["linux.serial-console"][0]
    assert console["severity"] == "warning" and "/boot/grub/grub.cfg line 3" in console["evidence"][0]
    (device,) = found["linux.fstab-device-name"]
    assert device["severity"] == "warning" and device["evidence"] == [
        "/etc/fstab line 2: /dev/sdb1 /data ext4 defaults 0 2"
    ]
    (missing,) = found["linux.fstab-unresolved"]
    assert missing["severity"] == "error" and "/srv" in missing["message"]
    (mac,) = found["linux.mac-address"]
    assert "52:54:00:12:34:56" in mac["message"] and "ifcfg-eth0" in mac["evidence"][0]
    assert found["linux.cloud-init"][0]["severity"] == "warning"
    assert found["guest.os-unlisted"][0]["severity"] == "warning"
    assert "guest.firmware" not in found


def test_emulated_mode_flags_a_kernel_without_e1000(bad: Path, tmp_path: Path) -> None:
    found = by_id(readiness(bad, "--for", "oci", "--launch-mode", "EMULATED", ready=False))
    (emulated,) = found["linux.emulated-drivers"]
    assert "e1000 (absent)" in emulated["message"] and "ata_piix" in emulated["message"]
    assert "linux.virtio-drivers" not in found
    cloud = bios_disk(tmp_path / "cloud", cloud_kernel_root)
    found = by_id(readiness(cloud, "--for", "oci", "--launch-mode", "EMULATED", ready=False))
    (emulated,) = found["linux.emulated-drivers"]
    assert list(found) == ["linux.emulated-drivers"] and "e1000 (absent)" in emulated["message"]
    # Debian's cloud kernel has no e1000 at all: another kernel, or PARAVIRTUALIZED, not the initramfs.
    assert f"kernel {CLOUD_KERNEL} has no ata_piix, e1000 driver at all" in emulated["fix"]
    assert "import in PARAVIRTUALIZED mode" in emulated["fix"] and "linux-image-amd64" in emulated["fix"]
    assert "initramfs-tools" not in emulated["fix"]
    assert readiness(cloud, "--for", "oci", ready=True)["findings"] == []


def test_a_driver_the_kernel_has_as_a_module_is_put_in_its_initramfs(root_only: Path) -> None:
    found = by_id(readiness(root_only, "--for", "oci", ready=False))
    (virtio,) = found["linux.virtio-drivers"]
    assert "virtio_blk (module-not-in-initramfs)" in virtio["message"]
    assert virtio["fix"].startswith("import in EMULATED mode, or in the guest: ")
    assert "echo virtio_blk >> /etc/initramfs-tools/modules" in virtio["fix"] and "update-initramfs -u" in virtio["fix"]
    gcp = by_id(readiness(root_only, "--for", "gcp", ready=False))["gcp.drivers"][0]
    assert "virtio_scsi (module-not-in-initramfs)" in gcp["message"] and "echo virtio_scsi" in gcp["fix"]


def test_other_clouds_want_their_own_drivers(good: Path, bad: Path) -> None:
    azure = by_id(readiness(good, "--for", "azure", ready=False))
    assert "hv_storvsc" in azure["azure.drivers"][0]["message"]
    aws = by_id(readiness(good, "--for", "aws", ready=False))
    assert "nvme" in aws["aws.drivers"][0]["message"] and "ena" in aws["aws.drivers"][0]["message"]
    gcp = by_id(readiness(bad, "--for", "gcp", ready=False))
    assert "virtio_scsi" in gcp["gcp.drivers"][0]["message"] and "gcp.serial-console" in gcp


def test_the_text_report_shows_the_guest_and_each_finding(bad: Path) -> None:
    done = run_cli("inspect", str(bad), "--for", "oci")
    assert done.returncode == 3, done.stderr
    out = done.stdout
    assert f"kernel {OLD_KERNEL} (default)" in out and "virtio_blk module-not-in-initramfs" not in out
    assert "virtio_net module-not-in-initramfs" in out and "serial console: no console=ttyS0" in out
    assert "fstab line 2: /dev/sdb1 /data: a device name" in out and "MAC address 52:54:00:12:34:56" in out
    assert "cloud-init: not installed" in out
    assert "error: [linux.virtio-drivers]" in out and f"    fix: kernel {OLD_KERNEL} has no virtio_pci" in out
    assert out.rstrip().endswith("NOT ready for oci (PARAVIRTUALIZED, firmware any)")


def test_an_encrypted_partition_is_an_error_and_an_unread_guest_is_not_a_pass(tmp_path: Path) -> None:
    part = tmp_path / "luks.img"
    sh("truncate", "-s", "20M", part)
    key = tmp_path / "key"
    key.write_text("secret")
    sh("cryptsetup", "luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
       "--key-file", key, part)  # fmt: skip
    disk = gpt_disk(tmp_path / "d.raw", [("8309", part)], size_mib=24)
    found = by_id(readiness(disk, "--for", "oci", ready=False))
    assert found["guest.encrypted"][0]["severity"] == "error"
    assert found["guest.not-checked"][0]["severity"] == "warning"


def test_options_of_the_rules_need_for(good: Path) -> None:
    done = run_cli("inspect", str(good), "--launch-mode", "EMULATED")
    assert done.returncode != 0 and "applies only with --for oci" in done.stderr
    done = run_cli("inspect", str(good), "--for", "mars")
    assert done.returncode != 0 and "--for mars" in done.stderr


def verify_json(path: Path) -> tuple[int, dict[str, Any]]:
    done = run_cli("verify", "--json", str(path))
    report: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, report


def test_verify_of_a_bios_only_guest_packed_as_uefi_is_not_ready(good: Path, tmp_path: Path) -> None:
    packed = tmp_path / "uefi.oci"
    # pack itself refuses a firmware the guest cannot boot by, unless told the user knows better.
    args = ["--os", "Ubuntu", "--os-version", "22.04", "--firmware", "UEFI_64"]
    assert "UEFI shell" in run_cli("pack", str(good), str(packed), *args).stderr
    done = run_cli("pack", str(good), str(packed), *args, "--guest-mismatch-ok")
    assert done.returncode == 0, done.stderr
    code, report = verify_json(packed)
    assert code == 3 and report["ready"] is False
    assert report["guest"]["checked"] is True and report["guest"]["firmware"] == ["BIOS"]
    assert [r["id"] for r in report["guest"]["rules"]] == ["guest.firmware"]
    assert any(p["code"] == "guest.firmware" and p["severity"] == "error" for p in report["problems"])
    text = run_cli("verify", str(packed))
    assert "error: guest: firmware UEFI_64 cannot boot this disk" in text.stdout
    assert "NOT ready for import" in text.stdout
    inspected = readiness(packed, "--for", "oci", ready=False)  # the archive's metadata gives mode and firmware
    assert (inspected["launch_mode"], inspected["firmware"]) == ("PARAVIRTUALIZED", "UEFI_64")
    assert [f["id"] for f in inspected["findings"]] == ["guest.firmware"]
    bios = tmp_path / "bios.oci"
    done = run_cli("pack", str(good), str(bios), "--os", "Ubuntu", "--os-version", "22.04", "--firmware", "BIOS")
    assert done.returncode == 0, done.stderr
    code, report = verify_json(bios)
    assert code == 0 and report["ready"] is True and report["guest"]["rules"] == []
    assert "guest: Ubuntu 22.04, boots with BIOS" in run_cli("verify", str(bios)).stdout


def test_verify_of_a_disk_without_a_readable_guest_warns_it_was_not_checked(tmp_path: Path) -> None:
    disk = gpt_disk(tmp_path / "blank.raw", [("8300", 8)], size_mib=16)
    sh("qemu-img", "convert", "-O", "qcow2", disk, tmp_path / "blank.qcow2")
    code, report = verify_json(tmp_path / "blank.qcow2")
    assert code == 0 and report["guest"]["checked"] is False
    (warning,) = [p for p in report["problems"] if p["code"] == "guest.not-checked"]
    assert warning["severity"] == "warning" and "was not checked" in warning["message"]
