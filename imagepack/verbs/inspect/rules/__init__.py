"""Readiness rules: whether the guest an inspect report describes will boot where it is imported (OCI in a launch
mode and firmware, or GCP, Azure, AWS), each finding with its evidence and what to do."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from imagepack.core.problems import Severity
from imagepack.verbs.inspect.rules.clouds import cloud_rules
from imagepack.verbs.inspect.rules.common import common_rules, encryption_rule, firmware_rule, guest_checked
from imagepack.verbs.inspect.rules.finding import Finding
from imagepack.verbs.inspect.rules.linux import linux_rules
from imagepack.verbs.inspect.rules.windows import windows_rules

__all__ = ["Finding", "Target", "Wanted", "check", "guest_checked"]


class Target(StrEnum):
    OCI = "oci"
    GCP = "gcp"
    AZURE = "azure"
    AWS = "aws"


@dataclass(frozen=True)
class Wanted:
    """Where the image goes: the cloud, and for OCI the launch mode and firmware (None: not stated) and the
    operating system its metadata names (a .oci's, or given)."""

    target: Target = Target.OCI
    launch_mode: str | None = None
    firmware: str | None = None
    operating_system: str | None = None
    operating_system_version: str | None = None


def check(report: dict[str, Any], wanted: Wanted) -> list[Finding]:
    """The findings on the guest of `report` (inspect's JSON) for `wanted`, errors first."""
    unchecked = guest_checked(report)
    if unchecked is not None:  # encryption still counts; what the boot set-up says is doubtful without the guest
        doubtful = [dataclasses.replace(f, severity=Severity.WARNING) for f in firmware_rule(report, wanted.firmware)]
        return [*encryption_rule(report, wanted.target.value), *doubtful, unchecked]
    family = report["os"].get("family")
    found = common_rules(report, wanted.target.value, wanted.firmware)
    if wanted.target is Target.OCI:
        mode = wanted.launch_mode or "PARAVIRTUALIZED"
        if family == "linux":
            found += linux_rules(report, mode)
        else:
            found += windows_rules(report, mode, wanted.operating_system, wanted.operating_system_version)
    else:
        found += cloud_rules(report, wanted.target.value)
    order = {"error": 0, "warning": 1, "note": 2}
    return sorted(found, key=lambda f: order[f.severity.value])
