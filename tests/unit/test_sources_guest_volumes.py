"""`imagepack inspect` through LVM (logical volumes read through libvslvm, mounted by /dev/mapper and /dev/VG/LV
names) and on NTFS (a Windows system volume found by its SYSTEM hive)."""

from __future__ import annotations

from pathlib import Path

from tests.cli.test_inspect_storage import block, both, inspect_json
from tests.guestdisks import ext4, gpt_disk, lvm_pv, ntfs, tree, xfs

ROOT_UUID = "77777777-1111-4222-8333-944455556666"
BOOT_UUID = "88888888-1111-4222-8333-944455556666"


def test_a_gpt_lvm_xfs_guest_is_assembled_from_its_fstab(tmp_path: Path) -> None:
    fstab = "/dev/mapper/vg--guest-root / xfs defaults 0 0\n/dev/vg-guest/var /var ext4 defaults 0 0\n"
    fstab += f"UUID={BOOT_UUID} /boot ext4 defaults 0 0\n/dev/mapper/vg--guest-swap none swap defaults 0 0\n"
    root_dir = tree(tmp_path / "root", {"etc/fstab": fstab, "etc/os-release": "ID=ol\nVERSION_ID=8.9\n", "var/.k": ""})
    root = xfs(tmp_path / "root.img", root_dir, 300, uuid=ROOT_UUID, label="lvroot")
    var = ext4(tmp_path / "var.img", tree(tmp_path / "var", {"lib/marker": "var on its own LV\n"}), 16,
               uuid="99999999-1111-4222-8333-944455556666", label="var")  # fmt: skip
    boot = ext4(tmp_path / "boot.img", tree(tmp_path / "boot", {"grub2/grub.cfg": "menuentry\n"}), 16,
                uuid=BOOT_UUID, label="boot")  # fmt: skip
    volumes = {"root": (300, root), "var": (16, var), "swap": (8, None)}
    pv = lvm_pv(tmp_path / "pv.img", "vg-guest", volumes, size_mib=340)
    disk = gpt_disk(tmp_path / "lvm.raw", [("8300", boot), ("8e00", pv)], size_mib=360)
    for report in both(disk):
        assert block(report, "partition 2")["filesystem"] == "LVM2_member"
        (group,) = report["storage"]["volume_groups"]
        assert (group["name"], group["logical_volumes"]) == ("vg-guest", ["root", "var", "swap"])
        lv = block(report, "lv vg-guest/root")
        assert (lv["filesystem"], lv["uuid"], lv["label"]) == ("xfs", ROOT_UUID, "lvroot")
        assert block(report, "lv vg-guest/var")["filesystem"] == "ext4"
        system = report["os"]
        assert (system["id"], system["version"], system["root"]) == ("ol", "8.9", "lv vg-guest/root")
        mounts = {m["path"]: m["block"] for m in system["mounts"]}
        assert mounts == {"/": "lv vg-guest/root", "/var": "lv vg-guest/var", "/boot": "partition 1"}
        assert report["boot"]["loader"] == "GRUB 2"  # /boot/grub2/grub.cfg, on the /boot file system


def test_an_ntfs_windows_volume_is_found_by_its_system_hive(tmp_path: Path) -> None:
    files = {"Windows/System32/config/SYSTEM": b"regf", "bootmgr": b"BOOTMGR"}
    volume = ntfs(tmp_path / "win.img", files, 32, label="Windows")
    disk = gpt_disk(tmp_path / "win.raw", [("0700", volume)], size_mib=40)
    for report in both(disk):
        part = block(report, "partition 1")
        assert (part["filesystem"], part["label"], part["readable"]) == ("ntfs", "Windows", True)
        assert len(part["uuid"]) == 16
        assert report["os"] == {"family": "windows", "root": "partition 1"}


def test_an_ntfs_volume_without_windows_is_no_os(tmp_path: Path) -> None:
    volume = ntfs(tmp_path / "data.img", {"readme.txt": b"data"}, 32, label="Data")
    report = inspect_json(gpt_disk(tmp_path / "data.raw", [("0700", volume)], size_mib=40))
    assert block(report, "partition 1")["label"] == "Data"
    assert report["os"] == {"family": None}
