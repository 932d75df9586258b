"""The Windows reader's one entry point: what a Windows system volume states about the product, the clock, the
virtio drivers, hibernation and cloudbase-init, with the hive, key and value each fact comes from."""

from __future__ import annotations

from imagepack.core.problems import Problem, Severity
from imagepack.sources.guest.guestfs import GuestFiles, Kind
from imagepack.sources.guest.windows.hive import Hive, HiveProblem, open_hive
from imagepack.sources.guest.windows.product import CURRENT_VERSION, read_version
from imagepack.sources.guest.windows.report import Fact, Service, WindowsReport
from imagepack.sources.guest.windows.system import read_system

CONFIG = "/Windows/System32/config"
SYSTEM_HIVE = f"{CONFIG}/SYSTEM"
SOFTWARE_HIVE = f"{CONFIG}/SOFTWARE"
HIBERFIL = "/hiberfil.sys"
CLOUDBASE_DIRS = (
    "/Program Files/Cloudbase Solutions/Cloudbase-Init",
    "/Program Files (x86)/Cloudbase Solutions/Cloudbase-Init",
)


def hibernation(files: GuestFiles) -> Fact:
    """Windows allocates hiberfil.sys at the volume root while hibernation (and so Fast Startup) is enabled;
    a hibernated or fast-started session lives in it."""
    kind = files.kind(HIBERFIL)
    if kind is None:
        return Fact(False, "no hiberfil.sys at the volume root")
    size = files.size(HIBERFIL) if kind is Kind.FILE else None
    if size is None:
        return Fact(None, f"hiberfil.sys at the volume root is a {kind}, of a size not known")
    if size == 0:
        return Fact(False, "hiberfil.sys at the volume root is empty")
    return Fact(
        True,
        f"hiberfil.sys at the volume root holds {size} bytes: hibernation is enabled, and the disk may hold a "
        "hibernated session; in the guest, `powercfg /h off` and a full shut-down remove it",
    )


def cloudbase_init(files: GuestFiles, service: Service | None) -> Fact:
    found = [path for path in CLOUDBASE_DIRS if files.kind(path) is Kind.DIRECTORY]
    evidence = (service.evidence,) if service else ()
    if service and service.present:
        found.append(f"service {service.name} (start type {service.start_type or 'not set'})")
    if found:
        return Fact(True, "cloudbase-init is installed: " + ", ".join(found), evidence)
    missing = "cloudbase-init is not installed (no Cloudbase-Init folder, no cloudbase-init service)"
    return Fact(False, missing, evidence)


def _dirty(hive: Hive) -> Problem | None:
    state = hive.state
    if not state.dirty:
        return None
    logs = ", ".join(state.logs) if state.logs else "but no .LOG1/.LOG2 beside it"
    return Problem(
        "windows.hive-dirty",
        f"{hive.path}: an unfinished write (sequence numbers {state.primary_sequence} and "
        f"{state.secondary_sequence}), its transaction logs not replayed ({logs}); what is read here may be older "
        "than what Windows will see at its next boot",
        severity=Severity.WARNING,
    )


def _read_system(files: GuestFiles, report: WindowsReport) -> Service | None:
    hive = open_hive(files, SYSTEM_HIVE)
    report.hives += (hive.state,)
    report.findings += filter(None, [_dirty(hive)])
    facts = read_system(hive)
    report.control_set = facts.control_set
    report.real_time_is_universal = facts.real_time_is_universal
    report.services = facts.services
    report.fast_startup = facts.fast_startup
    report.findings += facts.findings
    return facts.cloudbase_service


def _read_software(files: GuestFiles, report: WindowsReport) -> None:
    hive = open_hive(files, SOFTWARE_HIVE)
    report.hives += (hive.state,)
    report.findings += filter(None, [_dirty(hive)])
    report.version = read_version(hive)
    if report.version is None:
        report.findings.append(
            Problem(
                "windows.no-version",
                f"{SOFTWARE_HIVE}: {CURRENT_VERSION} names no product or build; "
                "the Windows release and edition are not known",
                severity=Severity.WARNING,
            )
        )


def analyse_windows(files: GuestFiles) -> WindowsReport:
    """Read a Windows system volume (the one holding Windows/System32/config/SYSTEM). A hive that cannot be read
    leaves its facts None and adds one finding; the rest is still read."""
    report = WindowsReport()
    cloudbase_service: Service | None = None
    try:
        cloudbase_service = _read_system(files, report)
    except HiveProblem as error:
        report.findings.append(error.problem)
    try:
        _read_software(files, report)
    except HiveProblem as error:
        report.findings.append(error.problem)
    report.hibernation = hibernation(files)
    report.cloudbase_init = cloudbase_init(files, cloudbase_service)
    return report
