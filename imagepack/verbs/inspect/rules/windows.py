"""Rules for a Windows guest on OCI: PARAVIRTUALIZED mode with the virtio drivers started at boot, the hardware
clock in UTC, the release and edition the metadata names, no hibernated session or dirty volume, and
cloudbase-init."""

from __future__ import annotations

from typing import Any

from imagepack.core.problems import Remedy
from imagepack.oci.metadata import oslist
from imagepack.verbs.inspect.rules.finding import ERROR, NOTE, WARNING, Finding, evidence

VIRTIO_ISO = "install the virtio drivers (Oracle's Windows VirtIO drivers, or the virtio-win ISO) in the guest"


def _services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in config.get("services", [])}


def drivers_rule(config: dict[str, Any]) -> list[Finding]:
    services = _services(config)
    if not services:
        return [
            Finding(
                "windows.virtio-drivers",
                WARNING,
                "the SYSTEM hive could not be read: the virtio drivers were not checked",
            )
        ]
    found = []
    storage = [services[n] for n in ("viostor", "vioscsi") if n in services]
    if not any(s["present"] and s["start"] == 0 for s in storage):
        shown = ", ".join(f"{s['name']} ({s['startType'] or 'absent'})" for s in storage)
        found.append(
            Finding(
                "windows.virtio-drivers",
                ERROR,
                f"no virtio storage driver starts at boot ({shown}): Windows stops with INACCESSIBLE_BOOT_DEVICE",
                VIRTIO_ISO + ", viostor or vioscsi with Start 0",
                evidence([s["evidence"] for s in storage]),
            )
        )
    net = services.get("netkvm")
    if net is not None and (not net["present"] or net["start"] == 4):
        found.append(
            Finding(
                "windows.virtio-drivers",
                ERROR,
                "the virtio network driver netkvm is "
                f"{'disabled' if net['present'] else 'not installed'}: the instance has no network",
                VIRTIO_ISO,
                evidence(net["evidence"]),
            )
        )
    return found


def clock_rule(config: dict[str, Any]) -> list[Finding]:
    fact = config.get("realTimeIsUniversal")
    if fact is not None and fact["value"]:
        return []
    detail = fact["detail"] if fact else "the SYSTEM hive could not be read"
    return [
        Finding(
            "windows.rtc",
            WARNING,
            f"RealTimeIsUniversal is not 1 ({detail}): the clock goes back to the default time zone after a reboot",
            "set it in the guest",
            evidence(fact["evidence"]) if fact else [],
            Remedy.WINDOWS_CLOCK_FIX,  # or boot it once with imagepack's seed ISO, which holds the fix
        )
    ]


def metadata_rule(config: dict[str, Any], name: str | None, version: str | None) -> list[Finding]:
    guest = config.get("version")
    if name is None or guest is None:
        return []
    told = evidence(guest.get("evidence", []))[:3]
    stated = f"{name} {version or ''}"
    releases, editions = oslist.windows_releases(stated), oslist.windows_editions(stated)
    problems = []
    if guest.get("release") and releases and guest["release"] not in releases:
        problems.append(f"release {', '.join(releases)} where the guest is {guest['release']}")
    if guest.get("edition") and editions and guest["edition"] not in editions:
        problems.append(f"edition {', '.join(editions)} where the guest is {guest['edition']}")
    if not oslist.is_windows(name):
        problems.append(f"operatingSystem {name} where the guest is Windows")
    if not problems:
        return []
    want = " ".join(v for v in (guest.get("operatingSystem"), guest.get("operatingSystemVersion")) if v)
    fix = f"set the metadata to {want}" if want else "set the metadata to the release and edition the guest holds"
    return [
        Finding(
            "windows.metadata-mismatch",
            ERROR,
            f"the metadata names {'; '.join(problems)}: OCI licenses "
            "Windows by release and edition, and a mismatch may breach Microsoft's licence terms",
            fix,
            told,
        )
    ]


def state_rules(config: dict[str, Any]) -> list[Finding]:
    found = []
    hibernation, fast = config.get("hibernation"), config.get("fastStartup")
    if hibernation and hibernation["value"]:
        found.append(
            Finding(
                "windows.hibernated",
                ERROR,
                hibernation["detail"],
                "in the guest: powercfg /h off, then shut down fully",
                ["/hiberfil.sys"],
            )
        )
    if fast and fast["value"]:
        found.append(
            Finding(
                "windows.fast-startup",
                WARNING,
                f"Fast Startup is on ({fast['detail']}): a shut-down leaves a hibernated kernel",
                "in the guest: powercfg /h off",
                evidence(fast["evidence"]),
            )
        )
    if config.get("ntfsDirty"):
        found.append(
            Finding(
                "windows.ntfs-dirty",
                ERROR,
                "the Windows volume is marked dirty (not shut down cleanly): Windows runs chkdsk at its next boot",
                "boot the guest and shut it down cleanly (chkdsk /f)",
                ["$Volume: VOLUME_IS_DIRTY"],
            )
        )
    cloudbase = config.get("cloudbaseInit")
    if cloudbase is not None and cloudbase["value"] is False:
        found.append(
            Finding(
                "windows.cloudbase-init",
                WARNING,
                "cloudbase-init is not installed: no user data or password reaches the instance",
                "install cloudbase-init in the guest",
            )
        )
    return found


def windows_rules(report: dict[str, Any], mode: str, name: str | None, version: str | None) -> list[Finding]:
    config = report.get("config") or {}
    found = []
    if mode != "PARAVIRTUALIZED":
        found.append(
            Finding(
                "windows.launch-mode",
                ERROR,
                f"Windows imports in PARAVIRTUALIZED mode only, not {mode}",
                "set launchMode=PARAVIRTUALIZED",
            )
        )
    found += drivers_rule(config) + clock_rule(config) + metadata_rule(config, name, version) + state_rules(config)
    for problem in config.get("findings", []):
        severity = NOTE if problem["severity"] == "note" else WARNING
        found.append(Finding(problem["code"], severity, problem["message"]))
    return found
