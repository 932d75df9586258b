"""The guest configuration part of `imagepack inspect`'s text report (kernels, boot entry, fstab, MACs, cloud-init;
Windows product, clock, drivers, hibernation) and the readiness findings, as a person reads them at a glance."""

from __future__ import annotations

from typing import Any

VIRTIO = ("virtio_blk", "virtio_scsi", "virtio_net", "virtio_pci")


def _kernel_line(kernel: dict[str, Any], default: str | None) -> str:
    where = {d["name"]: d["where"] for d in kernel["drivers"]}
    drivers = ", ".join(f"{name} {where.get(name, 'unknown')}" for name in (*VIRTIO, "nvme", "e1000"))
    mark = " (default)" if kernel["version"] == default else ""
    initramfs = kernel["initramfs"] or "no initramfs"
    problem = f" [{kernel['initramfs_problem']}]" if kernel.get("initramfs_problem") else ""
    return f"  kernel {kernel['version']}{mark}: {initramfs}{problem}; {drivers}"


def linux_lines(config: dict[str, Any]) -> list[str]:
    lines = [_kernel_line(k, config.get("default_kernel")) for k in config.get("kernels", [])]
    if not config.get("kernels"):
        lines.append("  kernels: none found in /boot")
    boot = config["boot"]
    entry = boot.get("default")
    if entry is not None:
        lines.append(f"  default entry: {entry['title']!r}: {entry.get('cmdline') or 'no command line'}")
    serial = boot["serial_console"]
    state = {True: serial.get("argument"), False: "no console=ttyS0", None: "not known"}[serial["present"]]
    lines.append(f"  serial console: {state} ({serial['source']})")
    left = {r["entry"]: r["resolution"] for r in config.get("fstab_resolution") or [] if r["resolution"] != "resolves"}
    for item in config.get("fstab") or []:
        problem = left.get(item["evidence"]["line"])
        if problem in ("missing", "device-name"):
            what = "not on this disk" if problem == "missing" else "a device name"
            lines.append(f"  fstab line {item['evidence']['line']}: {item['spec']} {item['mountpoint']}: {what}")
    for mac in config.get("macs", []):
        lines.append(f"  MAC address {mac['mac']} ({mac['source']}, {mac['evidence']['path']})")
    cloud = config["cloud_init"]
    sources = ", ".join(cloud.get("datasource_list") or []) or "any datasource"
    allowed = {True: "Oracle allowed", False: "Oracle not allowed", None: "Oracle allowed: not known"}
    installed = f"installed, {sources}, {allowed[cloud['oracle_allowed']]}" if cloud["installed"] else "not installed"
    lines.append(f"  cloud-init: {installed}{', disabled' if cloud.get('disabled') else ''}")
    return lines


def _fact(fact: dict[str, Any] | None) -> str:
    if fact is None:
        return "not read"
    return {True: "yes", False: "no", None: "not known"}[fact["value"]]


def windows_lines(config: dict[str, Any]) -> list[str]:
    version = config.get("version") or {}
    lines = []
    if version:
        lines.append(
            f"  product: {version.get('product') or version.get('productName')}, edition {version.get('editionId')}, "
            f"build {version.get('build')}, {version.get('installationType')}"
        )
    lines.append(f"  RealTimeIsUniversal: {_fact(config.get('realTimeIsUniversal'))}")
    for service in config.get("services", []):
        state = service["startType"] or "no Start value" if service["present"] else "not installed"
        lines.append(f"  service {service['name']}: {state}")
    lines.append(f"  hibernation: {_fact(config.get('hibernation'))}; Fast Startup: {_fact(config.get('fastStartup'))}")
    dirty = config.get("ntfsDirty")
    lines.append(f"  NTFS volume dirty: {'not known' if dirty is None else 'yes' if dirty else 'no'}")
    lines.append(f"  cloudbase-init: {_fact(config.get('cloudbaseInit'))}")
    return lines


def config_lines(report: dict[str, Any]) -> list[str]:
    config = report.get("config")
    if config is None:
        return []
    return linux_lines(config) if report["os"].get("family") == "linux" else windows_lines(config)


def readiness_lines(readiness: dict[str, Any]) -> list[str]:
    where = readiness["for"]
    if where == "oci":
        where += f" ({readiness['launch_mode']}, firmware {readiness['firmware'] or 'any'})"
    lines = []
    for finding in readiness["findings"]:
        lines.append(f"{finding['severity']}: [{finding['id']}] {finding['message']}")
        lines += [f"    evidence: {item}" for item in finding["evidence"][:4]]
        if finding["fix"]:
            lines.append(f"    fix: {finding['fix']}")
    lines.append(f"{'ready' if readiness['ready'] else 'NOT ready'} for {where}")
    return lines
