"""Which Windows product SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion states, and the operatingSystem and
operatingSystemVersion a .oci of it carries. The build number decides the release (ProductName keeps saying
"Windows 10" on Windows 11, and is free text); EditionID decides the edition."""

from __future__ import annotations

import re

from imagepack.oci.metadata import oslist
from imagepack.sources.guest.windows.hive import Hive
from imagepack.sources.guest.windows.report import Evidence, WindowsVersion

CURRENT_VERSION = r"Microsoft\Windows NT\CurrentVersion"
FIELDS = (
    "ProductName",
    "EditionID",
    "InstallationType",
    "CurrentBuildNumber",
    "CurrentBuild",
    "DisplayVersion",
    "ReleaseId",
)

# The long-term Windows Server releases by build. The semi-annual channel (1709, 1803, 1903, ...) shares no
# build with them but 17763, which is also version 1809: CurrentVersion cannot tell those apart.
SERVER_RELEASES = {
    6001: "2008",
    6002: "2008",
    6003: "2008",
    7600: "2008 R2",
    7601: "2008 R2",
    9200: "2012",
    9600: "2012 R2",
    14393: "2016",
    17763: "2019",
    20348: "2022",
    26100: "2025",
}
WINDOWS_11_BUILD = 22000
# ServerStandard, ServerDatacenter, their evaluation (Eval) and core (Core, Cor, ACor) forms.
_SERVER_EDITION = re.compile(r"Server(Standard|Datacenter)(Eval)?(?:A?Cor|Core)?", re.IGNORECASE)


def _text(evidence: Evidence) -> str | None:
    data = evidence.data
    if isinstance(data, str):
        return data.strip("\x00 ") or None
    if isinstance(data, int):
        return str(data)
    return None


def _build(values: dict[str, Evidence]) -> int | None:
    for name in ("CurrentBuildNumber", "CurrentBuild"):
        text = _text(values[name])
        if text and text.isdigit():
            return int(text)
    return None


def _is_server(installation_type: str | None, edition_id: str | None, product_name: str | None) -> bool:
    if installation_type:
        return installation_type.casefold().startswith(("server", "nano"))
    return bool(
        (edition_id and edition_id.casefold().startswith("server"))
        or (product_name and "server" in product_name.casefold())
    )


def _client_product(product_name: str | None, build: int | None) -> str | None:
    if product_name and build is not None and build >= WINDOWS_11_BUILD:
        return re.sub(r"\bWindows 10\b", "Windows 11", product_name)
    return product_name


def read_version(hive: Hive) -> WindowsVersion | None:
    """The product the SOFTWARE hive states, or None when it has no CurrentVersion key, or one naming neither a
    product nor a build."""
    if hive.key(CURRENT_VERSION) is None:
        return None
    values = {name: hive.evidence(CURRENT_VERSION, name) for name in FIELDS}
    product_name, edition_id = _text(values["ProductName"]), _text(values["EditionID"])
    installation_type = _text(values["InstallationType"])
    display_version = _text(values["DisplayVersion"]) or _text(values["ReleaseId"])
    build = _build(values)
    if product_name is None and build is None:
        return None
    server = _is_server(installation_type, edition_id, product_name)
    release = SERVER_RELEASES.get(build) if server and build is not None else None
    edition: str | None = None
    evaluation = False
    if server:
        match = _SERVER_EDITION.fullmatch(edition_id or "")
        if match:
            edition = next(e for e in oslist.WINDOWS_EDITIONS if e.casefold() == match[1].casefold())
            evaluation = bool(match[2])
    product: str | None
    if server and release:
        product = f"Windows Server {release}" + (f" {edition}" if edition else "")
    elif server:
        product = product_name or "Windows Server"
        if display_version and build not in SERVER_RELEASES:
            product = f"Windows Server, version {display_version}"
    else:
        product = _client_product(product_name, build)
    oci_os = oci_version = None
    if release and edition and oslist.is_supported("Windows", f"Server {release} {edition}"):
        oci_os, oci_version = "Windows", f"Server {release} {edition}"
    return WindowsVersion(
        product_name=product_name,
        edition_id=edition_id,
        installation_type=installation_type,
        build=build,
        display_version=display_version,
        product=product,
        server=server,
        release=release,
        edition=edition,
        evaluation=evaluation,
        oci_operating_system=oci_os,
        oci_operating_system_version=oci_version,
        evidence=tuple(e for e in values.values() if e.data_type is not None),
    )
