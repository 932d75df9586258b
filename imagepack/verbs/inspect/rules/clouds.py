"""Rules for a Linux guest bound for another cloud, where SPEC §8 and the clouds' import pages state them: GCP wants
virtio-scsi and virtio-net and console=ttyS0, Azure the Hyper-V drivers and console=ttyS0, AWS NVMe and ENA; a
guest that boots only by UEFI must be imported as a UEFI image on each. Windows guests get no rules here (what
those clouds need of Windows is not stated)."""

from __future__ import annotations

from typing import Any

from imagepack.verbs.inspect.rules.finding import ERROR, NOTE, WARNING, Finding, evidence
from imagepack.verbs.inspect.rules.linux import EARLY, LOADABLE, add_drivers, default_kernel

NEEDS: dict[str, tuple[list[str], list[str], bool]] = {  # storage (in the initramfs), network, serial console
    "gcp": (["virtio_scsi", "virtio_pci"], ["virtio_net"], True),
    "azure": (["hv_vmbus", "hv_storvsc"], ["hv_netvsc"], True),
    "aws": (["nvme"], ["ena"], False),
}
# How each cloud is told that an image boots by UEFI (each boots a BIOS image unless told), as the command that
# creates the image or its setting: GCP's guest OS feature, Azure's Hyper-V generation, AWS's boot mode.
UEFI_IMAGE: dict[str, tuple[str, tuple[str, ...]]] = {
    "gcp": ("GCP boots it only from an image with the UEFI_COMPATIBLE guest OS feature",
            ("gcloud", "compute", "images", "create", "IMAGE", "--guest-os-features=UEFI_COMPATIBLE")),
    "azure": ("Azure boots it only as a Generation 2 (V2) image",
              ("az", "image", "create", "...", "--hyper-v-generation=V2")),
    "aws": ("AWS boots it only from an image registered with the uefi boot mode",
            ("aws", "ec2", "import-image", "...", "--boot-mode=uefi")),
}  # fmt: skip


def cloud_rules(report: dict[str, Any], target: str) -> list[Finding]:
    found = firmware_note(report, target)
    if report["os"].get("family") != "linux" or report.get("config") is None:
        return [*found, Finding(f"{target}.not-checked", NOTE, f"no {target} rules for a Windows guest")]
    storage, network, console = NEEDS[target]
    found += drivers_rule(report, target, storage, network)
    serial = report["config"]["boot"]["serial_console"]
    if console and serial["present"] is False:
        found.append(
            Finding(
                f"{target}.serial-console",
                WARNING,
                f"the default boot entry has no console=ttyS0: {target}'s serial console shows nothing",
                "add console=ttyS0 to the kernel command line",
                evidence(serial.get("evidence")),
            )
        )
    return found


def drivers_rule(report: dict[str, Any], target: str, storage: list[str], network: list[str]) -> list[Finding]:
    """The default kernel has the `storage` drivers where it finds the root disk and the `network` ones at least
    as modules; a driver whose place could not be read is a warning, not a refusal."""
    kernel = default_kernel(report)
    if kernel is None:
        return [Finding(f"{target}.drivers", WARNING, "no kernel found in /boot: its drivers were not checked")]
    drivers = {d["name"]: d for d in kernel["drivers"]}
    unknown = [n for n in [*storage, *network] if drivers[n]["where"] == "unknown"]
    missing = [n for n in storage if drivers[n]["where"] not in EARLY and n not in unknown]
    missing += [n for n in network if drivers[n]["where"] not in LOADABLE and n not in unknown]
    found = []
    if missing:
        what = ", ".join(f"{n} ({drivers[n]['where']})" for n in missing)
        told = evidence([drivers[n]["evidence"] for n in missing if drivers[n]["evidence"]])
        absent = [n for n in missing if drivers[n]["where"] == "absent"]
        fix = (
            f"install a kernel built with {', '.join(absent)}"
            if absent
            else add_drivers(report, missing, kernel["version"])
        )
        found.append(
            Finding(
                f"{target}.drivers",
                ERROR,
                f"{target} needs {what} in the default kernel {kernel['version']} (storage drivers in its initramfs "
                "or built in, network drivers at least as modules): without them the instance finds no disk or "
                "no network",
                fix,
                told,
            )
        )
    if unknown:
        why = kernel.get("initramfs_problem") or "nothing that says could be read"
        found.append(
            Finding(
                f"{target}.drivers",
                WARNING,
                f"whether kernel {kernel['version']} has {', '.join(unknown)} is not known: {why}",
            )
        )
    return found


def firmware_note(report: dict[str, Any], target: str) -> list[Finding]:
    """A guest that boots only by UEFI: the image must be created as a UEFI one, which the disk cannot say."""
    if report["boot"]["firmware"] != ["UEFI_64"]:
        return []
    what, command = UEFI_IMAGE[target]
    return [
        Finding(
            f"{target}.uefi-image",
            NOTE,
            f"it boots only by UEFI: {what}",
            f"create the image as a UEFI one: {' '.join(command)}",
            [f"{name}: {', '.join(paths)}" for name, paths in report["boot"]["esp_loaders"].items() if paths],
        )
    ]
