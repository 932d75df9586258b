"""Rules for a Linux guest on OCI: the drivers its launch mode needs in the default kernel, the serial console,
fstab, hard-coded MAC addresses, cloud-init, and the kernel's age."""

from __future__ import annotations

from typing import Any

from imagepack.verbs.inspect.rules.finding import ERROR, NOTE, WARNING, Finding, evidence

EARLY = ("built-in", "initramfs")  # where a driver must be to find the root disk
LOADABLE = (*EARLY, "module-not-in-initramfs")  # where a network driver may be: udev loads it from root
OLDEST_PV_KERNEL = (3, 4)  # SPEC §8: EMULATED (e1000, IDE/SCSI) is what kernels older than 3.4 need
RHEL_FAMILY = ("ol", "rhel", "centos", "almalinux", "rocky", "fedora")
DEBIAN_FAMILY = ("debian", "ubuntu")
KERNEL_UPDATE = {"rhel": "yum update", "debian": "apt-get update && apt-get dist-upgrade"}
DRACUT_ADD_DRIVERS = ("dracut", "--add-drivers")  # the guest's program, as its command line starts


def family(report: dict[str, Any]) -> str | None:
    distro = (report["os"].get("id") or "").lower()
    return "rhel" if distro in RHEL_FAMILY else "debian" if distro in DEBIAN_FAMILY else None


def add_drivers(report: dict[str, Any], drivers: list[str], version: str) -> str:
    """The line that puts `drivers` in the initramfs, for the guest's distribution."""
    names = " ".join(drivers)
    if family(report) == "rhel":
        return f'in the guest: {" ".join(DRACUT_ADD_DRIVERS)} "{names}" -f /boot/initramfs-{version}.img {version}'
    if family(report) == "debian":
        lines = " ".join(f"echo {name} >> /etc/initramfs-tools/modules &&" for name in drivers)
        return f"in the guest: {lines} update-initramfs -u -k {version}"
    return f"rebuild the initramfs of {version} with {names} in it"


def default_kernel(report: dict[str, Any]) -> dict[str, Any] | None:
    config = report["config"]
    version = config.get("default_kernel")
    return next((k for k in config.get("kernels", []) if k["version"] == version), None)


def _where(kernel: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in kernel["drivers"]}


def _drivers_rule(report: dict[str, Any], rule: str, storage: list[str], network: str, mode: str) -> list[Finding]:
    """The default kernel has one of the `storage` drivers (and virtio_pci for virtio) where it finds the root
    disk, and the `network` driver somewhere."""
    kernel = default_kernel(report)
    if kernel is None:
        return [Finding(rule, WARNING, f"no kernel found in /boot: the {mode} drivers were not checked")]
    drivers, version = _where(kernel), kernel["version"]
    needed = [name for name in ("virtio_pci",) if storage[0].startswith("virtio")]
    unknown = [n for n in [*storage, network, *needed] if drivers[n]["where"] == "unknown"]
    missing = [n for n in needed if drivers[n]["where"] not in EARLY]
    if not any(drivers[n]["where"] in EARLY for n in storage):
        missing.append(storage[0])
    if drivers[network]["where"] not in LOADABLE:
        missing.append(network)
    missing = [n for n in missing if n not in unknown]
    told = evidence([drivers[n]["evidence"] for n in [*storage, network, *needed] if drivers[n]["evidence"]])
    found = []
    if missing:
        what = ", ".join(f"{n} ({drivers[n]['where']})" for n in missing)
        fix = _drivers_fix(report, [n for n in missing if drivers[n]["where"] == "absent"], missing, version, mode)
        found.append(
            Finding(
                rule,
                ERROR,
                f"{mode} mode needs {what} for the default kernel {version}: storage drivers in its initramfs or "
                "built in, the network driver at least as a module",
                fix,
                told,
            )
        )
    if unknown:
        why = kernel.get("initramfs_problem") or "nothing that says could be read"
        found.append(Finding(rule, WARNING, f"whether kernel {version} has {', '.join(unknown)} is not known: {why}"))
    return found


def _drivers_fix(report: dict[str, Any], absent: list[str], missing: list[str], version: str, mode: str) -> str:
    """What puts the `missing` drivers where the kernel finds them: the initramfs for a module the kernel has;
    another kernel (or the other launch mode) for one it has not at all, which no initramfs can hold."""
    other = {"PARAVIRTUALIZED": "EMULATED", "EMULATED": "PARAVIRTUALIZED"}.get(mode)
    alternative = f"import in {other} mode, or " if other else ""
    if not absent:
        return alternative + add_drivers(report, missing, version)
    names = ", ".join(absent)
    fix = f"kernel {version} has no {names} driver at all, so no initramfs can hold it: {alternative}"
    fix += f"install a kernel built with {names}"
    if version.endswith("-cloud-amd64"):
        fix += " (Debian's cloud kernel leaves out emulated devices' drivers; linux-image-amd64 has them)"
    fixable = [n for n in missing if n not in absent]
    return fix + (f"; and {add_drivers(report, fixable, version)}" if fixable else "")


def drivers_rules(report: dict[str, Any], mode: str) -> list[Finding]:
    if mode == "EMULATED":
        return _drivers_rule(report, "linux.emulated-drivers", ["ata_piix"], "e1000", mode)
    if mode in ("PARAVIRTUALIZED", "NATIVE", "CUSTOM"):
        return _drivers_rule(report, "linux.virtio-drivers", ["virtio_blk", "virtio_scsi"], "virtio_net", mode)
    return []


def kernel_age_rule(report: dict[str, Any], mode: str) -> list[Finding]:
    kernel = default_kernel(report)
    if kernel is None or not kernel["major_minor"] or tuple(kernel["major_minor"]) >= OLDEST_PV_KERNEL:
        return []
    update = KERNEL_UPDATE.get(family(report) or "", "the distribution's kernel update")
    oldest = ".".join(map(str, OLDEST_PV_KERNEL))
    message = (
        f"kernel {kernel['version']} is older than {oldest}: X5, X6 and X7 hosts differ in network and NVMe "
        f"drivers, and such a kernel may lack them{'' if mode == 'EMULATED' else ' (and boots EMULATED only)'}"
    )
    return [
        Finding("linux.kernel-age", WARNING, message, f"update the kernel in the guest: {update}", [kernel["image"]])
    ]


def console_rule(report: dict[str, Any]) -> list[Finding]:
    serial = report["config"]["boot"]["serial_console"]
    if serial["present"]:
        return []
    told = evidence(serial.get("evidence"))
    if serial["present"] is None:
        return [
            Finding(
                "linux.serial-console",
                NOTE,
                f"whether the default entry sends the console to ttyS0 is not known ({serial['source']})",
                None,
                told,
            )
        ]
    fix = "add console=ttyS0,115200 to GRUB_CMDLINE_LINUX in /etc/default/grub and regenerate grub.cfg"
    return [
        Finding(
            "linux.serial-console",
            WARNING,
            f"no console=ttyS0 on the kernel command line of {serial['source']}: OCI's serial console shows nothing",
            fix,
            told,
        )
    ]


def fstab_rules(report: dict[str, Any]) -> list[Finding]:
    config = report["config"]
    found = []
    entries = {e["evidence"]["line"]: e for e in config.get("fstab") or []}
    for resolved in config.get("fstab_resolution") or []:
        entry = entries.get(resolved["entry"])
        if entry is None or (entry["fstype"] == "swap" and resolved["resolution"] == "resolves"):
            continue
        told = evidence(entry["evidence"])
        if resolved["resolution"] == "device-name":
            found.append(
                Finding(
                    "linux.fstab-device-name",
                    WARNING,
                    f"/etc/fstab mounts {entry['mountpoint']} by "
                    f"the device name {entry['spec']}, which changes between launch modes",
                    "name it by UUID=, LABEL= or its LVM name (blkid shows them)",
                    told,
                )
            )
        elif resolved["resolution"] == "missing":
            severity = WARNING if entry["nofail"] else ERROR
            found.append(
                Finding(
                    "linux.fstab-unresolved",
                    severity,
                    f"/etc/fstab mounts {entry['mountpoint']} from "
                    f"{entry['spec']}, which is not on this disk"
                    f"{' (nofail: boot goes on without it)' if entry['nofail'] else ': boot stops'}",
                    "remove the entry or add nofail to its options",
                    told,
                )
            )
    return found


def mac_rule(report: dict[str, Any]) -> list[Finding]:
    macs = report["config"].get("macs") or []
    if not macs:
        return []
    shown = ", ".join(sorted({m["mac"] for m in macs}))
    return [
        Finding(
            "linux.mac-address",
            WARNING,
            f"the network configuration is tied to MAC address {shown}, "
            "which an instance does not have: that interface does not come up",
            "remove the MAC match (HWADDR=, macaddress:, persistent-net rules) from the guest",
            evidence([m["evidence"] for m in macs]),
        )
    ]


def cloud_init_rule(report: dict[str, Any]) -> list[Finding]:
    cloud = report["config"]["cloud_init"]
    if not cloud["installed"]:
        return [
            Finding(
                "linux.cloud-init",
                WARNING,
                "cloud-init is not installed: no SSH key or user data reaches the instance",
                "install cloud-init in the guest",
            )
        ]
    if cloud.get("disabled"):
        return [
            Finding(
                "linux.cloud-init",
                WARNING,
                "cloud-init is disabled",
                "remove /etc/cloud/cloud-init.disabled",
                evidence(cloud["disabled"]),
            )
        ]
    if cloud["oracle_allowed"] is False:
        listed = ", ".join(cloud["datasource_list"] or [])
        return [
            Finding(
                "linux.cloud-init",
                WARNING,
                f"cloud-init's datasource_list ({listed}) leaves out Oracle, OCI's datasource",
                "add Oracle to datasource_list",
                evidence(cloud["datasource_evidence"]),
            )
        ]
    return []


def linux_rules(report: dict[str, Any], mode: str) -> list[Finding]:
    if report.get("config") is None:
        return []
    found = drivers_rules(report, mode) + kernel_age_rule(report, mode) + console_rule(report)
    return found + fstab_rules(report) + mac_rule(report) + cloud_init_rule(report)
