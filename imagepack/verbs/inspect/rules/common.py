"""Rules for every guest: it could be read at all, the firmware can boot it, nothing is encrypted, and (for OCI)
its OS is on OCI's list."""

from __future__ import annotations

from typing import Any

from imagepack.core.problems import Remedy
from imagepack.oci.metadata import oslist
from imagepack.verbs.inspect.rules.finding import ERROR, NOTE, WARNING, Finding

# Programs the user runs in the guest, as their command lines.
CRYPTSETUP_DECRYPT = ("cryptsetup", "reencrypt", "--decrypt")

FIRMWARE_NEEDS = {
    "UEFI_64": "an EFI system partition holding a loader (\\EFI\\BOOT\\BOOTX64.EFI or a vendor's)",
    "BIOS": "boot code in the MBR (and on GPT a BIOS boot partition for GRUB's core)",
}
FIRMWARE_FAILS = {"UEFI_64": "the instance stops in a UEFI shell", "BIOS": "the instance boots nothing"}
NO_LOADER = "no boot loader was found on the disk (no EFI loader, no MBR boot code)"
NOT_BOOTED = "an instance made from it boots nothing"
# What an encrypted volume means elsewhere than OCI (which refuses it): nobody types its passphrase at boot.
ENCRYPTED_ELSEWHERE = "no one types their passphrase at an instance's boot: a root or /boot on them does not mount"


def guest_checked(report: dict[str, Any]) -> Finding | None:
    """A warning when no OS was found to check: the rules then say nothing about the guest, which is not a pass."""
    if report["os"].get("family") is not None:
        return None
    unread = report.get("unreadable") or []
    why = "no Linux root file system and no Windows system volume were found"
    if unread:
        why += f"; imagepack reads no file system on {', '.join(unread)}"
    if report.get("encrypted"):
        why = f"encrypted: {', '.join(report['encrypted'])}"
    return Finding("guest.not-checked", WARNING, f"the guest was not checked: {why}")


def firmware_rule(report: dict[str, Any], firmware: str | None) -> list[Finding]:
    boots = report["boot"]["firmware"]
    if firmware is None:
        if boots:
            return []
        return [
            Finding(
                "guest.firmware",
                ERROR,
                f"{NO_LOADER}: {NOT_BOOTED}",
                "install a boot loader in the guest (GRUB: grub-install), or use the disk as a data disk only",
            )
        ]
    if firmware in boots:
        return []
    other = [f for f in boots if f != firmware]
    fix = (
        f"set the firmware to {other[0]} ('imagepack meta set IMAGE.oci firmware={other[0]}')"
        if other
        else "install a boot loader for it in the guest"
    )
    found = f"the disk has a loader for {' and '.join(boots)} only" if boots else NO_LOADER
    message = (
        f"firmware {firmware} cannot boot this disk: it needs {FIRMWARE_NEEDS.get(firmware, 'a loader for it')}, "
        f"and {FIRMWARE_FAILS.get(firmware, 'the instance does not boot')}; {found}"
    )
    loaders = [f"{name}: {', '.join(paths) or 'no loader'}" for name, paths in report["boot"]["esp_loaders"].items()]
    mbr = report["boot"].get("mbr_boot_code")
    told = [*loaders, f"MBR boot code: {mbr or 'none'}"]
    if other:
        return [Finding("guest.firmware", ERROR, message, fix, told, Remedy.FIRMWARE_AS, other[0])]
    return [Finding("guest.firmware", ERROR, message, fix, told)]


def encryption_rule(report: dict[str, Any], target: str) -> list[Finding]:
    encrypted = report.get("encrypted") or []
    if not encrypted:
        return []
    kinds = {b["name"]: b["filesystem"] for b in report["storage"]["blocks"]}
    fails = "OCI imports no encrypted disk" if target == "oci" else ENCRYPTED_ELSEWHERE
    names = ", ".join(f"{name} ({kinds.get(name, 'encrypted')})" for name in encrypted)
    return [
        Finding(
            "guest.encrypted",
            ERROR if target == "oci" else WARNING,
            f"encrypted volumes: {names}; {fails}",
            f"decrypt them in the guest ({' '.join(CRYPTSETUP_DECRYPT)}, or turn BitLocker off) first",
        )
    ]


def guest_os(report: dict[str, Any]) -> tuple[str, str] | None:
    """The OS as OCI's list names it (operatingSystem, operatingSystemVersion), from what the guest states."""
    system, config = report["os"], report.get("config") or {}
    if system.get("family") == "windows":
        version = config.get("version") or {}
        name, release = version.get("operatingSystem"), version.get("operatingSystemVersion")
        return (name, release) if name and release else None
    name, number = system.get("name"), system.get("version")
    return (name, number) if name and number else None


def os_rule(report: dict[str, Any]) -> list[Finding]:
    stated = guest_os(report)
    system = report["os"]
    if stated is None:
        what = system.get("pretty_name") or system.get("family")
        return [
            Finding(
                "guest.os-unlisted",
                NOTE,
                f"the guest ({what}) states no name and version to check against OCI's list of imported systems",
            )
        ]
    if oslist.is_supported(*stated):
        return []
    source = [system["source"]] if system.get("source") else []
    return [
        Finding(
            "guest.os-unlisted",
            WARNING,
            f"{stated[0]} {stated[1]} is not on OCI's list of imported "
            f"systems ({oslist.family_names()}): the import may work but is not supported",
            None,
            source,
        )
    ]


def common_rules(report: dict[str, Any], target: str, firmware: str | None) -> list[Finding]:
    found = firmware_rule(report, firmware) + encryption_rule(report, target)
    return found + (os_rule(report) if target == "oci" else [])
