"""The operating-system rules of a .oci's metadata: a system and version against OCI's list (oslist), Windows'
release and edition, a name one typo from a listed one, and the notes on what the import cannot check."""

from __future__ import annotations

from enum import Enum

from imagepack.core.problems import Problem, Remedy, Severity
from imagepack.oci.metadata import oslist
from imagepack.oci.metadata.codec import quote
from imagepack.oci.metadata.model import LaunchMode


class OsName(Enum):
    """How a system name one typo from a name on OCI's list ('Ubunto') is taken."""

    REPORTED = "reported"  # an archive's as it is (verify): a warning naming the name meant
    GIVEN = "given"  # being given now (pack, meta set, import-request): refused, naming the name meant
    AS_TYPED = "as-typed"  # given, and the user says it is right (--os-unlisted): only the list's warning


def check_system(
    name: str,
    version: str,
    launch_mode: LaunchMode,
    *,
    strict: bool = False,
    os_name: OsName = OsName.GIVEN,
    fix: Remedy = Remedy.STATE_OS,
) -> list[Problem]:
    """The operating-system rules of check_metadata, for a system and launch mode given apart from an archive (a
    CreateImage request's)."""
    if not name.strip():
        return [
            Problem(
                "metadata.os-empty",
                "operatingSystem is empty; set it, e.g. operatingSystem='Oracle Linux'",
                remedy=fix,
            )
        ]
    if not version.strip():
        return [
            Problem(
                "metadata.os-version-empty",
                f"operatingSystemVersion is empty; set the version of {name}, e.g. operatingSystemVersion=8",
                remedy=fix,
            )
        ]
    if not oslist.is_windows(name):
        return _check_listed(name, version, strict, os_name, fix)
    problems: list[Problem] = []
    if launch_mode is not LaunchMode.PARAVIRTUALIZED:
        problems.append(
            Problem(
                "metadata.windows-mode",
                f"Windows images import in PARAVIRTUALIZED mode only, not {launch_mode}; "
                "set launchMode=PARAVIRTUALIZED",
            )
        )
    text = f"{name} {version}"
    releases, editions = oslist.windows_releases(text), oslist.windows_editions(text)
    example = "e.g. operatingSystem=Windows operatingSystemVersion='Server 2019 Standard'"
    if len(releases) != 1:
        problem = "names no Windows Server release" if not releases else f"names {len(releases)} releases"
        problems.append(
            Problem(
                "metadata.windows-release",
                f"Windows {quote(version)} {problem}; OCI licenses Windows by release and edition: name the one "
                f"the image holds ({', '.join(oslist.WINDOWS_RELEASES)}), {example}",
                remedy=fix,
            )
        )
    if len(editions) != 1:
        problem = "names no edition" if not editions else "names both editions"
        problems.append(
            Problem(
                "metadata.windows-edition",
                f"Windows {quote(version)} {problem}; OCI licenses Windows by release and edition: name the one "
                f"the image holds (Standard or Datacenter), {example}",
                remedy=fix,
            )
        )
    if len(releases) == 1 and len(editions) == 1:
        problems += _check_listed(name, version, strict, os_name, fix)
    return problems


def import_guidance(name: str, version: str) -> list[Problem]:
    """Notes on what the import itself cannot check (the seed's advice): for Windows, the clock and the licence
    the release and edition stand for; for a system on OCI's list, moving between X5, X6 and X7 hosts.

    Notes:
      guidance.windows-clock     Windows keeps local time in the hardware clock unless RealTimeIsUniversal is 1
      guidance.windows-license   the release and edition given must be the ones the image holds
      guidance.host-generation   X5/X6/X7 hosts differ in drivers: Windows images do not move between them, a
                                 listed Linux may need its kernel updated (the command for its family)"""
    if oslist.is_windows(name):
        return [
            Problem(
                "guidance.windows-clock",
                "Windows keeps local time in the hardware clock, so after a reboot the clock goes back to the "
                "default time zone's time unless HKLM\\SYSTEM\\CurrentControlSet\\Control\\TimeZoneInformation"
                "\\RealTimeIsUniversal is a DWORD set to 1 (OCI's platform images set it; a custom image must)",
                remedy=Remedy.WINDOWS_CLOCK_FIX,
                severity=Severity.NOTE,
            ),
            Problem(
                "guidance.windows-license",
                f"OCI licenses Windows by the release and edition given ({_short(name)} {_short(version)}): they "
                "must be the ones the image holds: others may breach Microsoft's licence terms",
                severity=Severity.NOTE,
            ),
            Problem(
                "guidance.host-generation",
                "Windows images do not move between X5, X6 and X7 hosts (their network, NVMe and GPU drivers "
                "differ): run the image on the host generation it was made on",
                severity=Severity.NOTE,
            ),
        ]
    system = oslist.supported_system(name, version)
    if system is None or system.kernel_update is None:
        return []
    return [
        Problem(
            "guidance.host-generation",
            f"X5, X6 and X7 hosts differ in network, NVMe and GPU drivers: an image made on one may need the "
            f"latest kernel on another; update it in the guest with '{system.kernel_update}'",
            severity=Severity.NOTE,
        )
    ]


def _check_listed(name: str, version: str, strict: bool, os_name: OsName, fix: Remedy) -> list[Problem]:
    """Whether the system is on OCI's list (oslist): a release newer than the list is a note, since the list ages
    and OCI adds releases; an older or skipped release, or a name the list does not have, is a warning; a name
    given one typo from a listed one is an error unless the user says it is right as typed."""
    found = oslist.standing(name, version)
    if found.supported:
        return []
    meant = oslist.one_typo_from(name) if found.system is None else None
    if meant is not None and os_name is OsName.GIVEN:
        return [
            Problem(
                "metadata.os-typo",
                f"operatingSystem {quote(name, 32)} is not on OCI's list but one letter from {meant}, which is",
                remedy=Remedy.OS_UNLISTED,
                value=meant,
            )
        ]
    shown = f"{_short(name)} {_short(version)}"
    if found.system is not None and found.newer:
        return [
            Problem(
                "metadata.os-release-newer",
                f"{shown} is newer than the releases on OCI's list this imagepack knows "
                f"({found.system.releases()}); the import may still accept it",
                severity=Severity.NOTE,
            )
        ]
    unsupported = "or expect no support from Oracle"
    if found.system is not None:
        code = "metadata.os-release-unlisted"
        message = f"{shown} is not on OCI's list ({found.system.describe()}); use a listed release, {unsupported}"
    elif (suggestion := oslist.closest_name(name)) is not None:
        code = "metadata.unknown-os"
        message = (
            f"operatingSystem {quote(name, 32)} is not on OCI's list; did you mean {suggestion}? "
            f"Fix the name, {unsupported}"
        )
    else:
        code = "metadata.unknown-os"
        message = (
            f"operatingSystem {quote(name, 32)} is not on OCI's list ({oslist.family_names()}); "
            f"check the spelling, {unsupported}"
        )
    severity = Severity.ERROR if strict else Severity.WARNING
    return [Problem(code, message, remedy=fix, severity=severity)]


def _short(text: str, limit: int = 40) -> str:
    """A value typed by a person, inside a message that must stay one short line."""
    text = "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."
