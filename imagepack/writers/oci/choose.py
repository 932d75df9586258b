"""Which operating system, version and firmware a .oci's metadata says, and where each came from: what was given
(the options, a manifest's `oci` table), a metadata file or the archive repacked, the guest itself (guest.py), an
OVF descriptor, the disk's partition table. A value given that the guest contradicts is refused: a Windows release
or edition always (OCI licenses Windows by them), anything else unless the user says the value is right."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from imagepack.core.errors import MetadataError
from imagepack.core.problems import Problem, Remedy, Severity
from imagepack.formats.partitions import Firmware
from imagepack.oci.metadata import ImageMetadata, oslist
from imagepack.sources.disk import SourceImage, partition_layout
from imagepack.writers.oci.guest import GuestSays, Stated, listed_line

GIVEN = "given"
GUEST = "guest"

# What a UEFI_64 or BIOS launch of a disk set up only for the other firmware shows (SPEC §8).
_FAILS = {Firmware.UEFI_64: "OCI would start it in a UEFI shell", Firmware.BIOS: "OCI would boot nothing"}


@dataclass(frozen=True)
class Origin:
    """Where one metadata value came from: `kind` for programs, `text` for a person."""

    kind: str  # given | metadata-file | archive | guest | ovf | partition-table
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"from": self.kind, "text": self.text}


@dataclass
class Chosen:
    operating_system: str | None = None
    operating_system_version: str | None = None
    firmware: Firmware | None = None
    sources: dict[str, Origin] = field(default_factory=dict)  # by the metadata's key
    problems: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class Asked:
    """The values a request gives (None: not given), and what else there is to fall back on."""

    operating_system: str | None
    operating_system_version: str | None
    firmware: Firmware | None
    base: ImageMetadata | None
    base_origin: Origin | None
    stated_os: str | None = None  # an OVF descriptor's
    stated_os_version: str | None = None
    stated_firmware: Firmware | None = None
    mismatch_ok: bool = False


def choose(asked: Asked, image: SourceImage | None, guest: GuestSays) -> Chosen:
    """The values, each from the first of: given, the base metadata, the guest, the OVF descriptor (then, for the
    firmware, the partition table); a given value the guest contradicts refused (or, with `mismatch_ok`, a
    warning where no licence is at stake). Raises MetadataError."""
    chosen = Chosen()
    _choose_firmware(asked, image, guest, chosen)
    _choose_os(asked, guest, chosen)
    if guest.failed is not None:
        chosen.problems.append(
            Problem(
                "guest.unread",
                f"the guest could not be read ({guest.failed}): its system and firmware were not checked",
                severity=Severity.NOTE,
            )
        )
    return chosen


def _choose_firmware(asked: Asked, image: SourceImage | None, guest: GuestSays, chosen: Chosen) -> None:
    firmware: Firmware | None = None
    origin: Origin | None = None
    if asked.firmware is not None:
        firmware, origin = asked.firmware, Origin(GIVEN, "given")
    elif asked.base is not None and asked.base_origin is not None:
        firmware, origin = asked.base.launch.firmware, asked.base_origin
    elif len(guest.firmware) == 1:
        firmware = guest.firmware[0]
        origin = Origin(GUEST, f"read from the guest's boot set-up: {guest.firmware_where or 'its loader'}")
    if firmware is None and asked.stated_firmware is not None:
        firmware, origin = asked.stated_firmware, Origin("ovf", "stated by the OVF descriptor")
        guess = partition_layout(image).firmware_guess if image is not None else None
        if guess is not None and guess is not firmware:
            chosen.problems.append(
                Problem(
                    "metadata.firmware-disagrees",
                    f"the OVF descriptor says {firmware.value} but the disk's partition table suggests "
                    f"{guess.value}; using {firmware.value}",
                    Remedy.STATE_FIRMWARE,
                    Severity.WARNING,
                    value=guess.value,
                )
            )
    if firmware is None:
        firmware = partition_layout(image).firmware_guess if image is not None else None
        if firmware is None:
            raise MetadataError(
                f"{image.label if image else 'the disk'}: no partition table at the start of the disk, "
                "so its firmware is unknown",
                code="metadata.firmware-unknown",
                remedy=Remedy.STATE_FIRMWARE,
            )
        origin = Origin("partition-table", "suggested by the disk's partition table")
        if len(guest.firmware) > 1:
            origin = Origin(
                GUEST,
                f"the guest boots by either ({guest.firmware_where}); kept the partition table's choice",
            )
    chosen.firmware = firmware
    chosen.sources["firmware"] = origin or Origin(GIVEN, "given")
    if origin is not None and origin.kind != GUEST and guest.firmware and firmware not in guest.firmware:
        other = guest.firmware[0].value
        _contradicted(
            chosen,
            asked,
            "metadata.guest-firmware",
            f"firmware {firmware.value} ({origin.text}): the guest boots only by {other} "
            f"({guest.firmware_where or 'its boot set-up'}), so {_FAILS[firmware]}",
            value=other,
        )


def _choose_os(asked: Asked, guest: GuestSays, chosen: Chosen) -> None:
    base, base_origin = asked.base, asked.base_origin
    name, name_origin = _first(
        (asked.operating_system, Origin(GIVEN, "given")),
        (base.operating_system if base else None, base_origin),
        _stated(guest.os_name),
        (asked.stated_os, Origin("ovf", "stated by the OVF descriptor")),
    )
    version, version_origin = _first(
        (asked.operating_system_version, Origin(GIVEN, "given")),
        (base.operating_system_version if base else None, base_origin),
    )
    if name is not None and name_origin is not None and name_origin.kind != GUEST:
        _check_name(asked, guest, chosen, name, name_origin)
    agrees = guest.os_name is not None and name is not None and _names_agree(name, guest)
    if version is None and agrees and guest.os_version is not None:
        version, version_origin = guest.os_version.value, Origin(GUEST, guest.os_version.where)
    if version is None and name == asked.stated_os and asked.stated_os_version:
        version, version_origin = asked.stated_os_version, Origin("ovf", "stated by the OVF descriptor")
    if version is not None and version_origin is not None and version_origin.kind != GUEST and agrees:
        _check_version(asked, guest, chosen, name or "", version, version_origin)
    chosen.operating_system, chosen.operating_system_version = name, version
    if name is not None and name_origin is not None:
        chosen.sources["operatingSystem"] = name_origin
    if version is not None and version_origin is not None:
        chosen.sources["operatingSystemVersion"] = version_origin


def _stated(stated: Stated | None) -> tuple[str | None, Origin | None]:
    return (stated.value, Origin(GUEST, stated.where)) if stated else (None, None)


def _first(*candidates: tuple[str | None, Origin | None]) -> tuple[str | None, Origin | None]:
    return next(((value, origin) for value, origin in candidates if value), (None, None))


def _check_name(asked: Asked, guest: GuestSays, chosen: Chosen, name: str, origin: Origin) -> None:
    windows = oslist.is_windows(name)
    if guest.family == "windows" and not windows:
        _windows_refused(guest, f"operatingSystem {_short(name)} ({origin.text})")
    if guest.family == "linux" and windows:
        raise MetadataError(
            f"operatingSystem {_short(name)} ({origin.text}): the guest is Linux "
            f"({guest.os_name.value if guest.os_name else 'read from its file systems'}), not Windows; OCI licenses "
            "Windows by what the image holds",
            code="metadata.guest-windows",
        )
    if guest.family == "linux" and guest.os_name is not None and not _names_agree(name, guest):
        _contradicted(
            chosen,
            asked,
            "metadata.guest-os",
            f"operatingSystem {_short(name)} ({origin.text}): the guest says it is {guest.os_name.value} "
            f"({guest.os_name.where})",
            value=guest.os_name.value,
        )


def _check_version(asked: Asked, guest: GuestSays, chosen: Chosen, name: str, version: str, origin: Origin) -> None:
    if guest.family == "windows":
        _check_windows(guest, name, version, origin)
        return
    stated = guest.os_version
    if stated is not None and not versions_agree(version, stated.value):
        _contradicted(
            chosen,
            asked,
            "metadata.guest-os-version",
            f"operatingSystemVersion {_short(version)} ({origin.text}): the guest says it is version "
            f"{stated.value} ({stated.where})",
            value=stated.value,
        )


def _check_windows(guest: GuestSays, name: str, version: str, origin: Origin) -> None:
    text = f"{name} {version}"
    what = f"{_short(name)} {_short(version)} ({origin.text})"
    if guest.windows_product is not None and not guest.windows_server:
        _windows_refused(guest, what)
    releases, editions = oslist.windows_releases(text), oslist.windows_editions(text)
    if guest.windows_release is not None and releases and releases != [guest.windows_release]:
        _windows_refused(guest, what)
    if guest.windows_edition is not None and editions and editions != [guest.windows_edition]:
        _windows_refused(guest, what)


def _windows_refused(guest: GuestSays, what: str) -> None:
    holds = guest.windows_product or "Windows"
    fix, remedy = "", None
    if guest.os_name is not None and guest.os_version is not None:
        fix, remedy = f"; pack it as {guest.os_name.value} '{guest.os_version.value}'", Remedy.TAKE_GUEST_OS
    raise MetadataError(
        f"{what}: the guest holds {holds} ({guest.os_name.where if guest.os_name else 'read from its registry'}); "
        f"OCI licenses Windows by the release and edition the image holds, so no other may be given{fix}",
        code="metadata.guest-windows",
        remedy=remedy,
    )


def _contradicted(chosen: Chosen, asked: Asked, code: str, message: str, *, value: str) -> None:
    """A value the guest contradicts where no licence is at stake: refused, or a warning when the user says the
    value given is right."""
    if not asked.mismatch_ok:
        raise MetadataError(message, code=code, remedy=Remedy.GUEST_MISMATCH_OK)
    chosen.problems.append(Problem(code, f"{message}; kept as given", severity=Severity.WARNING, value=value))


def _names_agree(name: str, guest: GuestSays) -> bool:
    """Whether `name` is the system the guest says it is: the same line of OCI's list, else the guest's ID or the
    first words of its NAME ('Debian' for 'Debian GNU/Linux')."""
    if guest.family == "windows":
        return oslist.is_windows(name)
    line = listed_line(name)
    lines = {listed_line(n) for n in guest.linux_names} - {None}
    if line is not None or lines:
        return line in lines
    words = name.casefold().split()
    return any(n.casefold().split()[: len(words)] == words for n in guest.linux_names)


def versions_agree(given: str, stated: str) -> bool:
    """'8' and '8.9', '22.04' and '22.04 LTS' agree; '20.04' and '22.04' do not."""
    a, b = (re.match(r"\d+(?:\.\d+)*", text.strip()) for text in (given, stated))
    if a is None or b is None:
        return given.strip().casefold() == stated.strip().casefold()
    left, right = (tuple(int(part) for part in m[0].split(".")) for m in (a, b))
    shortest = min(len(left), len(right))
    return left[:shortest] == right[:shortest]


def _short(text: str, limit: int = 40) -> str:
    text = "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text.strip())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")
