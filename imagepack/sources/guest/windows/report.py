"""What a Windows guest states about itself, each fact with the hive, key and value it was read from, in one shape
the readiness rules, `pack` and the JSON output read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from imagepack.core.problems import Problem

RegData = int | str | bytes | list[str] | None


def json_data(data: RegData) -> int | str | list[str] | None:
    """Registry data as JSON holds it: binary data in hex."""
    return data.hex() if isinstance(data, bytes) else data


@dataclass(frozen=True)
class Evidence:
    """Where a fact was read: the hive file (a guest path), the key inside it, the value's name, type and data.
    `data_type` and `data` are None when the value (or the key) is not there."""

    hive: str
    key: str
    value: str
    data_type: str | None = None
    data: RegData = None

    def to_json(self) -> dict[str, Any]:
        return {
            "hive": self.hive,
            "key": self.key,
            "value": self.value,
            "type": self.data_type,
            "data": json_data(self.data),
        }


@dataclass(frozen=True)
class WindowsVersion:
    """SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion as stated, and the product it means."""

    product_name: str | None
    edition_id: str | None
    installation_type: str | None
    build: int | None
    display_version: str | None  # DisplayVersion, or ReleaseId on releases before 20H2
    product: str | None  # "Windows Server 2022 Datacenter", "Windows 11 Pro"
    server: bool
    release: str | None  # the Windows Server release: "2012 R2", "2022"; None on a client or an unknown build
    edition: str | None  # Oracle's spelling of the edition: "Standard", "Datacenter"
    evaluation: bool  # an evaluation edition (ServerStandardEval, ...)
    oci_operating_system: str | None  # what pack would write in image_metadata.json, None when OCI does not list it
    oci_operating_system_version: str | None
    evidence: tuple[Evidence, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "productName": self.product_name,
            "editionId": self.edition_id,
            "installationType": self.installation_type,
            "build": self.build,
            "displayVersion": self.display_version,
            "product": self.product,
            "server": self.server,
            "release": self.release,
            "edition": self.edition,
            "evaluation": self.evaluation,
            "operatingSystem": self.oci_operating_system,
            "operatingSystemVersion": self.oci_operating_system_version,
            "evidence": [e.to_json() for e in self.evidence],
        }


START_TYPES = {0: "boot", 1: "system", 2: "automatic", 3: "demand", 4: "disabled"}


@dataclass(frozen=True)
class Service:
    """A service or driver under CurrentControlSet\\Services: whether its key is there, and its Start type."""

    name: str
    present: bool
    start: int | None
    evidence: Evidence

    @property
    def start_type(self) -> str | None:
        if self.start is None:
            return None
        return START_TYPES.get(self.start, f"unknown ({self.start})")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "present": self.present,
            "start": self.start,
            "startType": self.start_type,
            "evidence": self.evidence.to_json(),
        }


@dataclass(frozen=True)
class HiveState:
    """A hive file's base block: its two sequence numbers differ while a write is unfinished, and Windows then
    replays the transaction logs (.LOG1, .LOG2) beside it at the next boot; an offline reader sees the old state."""

    path: str
    primary_sequence: int
    secondary_sequence: int
    logs: tuple[str, ...]  # the transaction log files beside the hive, as guest paths

    @property
    def dirty(self) -> bool:
        return self.primary_sequence != self.secondary_sequence

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "dirty": self.dirty,
            "primarySequence": self.primary_sequence,
            "secondarySequence": self.secondary_sequence,
            "logs": list(self.logs),
        }


@dataclass(frozen=True)
class Fact:
    """A yes/no the guest states (None: it could not be told), with what it was read from."""

    value: bool | None
    detail: str
    evidence: tuple[Evidence, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "detail": self.detail, "evidence": [e.to_json() for e in self.evidence]}


@dataclass
class WindowsReport:
    """Everything read from one Windows system volume. A fact that could not be read is None and has a finding
    saying why."""

    version: WindowsVersion | None = None
    control_set: str | None = None  # "ControlSet001": what CurrentControlSet stands for
    real_time_is_universal: Fact | None = None
    services: tuple[Service, ...] = ()  # viostor, vioscsi, netkvm
    fast_startup: Fact | None = None
    hibernation: Fact | None = None
    cloudbase_init: Fact | None = None
    hives: tuple[HiveState, ...] = ()
    findings: list[Problem] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        def fact(value: Fact | None) -> dict[str, Any] | None:
            return value.to_json() if value else None

        return {
            "version": self.version.to_json() if self.version else None,
            "controlSet": self.control_set,
            "realTimeIsUniversal": fact(self.real_time_is_universal),
            "services": [s.to_json() for s in self.services],
            "fastStartup": fact(self.fast_startup),
            "hibernation": fact(self.hibernation),
            "cloudbaseInit": fact(self.cloudbase_init),
            "hives": [h.to_json() for h in self.hives],
            "findings": [p.to_json() for p in self.findings],
        }
