"""Which firmware a guest is set up to boot with, from what is on the disk: EFI (an EFI system partition holding
the removable-media loader \\EFI\\BOOT\\BOOTX64.EFI or a vendor's loader under \\EFI\\<vendor>\\), BIOS (loader code
in the MBR, a BIOS boot partition on GPT holding GRUB's core, Windows' bootmgr), or both; and the boot loader."""

from __future__ import annotations

from typing import Any

from imagepack.sources.guest.guestfs import GuestFiles, Kind
from imagepack.sources.guest.storage import BIOS_BOOT_TYPE, Block

# The first byte of the MBR's code when a loader is there: a short or near jump, cli, xor, cld.
_CODE_STARTS = (0xEB, 0xE9, 0xFA, 0x31, 0x33, 0xFC)
_MBR_LOADERS = ((b"GRUB", "GRUB 2"), (b"Invalid partition table", "Windows"), (b"SYSLINUX", "SYSLINUX"),
                (b"Missing operating system", "Windows"), (b"LILO", "LILO"))  # fmt: skip
_EFI_LOADERS = (
    ("systemd/systemd-bootx64.efi", "systemd-boot"),
    ("Microsoft/Boot/bootmgfw.efi", "Windows Boot Manager"),
)


def mbr_loader(head: bytes) -> str | None:
    """What the MBR's boot code is, when it looks like a loader: its name, 'unknown loader', or None."""
    if len(head) < 512 or head[510:512] != b"\x55\xaa" or not any(head[:0x1B8]) or head[0] not in _CODE_STARTS:
        return None
    code = head[:0x1B8]
    return next((name for mark, name in _MBR_LOADERS if mark in code), "unknown loader")


def efi_loaders(esp: GuestFiles) -> list[str]:
    """The loaders an ESP holds, as paths on it, the removable-media one first."""
    found = []
    if esp.kind("/EFI/BOOT/BOOTX64.EFI") is Kind.FILE:
        found.append("/EFI/BOOT/BOOTX64.EFI")
    for vendor in esp.list("/EFI") or []:
        if vendor.upper() == "BOOT":
            continue
        # A vendor's loader sits in its folder, Windows Boot Manager one deeper (\EFI\Microsoft\Boot\bootmgfw.efi).
        for folder in (f"/EFI/{vendor}", f"/EFI/{vendor}/Boot"):
            for name in esp.list(folder) or []:
                if name.lower().endswith("x64.efi") or name.lower() in ("bootmgfw.efi", "bootmgr.efi"):
                    found.append(f"{folder}/{name}")
    return found[:32]


def _loader_of(paths: list[str]) -> str | None:
    lowered = [p.lower() for p in paths]
    for suffix, name in _EFI_LOADERS:
        if any(p.endswith(suffix.lower()) for p in lowered):
            return name
    if any("grub" in p or "shim" in p for p in lowered):
        return "GRUB 2"
    return None


def boot_setup(
    head: bytes,
    table: str,
    blocks: list[Block],
    esps: dict[str, GuestFiles],
    guest: GuestFiles | None,
    windows: bool,
) -> dict[str, Any]:
    """The boot part of the report. `table` is the partition table's kind ('none': the first sector is a file
    system's own boot sector, which no BIOS is pointed at), `esps` the readable EFI system partitions by block
    name, `guest` the assembled Linux tree (or the Windows volume), `windows` whether the guest is Windows."""
    loaders = {name: efi_loaders(files) for name, files in esps.items()}
    efi_paths = [path for paths in loaders.values() for path in paths]
    mbr = mbr_loader(head) if table != "none" else None
    bios_boot = [b for b in blocks if b.facts.get("type") == BIOS_BOOT_TYPE]
    bios_boot_used = any(any(b.reader.read(b.offset, 512)) for b in bios_boot)
    bootmgr = windows and guest is not None and guest.kind("/bootmgr") is Kind.FILE
    firmware = []
    if efi_paths:
        firmware.append("UEFI_64")
    if mbr is not None:  # a BIOS boot partition or bootmgr boots nothing without the MBR's code to load them
        firmware.append("BIOS")
    loader = _loader_of(efi_paths)
    if loader is None and mbr == "GRUB 2":
        loader = "GRUB 2"
    if loader is None and (bootmgr or mbr == "Windows") and windows:
        loader = "Windows Boot Manager"
    grub_cfg = ("/boot/grub/grub.cfg", "/boot/grub2/grub.cfg")
    if guest is not None and loader is None and not windows and any(guest.kind(p) is Kind.FILE for p in grub_cfg):
        loader = "GRUB 2"
    return {
        "firmware": firmware,
        "esp_loaders": loaders,
        "mbr_boot_code": mbr,
        "bios_boot_partition": bool(bios_boot),
        "bios_boot_partition_used": bios_boot_used,
        "windows_bootmgr": bootmgr,
        "loader": loader,
    }
