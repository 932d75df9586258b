"""The operating systems OCI supports for image import (Oracle's import/export page, SPEC §3), matched with
tolerance for the usual spellings: "Oracle Linux"/"OracleLinux", "8"/"8.9", "Canonical Ubuntu" "22.04 LTS"; and for
what is not on it, whether it is a newer release of a listed system or which known name a typo meant."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

_MINOR = r"(?:\.(?:\d+|x))*"  # "8", "8.9", "8.x", "7.9.2009"


@dataclass(frozen=True)
class SupportedSystem:
    """One line of Oracle's list: the name and versions as the page writes them, and a pattern that recognises them."""

    name: str
    versions: tuple[str, ...]
    pattern: re.Pattern[str]  # full match against squash(operatingSystem + operatingSystemVersion)
    family: str  # the pattern's name part: followed by a release number, another release of this system
    kernel_update: str | None = None  # what brings the kernel up to date in the guest (the seed's X5/X6/X7 notes)

    def describe(self) -> str:
        return f"{self.name} {', '.join(self.versions)}"

    def releases(self) -> str:
        """The listed releases, short: '6-9' for Oracle Linux, '18.04, 20.04, 22.04, 24.04' for Ubuntu."""
        majors = [version.removesuffix(".x") for version in self.versions]
        if (
            len(majors) > 2
            and all(m.isdigit() for m in majors)
            and majors == [str(n) for n in range(int(majors[0]), int(majors[0]) + len(majors))]
        ):
            return f"{majors[0]}-{majors[-1]}"
        return ", ".join(majors)

    def newest(self) -> tuple[int, ...]:
        return max(_release_number(version) for version in self.versions)


YUM_UPDATE = "yum update"
APT_UPGRADE = "apt-get update && apt-get dist-upgrade"
WINDOWS_RELEASES = ("2012", "2012 R2", "2016", "2019", "2022")
WINDOWS_EDITIONS = ("Standard", "Datacenter")

SUPPORTED_SYSTEMS: tuple[SupportedSystem, ...] = (
    SupportedSystem(
        "Oracle Linux",
        ("6.x", "7.x", "8.x", "9.x"),
        re.compile(rf"(?:oraclelinux(?:server)?|ol)[6-9]{_MINOR}"),
        r"(?:oraclelinux(?:server)?|ol)",
        YUM_UPDATE,
    ),
    SupportedSystem(
        "Oracle Linux Cloud Developer",
        ("8.x",),
        re.compile(rf"(?:oraclelinux|ol)clouddeveloper8{_MINOR}"),
        r"(?:oraclelinux|ol)clouddeveloper",
        YUM_UPDATE,
    ),
    SupportedSystem("CentOS", ("7",), re.compile(r"centos(?:linux)?7(?:\.\d+)*"), r"centos(?:linux)?", YUM_UPDATE),
    SupportedSystem(
        "CentOS Stream", ("8",), re.compile(r"centos(?:linux)?stream8"), r"centos(?:linux)?stream", YUM_UPDATE
    ),
    SupportedSystem(
        "Ubuntu",
        ("18.04", "20.04", "22.04", "24.04"),  # 24.04 comes from Oracle's newer pages, not the seed
        re.compile(r"(?:canonical)?ubuntu(?:server)?(?:18|20|22|24)\.04(?:\.\d+)?(?:lts)?"),
        r"(?:canonical)?ubuntu(?:server)?",
        APT_UPGRADE,
    ),
    SupportedSystem(
        "Windows Server",
        tuple(WINDOWS_RELEASES),
        re.compile(
            r"(?:microsoft)?windows(?:server)?(?:2012r2|2012|2016|2019|2022)(?:standard|datacenter)(?:edition)?"
        ),
        r"(?:microsoft)?windows(?:server)?",
    ),
)


def _squash(text: str) -> str:
    """Lower case without spaces, dashes or other punctuation but the dots of version numbers."""
    return re.sub(r"[^a-z0-9.]", "", text.casefold())


# OCI's spellings of the names on its list, and of the names its own platform images carry, by their squashed form.
_SPELLINGS = {
    _squash(_name): _name
    for _name in (
        "Oracle Linux",
        "Oracle Linux Cloud Developer",
        "CentOS",
        "CentOS Stream",
        "Ubuntu",
        "Canonical Ubuntu",
        "Windows",
        "Windows Server",
    )
}


def canonical_name(os_name: str) -> str:
    """OCI's spelling of a name it knows, whatever the case, spaces or dashes ('ubuntu' -> 'Ubuntu'); any other
    name as given."""
    return _SPELLINGS.get(_squash(os_name), os_name)


def closest_name(os_name: str) -> str | None:
    """The known name a typo most likely meant ('Oracle Linx' -> 'Oracle Linux'), or None when none is close."""
    found = difflib.get_close_matches(_squash(os_name), list(_SPELLINGS), n=1, cutoff=0.75)
    return _SPELLINGS[found[0]] if found else None


# Systems of their own whose names happen to be one letter from a listed one: not typos.
_OTHER_SYSTEMS = frozenset({"kubuntu", "xubuntu", "lubuntu"})


def one_typo_from(os_name: str) -> str | None:
    """The known name `os_name` is one typo from (a letter added, dropped, changed, or two swapped, whatever the
    case and spacing: 'Ubunto', 'Orcle Linux', 'Ubnutu' -> the listed name), or None: a name on the list, or further
    from every one, is not a typo."""
    typed = _squash(os_name)
    if typed in _SPELLINGS or typed in _OTHER_SYSTEMS:
        return None
    return next((name for squashed, name in _SPELLINGS.items() if _one_edit(typed, squashed)), None)


def _one_edit(a: str, b: str) -> bool:
    """Whether `a` becomes `b` by one insertion, deletion, substitution or swap of neighbours."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    start = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    if len(a) == len(b):
        swapped = a[start + 1 : start + 2] + a[start : start + 1]
        return a[start + 1 :] == b[start + 1 :] or (
            swapped == b[start : start + 2] and a[start + 2 :] == b[start + 2 :]
        )
    longer, shorter = (a, b) if len(a) > len(b) else (b, a)
    return longer[start + 1 :] == shorter[start:]


def family_names() -> str:
    """The systems on the list without their releases, for a message that must stay short."""
    return ", ".join(dict.fromkeys(system.name.removesuffix(" Cloud Developer") for system in SUPPORTED_SYSTEMS))


@dataclass(frozen=True)
class Standing:
    """Where a system stands against the list: on it, another release of a listed system (newer or not), or a name
    the list does not have."""

    supported: bool
    system: SupportedSystem | None = None  # the line of the list whose system this is another release of
    newer: bool = False  # that release is newer than every release on the line


def _release_number(text: str) -> tuple[int, ...]:
    """'24.04' -> (24, 4), '8.x' -> (8,), '2012 R2' -> (2012,)."""
    match = re.match(r"\d+(?:\.\d+)?", text)
    return tuple(int(part) for part in match[0].split(".")) if match else ()


def standing(os_name: str, version: str) -> Standing:
    """How `os_name` `version` relates to OCI's list. For Windows the caller has checked that the text names one
    release and one edition."""
    if is_supported(os_name, version):
        return Standing(True)
    if is_windows(os_name):
        windows = SUPPORTED_SYSTEMS[-1]
        releases = windows_releases(f"{os_name} {version}")
        newer = len(releases) == 1 and _release_number(releases[0]) > windows.newest()
        return Standing(False, windows, newer)
    key = _squash(f"{os_name}{version}")
    for system in SUPPORTED_SYSTEMS:
        found = re.fullmatch(rf"{system.family}(\d+(?:\.\d+)?).*", key)
        if found:
            return Standing(False, system, _release_number(found[1]) > system.newest())
    for system in SUPPORTED_SYSTEMS:
        if re.fullmatch(system.family, _squash(os_name)):
            return Standing(False, system)
    return Standing(False)


def is_supported(os_name: str, version: str) -> bool:
    """Whether OCI lists this system for import. Windows counts only with a supported edition named."""
    return supported_system(os_name, version) is not None


def supported_system(os_name: str, version: str) -> SupportedSystem | None:
    """The line of OCI's list this system is on, if any."""
    key = _squash(f"{os_name}{version}")
    return next((system for system in SUPPORTED_SYSTEMS if system.pattern.fullmatch(key)), None)


def is_windows(os_name: str) -> bool:
    return "windows" in _squash(os_name)


_RELEASE = re.compile(r"(?<!\d)(20\d\d)(?!\d)(\s*R2(?![0-9]))?", re.IGNORECASE)
_EDITION = re.compile("|".join(WINDOWS_EDITIONS), re.IGNORECASE)


def windows_releases(text: str) -> list[str]:
    """The Windows Server releases a text names, in order, without repeats: 'Server 2012 R2 Standard' -> ['2012 R2']."""
    found: list[str] = []
    for match in _RELEASE.finditer(text):
        release = match[1] + (" R2" if match[2] else "")
        if release not in found:
            found.append(release)
    return found


def windows_editions(text: str) -> list[str]:
    """The editions (SKUs) a text names, spelled as Oracle does, without repeats."""
    found: list[str] = []
    for match in _EDITION.finditer(text):
        edition = next(e for e in WINDOWS_EDITIONS if e.casefold() == match[0].casefold())
        if edition not in found:
            found.append(edition)
    return found
