"""What a guest says about itself, as a .oci's metadata would say it: the operating system and its version (a
Linux guest's os-release mapped to OCI's names, a Windows guest's release and edition from its registry) and the
firmwares its boot set-up serves (an EFI loader on an ESP, boot code in the MBR), each with where it was read.
`pack` takes these where nothing was given, and refuses a given value the guest contradicts (guestcheck.py)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from imagepack.core.errors import ImagepackError
from imagepack.formats.partitions import Firmware
from imagepack.oci.metadata import oslist
from imagepack.sources.disk import SourceImage
from imagepack.sources.guest.reader import inspect_image

log = logging.getLogger(__name__)

MAX_VALUE = 128  # characters of a name or version taken from a guest; a longer one is not a name (never used)
# The bytes image_metadata.json may grow by when the system and its version come from the guest: both at their
# longest, each character written as a JSON escape (\uXXXX), and their quotes.
DERIVED_ROOM = 2 * (6 * MAX_VALUE + 2)

# os-release IDs (and the old release files' stand-ins) whose system OCI lists, by the name OCI's list gives it.
_LISTED_IDS = {"ol": "Oracle Linux", "ubuntu": "Ubuntu"}


@dataclass(frozen=True)
class Stated:
    """One value the guest states, and where (for a person: "the guest's /etc/os-release")."""

    value: str
    where: str


@dataclass(frozen=True)
class GuestSays:
    """The parts of an inspection report a .oci's metadata is made of. `failed` says why the guest could not be
    read (nothing is taken from it then, and nothing given is checked against it)."""

    family: str | None = None  # "linux", "windows", or None: no system found
    os_name: Stated | None = None
    os_version: Stated | None = None
    linux_names: tuple[str, ...] = ()  # what the guest calls itself (ID, NAME): a given name matching one agrees
    windows_product: str | None = None  # "Windows Server 2019 Standard", "Windows 10 Pro"
    windows_release: str | None = None  # "2019"; None on a client or an unknown build
    windows_edition: str | None = None  # "Standard", "Datacenter"
    windows_server: bool = False
    firmware: tuple[Firmware, ...] = ()  # the firmwares the guest's boot set-up serves; () when none was found
    firmware_where: str = ""
    failed: str | None = None


def read_guest(image: SourceImage) -> GuestSays:
    """What the guest on `image` (opened already: it is read through that same open file) says; a guest that
    cannot be read says nothing, and why."""
    try:
        report = inspect_image(image, image.label)
    except ImagepackError as e:
        if e.code == "input.changed":
            raise  # the input itself is in question, not the guest's readability
        log.debug("inspecting %s: %s", image.label, e.message)
        return GuestSays(failed=e.message)
    return guest_says(report)


def _text(value: Any) -> str | None:
    """A string of the report usable as a metadata value: a non-empty one of a name's length."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_VALUE:
        return None
    return value.strip()


def _table(report: dict[str, Any], key: str) -> dict[str, Any]:
    found = report.get(key)
    return found if isinstance(found, dict) else {}


def guest_says(report: dict[str, Any]) -> GuestSays:
    """The metadata's part of an inspection report (run.inspect_image's)."""
    system, boot = _table(report, "os"), _table(report, "boot")
    firmware, where = _firmware(boot)
    family = system.get("family")
    if family == "linux":
        return _linux(system, firmware, where)
    if family == "windows":
        return _windows(_table(_table(report, "config"), "version"), firmware, where)
    return GuestSays(firmware=firmware, firmware_where=where)


def linux_name(distro: str | None, name: str | None, version: str | None) -> str | None:
    """OCI's name for the system an os-release states: a listed one by its ID (CentOS and CentOS Stream told apart
    by the NAME), any other by its NAME as written; None when the guest states neither."""
    if distro is not None and distro.casefold() in _LISTED_IDS:
        return _LISTED_IDS[distro.casefold()]
    if distro is not None and distro.casefold() == "centos":
        return "CentOS Stream" if name is not None and "stream" in name.casefold() else "CentOS"
    return name


def _linux(system: dict[str, Any], firmware: tuple[Firmware, ...], where: str) -> GuestSays:
    distro, name, version = _text(system.get("id")), _text(system.get("name")), _text(system.get("version"))
    source = _text(system.get("source"))
    shown = f"read from the guest's {source}" if source else "read from the guest"
    oci_name = linux_name(distro, name, version)
    return GuestSays(
        family="linux",
        os_name=Stated(oci_name, shown) if oci_name else None,
        os_version=Stated(version, shown) if version else None,
        linux_names=tuple(n for n in (distro, name, oci_name) if n),
        firmware=firmware,
        firmware_where=where,
    )


def _windows(version: dict[str, Any], firmware: tuple[Firmware, ...], where: str) -> GuestSays:
    shown = "read from the guest's registry (SOFTWARE hive, Windows NT\\CurrentVersion)"
    name, release = _text(version.get("operatingSystem")), _text(version.get("operatingSystemVersion"))
    return GuestSays(
        family="windows",
        os_name=Stated(name, shown) if name and release else None,
        os_version=Stated(release, shown) if name and release else None,
        windows_product=_text(version.get("product")) or _text(version.get("productName")),
        windows_release=_text(version.get("release")),
        windows_edition=_text(version.get("edition")),
        windows_server=version.get("server") is True,
        firmware=firmware,
        firmware_where=where,
    )


def _firmware(boot: dict[str, Any]) -> tuple[tuple[Firmware, ...], str]:
    """The firmwares the boot set-up serves, and what on the disk says so."""
    said = boot.get("firmware")
    said = said if isinstance(said, list) else []
    firmware = tuple(f for f in Firmware if f.value in said)
    found = []
    loaders = _table(boot, "esp_loaders")
    paths = [p for found_paths in loaders.values() if isinstance(found_paths, list) for p in found_paths]
    if Firmware.UEFI_64 in firmware and paths and isinstance(paths[0], str):
        found.append(f"an EFI loader on its ESP, {paths[0][:MAX_VALUE]}")
    code = boot.get("mbr_boot_code")
    if Firmware.BIOS in firmware and isinstance(code, str):
        found.append(f"{code[:MAX_VALUE]} boot code in its MBR")
    return firmware, " and ".join(found)


def listed_line(name: str) -> str | None:
    """The line of OCI's list whose system `name` names ('Oracle Linux Server' and 'OL' are Oracle Linux; the
    Cloud Developer edition counts as Oracle Linux, which a guest cannot tell apart), or None."""
    squashed = "".join(c for c in name.casefold() if c.isalnum())
    for system in oslist.SUPPORTED_SYSTEMS:
        if re.fullmatch(system.family, squashed):
            return system.name.removesuffix(" Cloud Developer")
    return None
