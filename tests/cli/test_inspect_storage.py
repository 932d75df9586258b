"""`imagepack inspect` on synthetic guests made with the real tools: the partition table, each file system by its
superblock, the guest assembled from its fstab, its OS and its boot set-up; each disk read as raw and as qcow2
(through qemu-nbd, as any format is)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.guestdisks import ext4, fat, gpt_disk, mbr_disk, qcow2_of, sh, tree, xfs

ROOT_UUID = "6f1b2a3c-1111-4222-8333-944455556666"
BOOT_UUID = "0d2c3b4a-aaaa-4bbb-8ccc-dddd00001111"
OS_RELEASE = 'NAME="Debian GNU/Linux"\nID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n'
GRUB_BOOT_IMG = Path("/usr/lib/grub/i386-pc/boot.img")


def inspect_json(image: Path) -> dict[str, Any]:
    done = run_cli("inspect", "--json", str(image))
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def both(raw: Path) -> list[dict[str, Any]]:
    """The report on `raw` and on the same disk as qcow2, which must agree but for the format."""
    reports = [inspect_json(raw), inspect_json(qcow2_of(raw))]
    assert reports[1]["format"] == "qcow2"
    assert reports[0]["storage"] == reports[1]["storage"]
    assert reports[0]["os"] == reports[1]["os"]
    assert reports[0]["boot"] == reports[1]["boot"]
    return reports


def block(report: dict[str, Any], name: str) -> dict[str, Any]:
    found = [b for b in report["storage"]["blocks"] if b["name"] == name]
    assert found, report["storage"]
    result: dict[str, Any] = found[0]
    return result


@pytest.fixture(scope="module")
def uefi_guest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GPT: ESP (FAT, mtools), /boot (ext4, mounted by LABEL=), / (ext4, by UUID=) whose /etc/os-release links
    to ../usr/lib/os-release."""
    tmp = tmp_path_factory.mktemp("uefi")
    esp = fat(tmp / "esp.img", {"EFI/BOOT/BOOTX64.EFI": b"MZ", "EFI/debian/grubx64.efi": b"MZ"}, 8, label="ESP")
    esp_uuid = sh("blkid", "-o", "value", "-s", "UUID", esp).strip()
    boot_dir = tree(tmp / "boot", {"grub/grub.cfg": "linux /vmlinuz root=UUID=x console=ttyS0\n"})
    boot = ext4(tmp / "boot.img", boot_dir, 16, uuid=BOOT_UUID, label="guestboot")
    fstab = f"UUID={ROOT_UUID} / ext4 defaults 0 1\nLABEL=guestboot /boot ext4 defaults 0 2\n"
    fstab += f"UUID={esp_uuid} /boot/efi vfat umask=0077 0 1\n/dev/sdb1 /data ext4 defaults 0 2\n"
    root_dir = tree(
        tmp / "root",
        {"etc/fstab": fstab, "usr/lib/os-release": OS_RELEASE, "boot/.keep": ""},
        {"etc/os-release": "../usr/lib/os-release"},
    )
    root = ext4(tmp / "root.img", root_dir, 24, uuid=ROOT_UUID, label="guestroot")
    return gpt_disk(tmp / "uefi.raw", [("ef00", esp), ("8300", boot), ("8300", root)], size_mib=64)


def test_a_gpt_esp_ext4_guest_is_read_whole(uefi_guest: Path) -> None:
    for report in both(uefi_guest):
        assert report["storage"]["partition_table"] == "gpt"
        esp, boot, root = (block(report, f"partition {n}") for n in (1, 2, 3))
        assert (esp["filesystem"], esp["label"], esp["esp"]) == ("vfat", "ESP", True)
        assert (boot["filesystem"], boot["uuid"], boot["label"]) == ("ext4", BOOT_UUID, "guestboot")
        assert (root["filesystem"], root["uuid"]) == ("ext4", ROOT_UUID)
        system = report["os"]
        assert (system["id"], system["version"], system["pretty_name"]) == (
            "debian",
            "12",
            "Debian GNU/Linux 12 (bookworm)",
        )
        assert system["source"] == "/etc/os-release"  # through its symlink, resolved inside the guest
        assert system["root"] == "partition 3"
        mounts = {m["path"]: m["block"] for m in system["mounts"]}
        assert mounts == {"/": "partition 3", "/boot": "partition 2", "/boot/efi": "partition 1"}
        assert system["unmounted"] == [
            {"path": "/data", "device": "/dev/sdb1", "why": "a device name, which only the running guest resolves"}
        ]
        assert report["boot"]["firmware"] == ["UEFI_64"]
        assert report["boot"]["loader"] == "GRUB 2"
        assert report["boot"]["esp_loaders"]["partition 1"] == ["/EFI/BOOT/BOOTX64.EFI", "/EFI/debian/grubx64.efi"]


def test_the_text_report_names_os_firmware_and_file_systems(uefi_guest: Path) -> None:
    done = run_cli("inspect", str(uefi_guest))
    assert done.returncode == 0, done.stderr
    assert "os: Debian GNU/Linux 12 (bookworm)" in done.stdout
    assert "boot: UEFI_64; loader GRUB 2" in done.stdout
    assert f"ext4, UUID {ROOT_UUID}" in done.stdout
    assert "not mounted: /data (/dev/sdb1: a device name, which only the running guest resolves)" in done.stdout


def test_an_mbr_ext4_guest_with_grub_boot_code_boots_by_bios(tmp_path: Path) -> None:
    root_dir = tree(
        tmp_path / "root",
        {"etc/fstab": f"UUID={ROOT_UUID} / ext4 defaults 0 1\n", "etc/os-release": "ID=ubuntu\nVERSION_ID=22.04\n"},
    )
    root = ext4(tmp_path / "root.img", root_dir, 16, uuid=ROOT_UUID, label="r")
    disk = mbr_disk(tmp_path / "bios.raw", [("83", root)], size_mib=24, boot_code=GRUB_BOOT_IMG.read_bytes())
    for report in both(disk):
        assert report["storage"]["partition_table"] == "mbr"
        assert block(report, "partition 1")["type"] == "83"
        assert (report["os"]["id"], report["os"]["version"]) == ("ubuntu", "22.04")
        assert report["boot"]["firmware"] == ["BIOS"]
        assert report["boot"]["mbr_boot_code"] == "GRUB 2"


def test_an_mbr_disk_without_boot_code_boots_by_nothing(tmp_path: Path) -> None:
    root_dir = tree(tmp_path / "root", {"etc/fstab": "", "usr/lib/os-release": "ID=ol\nVERSION_ID=9.3\n"})
    root = ext4(tmp_path / "root.img", root_dir, 16, uuid=ROOT_UUID, label="r")
    disk = mbr_disk(tmp_path / "plain.raw", [("83", root)], size_mib=24)
    report = inspect_json(disk)
    assert (report["os"]["id"], report["os"]["source"]) == ("ol", "/usr/lib/os-release")
    assert report["boot"]["firmware"] == []


def test_an_xfs_root_is_read(tmp_path: Path) -> None:
    root_dir = tree(
        tmp_path / "root",
        {
            "etc/fstab": f"UUID={ROOT_UUID} / xfs defaults 0 0\n",
            "etc/redhat-release": "Red Hat Enterprise Linux release 8.9 (Ootpa)\n",
        },
    )
    root = xfs(tmp_path / "root.img", root_dir, 300, uuid=ROOT_UUID, label="xroot")
    disk = gpt_disk(tmp_path / "xfs.raw", [("8300", root)], size_mib=304)
    for report in both(disk):
        part = block(report, "partition 1")
        assert (part["filesystem"], part["uuid"], part["label"]) == ("xfs", ROOT_UUID, "xroot")
        assert (report["os"]["id"], report["os"]["version"]) == ("rhel", "8.9")
        assert report["os"]["source"] == "/etc/redhat-release"


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: sh("mkswap", "-L", "swp", "-U", ROOT_UUID, p), ("swap", ROOT_UUID, "swp")),
        (lambda p: sh("mkfs.btrfs", "-q", "-L", "bt", "-U", ROOT_UUID, p), ("btrfs", ROOT_UUID, "bt")),
    ],
    ids=["swap", "btrfs"],
)
def test_swap_and_btrfs_are_named_and_btrfs_is_not_read(tmp_path: Path, make: Any, expected: tuple[str, ...]) -> None:
    part = tmp_path / "part.img"
    sh("truncate", "-s", "120M", part)
    make(part)
    disk = gpt_disk(tmp_path / "d.raw", [("8300", part)], size_mib=124)
    report = inspect_json(disk)
    found = block(report, "partition 1")
    assert (found["filesystem"], found["uuid"], found["label"]) == expected
    assert found["readable"] is False
    assert report["os"]["family"] is None
    assert ("partition 1" in report["unreadable"]) == (expected[0] == "btrfs")


def test_a_partition_never_formatted_is_empty_not_an_unreadable_file_system(tmp_path: Path) -> None:
    part = tmp_path / "part.img"
    sh("truncate", "-s", "8M", part)
    junk = tmp_path / "junk.img"
    junk.write_bytes(bytes(4096) + b"\x5a" * 4096)  # no signature, but not zeroes: what it is is not known
    disk = gpt_disk(tmp_path / "d.raw", [("8300", part), ("8300", junk)], size_mib=16)
    report = inspect_json(disk)
    assert block(report, "partition 1")["filesystem"] == "empty"
    assert block(report, "partition 2")["filesystem"] == "unknown"
    assert report["unreadable"] == ["partition 2"]


def test_a_luks_partition_is_reported_encrypted_never_read(tmp_path: Path) -> None:
    part = tmp_path / "luks.img"
    sh("truncate", "-s", "20M", part)
    key = tmp_path / "key"
    key.write_text("secret")
    sh("cryptsetup", "luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
       "--label", "vault", "--key-file", key, part)  # fmt: skip
    disk = gpt_disk(tmp_path / "d.raw", [("8309", part)], size_mib=24)
    report = inspect_json(disk)
    found = block(report, "partition 1")
    assert (found["filesystem"], found["label"], found["readable"]) == ("crypto_LUKS", "vault", False)
    assert report["encrypted"] == ["partition 1"]
    assert report["unreadable"] == ["partition 1"]


def test_a_gpt_disk_set_up_for_both_firmwares_says_both(tmp_path: Path) -> None:
    esp = fat(tmp_path / "esp.img", {"EFI/ubuntu/shimx64.efi": b"MZ"}, 8, label="ESP")
    disk = gpt_disk(tmp_path / "both.raw", [("ef02", 1), ("ef00", esp)], size_mib=16)
    with open(disk, "r+b") as f:
        f.write(GRUB_BOOT_IMG.read_bytes()[:440])
        f.seek(1024**2)
        f.write(b"GRUB core.img stand-in")
    report = inspect_json(disk)
    assert report["boot"]["firmware"] == ["UEFI_64", "BIOS"]
    assert report["boot"]["bios_boot_partition_used"] is True
    assert report["boot"]["esp_loaders"] == {"partition 2": ["/EFI/ubuntu/shimx64.efi"]}
    assert report["boot"]["loader"] == "GRUB 2"


def test_bitlocker_is_encrypted_and_logical_mbr_partitions_are_found(tmp_path: Path) -> None:
    locked = tmp_path / "locked.img"
    locked.write_bytes(b"\xeb\x58\x90-FVE-FS-" + bytes(2 * 1024**2 - 11))
    root = ext4(tmp_path / "root.img", tree(tmp_path / "r", {"hello": "x"}), 8, uuid=ROOT_UUID, label="logical")
    disk = tmp_path / "mbr.raw"
    sh("truncate", "-s", "16M", disk)
    script = (
        "label: dos\nstart=2048, size=4096, type=7\nstart=8192, size=20480, type=5\nstart=10240, size=16384, type=83\n"
    )
    sh("sfdisk", "-q", disk, input=script)
    sh("dd", f"if={locked}", f"of={disk}", "bs=1M", "seek=1", "conv=notrunc", "status=none")
    sh("dd", f"if={root}", f"of={disk}", "bs=1M", "seek=5", "conv=notrunc", "status=none")
    report = inspect_json(disk)
    assert block(report, "partition 1")["filesystem"] == "BitLocker"
    assert report["encrypted"] == ["partition 1"]
    logical = block(report, "partition 5")
    assert (logical["filesystem"], logical["label"], logical["offset"]) == ("ext4", "logical", 5 * 1024**2)


def test_a_guest_is_inspected_inside_a_oci_archive_and_a_compressed_file(uefi_guest: Path, tmp_path: Path) -> None:
    archive = tmp_path / "guest.oci"
    done = run_cli("pack", str(uefi_guest), str(archive), "--os", "Debian", "--os-version", "12")
    assert done.returncode == 0, done.stderr
    compressed = tmp_path / "guest.raw.zst"
    sh("zstd", "-q", "-o", compressed, uefi_guest)
    for wrapped, kind in ((archive, "oci"), (compressed, "raw")):
        report = inspect_json(wrapped)
        assert report["input"] == kind
        assert (report["os"]["id"], report["boot"]["firmware"]) == ("debian", ["UEFI_64"])


def test_a_partition_past_the_first_64_kib_of_gpt_entries_is_found(tmp_path: Path) -> None:
    root = ext4(tmp_path / "root.img", tree(tmp_path / "r", {"x": "y"}), 8, uuid=ROOT_UUID, label="far")
    disk = tmp_path / "wide.raw"
    sh("truncate", "-s", "16M", disk)
    sh("sgdisk", "--resize-table=1024", "-n600:2M:+8M", "-t600:8300", disk)
    sh("dd", f"if={root}", f"of={disk}", "bs=1M", "seek=2", "conv=notrunc", "status=none")
    found = block(inspect_json(disk), "partition 600")
    assert (found["filesystem"], found["label"]) == ("ext4", "far")
