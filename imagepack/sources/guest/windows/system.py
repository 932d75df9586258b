"""What the SYSTEM hive states under the control set Windows boots with: the hardware clock's time base, the
virtio drivers and cloudbase-init as services, and Fast Startup."""

from __future__ import annotations

from dataclasses import dataclass

from imagepack.core.problems import Problem, Severity
from imagepack.sources.guest.windows.hive import Hive
from imagepack.sources.guest.windows.report import Evidence, Fact, Service

VIRTIO_SERVICES = ("viostor", "vioscsi", "netkvm")
CLOUDBASE_SERVICE = "cloudbase-init"
_NUMBERS = ("REG_DWORD", "REG_QWORD")


@dataclass
class SystemFacts:
    control_set: str | None
    real_time_is_universal: Fact | None
    services: tuple[Service, ...]
    fast_startup: Fact | None
    cloudbase_service: Service | None
    findings: list[Problem]


def current_control_set(hive: Hive) -> tuple[str | None, Evidence]:
    """ControlSetNNN from Select\\Current, as Windows picks it at boot; None when Select\\Current is not a
    number naming a control set the hive has."""
    evidence = hive.evidence("Select", "Current")
    number = evidence.data
    if evidence.data_type in _NUMBERS and isinstance(number, int) and 0 < number < 1000:
        name = f"ControlSet{number:03d}"
        if hive.key(name) is not None:
            return name, evidence
    return None, evidence


def real_time_is_universal(hive: Hive, control_set: str) -> Fact:
    """Set only as a DWORD or QWORD of 1: Windows ignores it otherwise."""
    evidence = hive.evidence(rf"{control_set}\Control\TimeZoneInformation", "RealTimeIsUniversal")
    if evidence.data_type is None:
        missing = "RealTimeIsUniversal is not set: Windows keeps local time in the hardware clock"
        return Fact(False, missing, (evidence,))
    if evidence.data_type in _NUMBERS and evidence.data == 1:
        return Fact(True, f"RealTimeIsUniversal is {evidence.data_type} 1", (evidence,))
    return Fact(
        False,
        f"RealTimeIsUniversal is {evidence.data_type} {evidence.data!r}, which Windows does not take as set "
        "(it must be a DWORD 1)",
        (evidence,),
    )


def service(hive: Hive, control_set: str, name: str) -> Service:
    key = rf"{control_set}\Services\{name}"
    evidence = hive.evidence(key, "Start")
    present = evidence.data_type is not None or hive.key(key) is not None
    start = evidence.data if evidence.data_type in _NUMBERS and isinstance(evidence.data, int) else None
    return Service(name, present, start, evidence)


def fast_startup(hive: Hive, control_set: str) -> Fact:
    """HiberbootEnabled 1: a shut-down leaves a hibernation image and the volumes in use, which another system
    (this import) must not change."""
    evidence = hive.evidence(rf"{control_set}\Control\Session Manager\Power", "HiberbootEnabled")
    if evidence.data_type is None:
        return Fact(None, "HiberbootEnabled is not set (Fast Startup follows Windows' default)", (evidence,))
    enabled = evidence.data_type in _NUMBERS and evidence.data == 1
    detail = f"Fast Startup is {'on' if enabled else 'off'} (HiberbootEnabled {evidence.data_type} {evidence.data!r})"
    return Fact(enabled, detail, (evidence,))


def read_system(hive: Hive) -> SystemFacts:
    control_set, select = current_control_set(hive)
    if control_set is None:
        problem = Problem(
            "windows.no-control-set",
            f"{hive.path}: Select\\Current is {select.data_type} {select.data!r}, naming no control set in the "
            "hive; the clock, driver and power settings are not known",
            severity=Severity.WARNING,
        )
        return SystemFacts(None, None, (), None, None, [problem])
    return SystemFacts(
        control_set,
        real_time_is_universal(hive, control_set),
        tuple(service(hive, control_set, name) for name in VIRTIO_SERVICES),
        fast_startup(hive, control_set),
        service(hive, control_set, CLOUDBASE_SERVICE),
        [],
    )
