"""The operating systems OCI supports for image import (Oracle's import/export page, SPEC §3), matched with
tolerance for the usual spellings: "Oracle Linux"/"OracleLinux", "8"/"8.9", "Canonical Ubuntu" "22.04 LTS"."""

from __future__ import annotations

import re
from dataclasses import dataclass

_MINOR = r"(?:\.(?:\d+|x))*"  # "8", "8.9", "8.x", "7.9.2009"


@dataclass(frozen=True)
class SupportedSystem:
    """One line of Oracle's list: the name and versions as the page writes them, and a pattern that recognises them."""

    name: str
    versions: tuple[str, ...]
    pattern: re.Pattern[str]  # full match against squash(operatingSystem + operatingSystemVersion)

    def describe(self) -> str:
        return f"{self.name} {', '.join(self.versions)}"


WINDOWS_RELEASES = ("2012", "2012 R2", "2016", "2019", "2022")
WINDOWS_EDITIONS = ("Standard", "Datacenter")

SUPPORTED_SYSTEMS: tuple[SupportedSystem, ...] = (
    SupportedSystem(
        "Oracle Linux",
        ("6.x", "7.x", "8.x", "9.x"),
        re.compile(rf"(?:oraclelinux(?:server)?|ol)[6-9]{_MINOR}"),
    ),
    SupportedSystem(
        "Oracle Linux Cloud Developer",
        ("8.x",),
        re.compile(rf"(?:oraclelinux|ol)clouddeveloper8{_MINOR}"),
    ),
    SupportedSystem("CentOS", ("7",), re.compile(r"centos(?:linux)?7(?:\.\d+)*")),
    SupportedSystem("CentOS Stream", ("8",), re.compile(r"centos(?:linux)?stream8")),
    SupportedSystem(
        "Ubuntu",
        ("18.04", "20.04", "22.04", "24.04"),  # 24.04 comes from Oracle's newer pages, not the seed
        re.compile(r"(?:canonical)?ubuntu(?:server)?(?:18|20|22|24)\.04(?:\.\d+)?(?:lts)?"),
    ),
    SupportedSystem(
        "Windows Server",
        tuple(WINDOWS_RELEASES),
        re.compile(
            r"(?:microsoft)?windows(?:server)?(?:2012r2|2012|2016|2019|2022)(?:standard|datacenter)(?:edition)?"
        ),
    ),
)


def _squash(text: str) -> str:
    """Lower case without spaces, dashes or other punctuation but the dots of version numbers."""
    return re.sub(r"[^a-z0-9.]", "", text.casefold())


def is_supported(os_name: str, version: str) -> bool:
    """Whether OCI lists this system for import. Windows counts only with a supported edition named."""
    key = _squash(f"{os_name}{version}")
    return any(system.pattern.fullmatch(key) for system in SUPPORTED_SYSTEMS)


def supported_list() -> str:
    """The list for a message, in Oracle's order."""
    parts = [system.describe() for system in SUPPORTED_SYSTEMS]
    parts[-1] += f" ({' or '.join(WINDOWS_EDITIONS)})"
    return "; ".join(parts)


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
