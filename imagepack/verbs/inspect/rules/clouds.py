"""Rules for a Linux guest bound for another cloud, where SPEC §8 states them: GCP wants virtio-scsi and
virtio-net and console=ttyS0, Azure the Hyper-V drivers and console=ttyS0, AWS NVMe and ENA. Windows guests get
no rules here (what those clouds need of Windows is not stated)."""

from __future__ import annotations

from typing import Any

from imagepack.verbs.inspect.rules.finding import ERROR, NOTE, WARNING, Finding, evidence
from imagepack.verbs.inspect.rules.linux import EARLY, LOADABLE, add_drivers, default_kernel

NEEDS: dict[str, tuple[list[str], list[str], bool]] = {  # storage (in the initramfs), network, serial console
    "gcp": (["virtio_scsi", "virtio_pci"], ["virtio_net"], True),
    "azure": (["hv_vmbus", "hv_storvsc"], ["hv_netvsc"], True),
    "aws": (["nvme"], ["ena"], False),
}


def cloud_rules(report: dict[str, Any], target: str) -> list[Finding]:
    if report["os"].get("family") != "linux" or report.get("config") is None:
        return [Finding(f"{target}.not-checked", NOTE, f"no {target} rules for a Windows guest")]
    storage, network, console = NEEDS[target]
    kernel = default_kernel(report)
    found = []
    if kernel is None:
        found.append(Finding(f"{target}.drivers", WARNING, "no kernel found in /boot: its drivers were not checked"))
    else:
        drivers = {d["name"]: d for d in kernel["drivers"]}
        missing = [n for n in storage if drivers[n]["where"] not in EARLY]
        missing += [n for n in network if drivers[n]["where"] not in LOADABLE]
        if missing:
            what = ", ".join(f"{n} ({drivers[n]['where']})" for n in missing)
            told = evidence([drivers[n]["evidence"] for n in missing if drivers[n]["evidence"]])
            found.append(
                Finding(
                    f"{target}.drivers",
                    ERROR,
                    f"{target} needs {what} in the default kernel {kernel['version']} (in its initramfs or built in)",
                    add_drivers(report, missing, kernel["version"]),
                    told,
                )
            )
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
