"""The image metadata a person asked for (pack's options, a batch manifest's `oci` table), checked before any
input is read by the rules the archive will be held to: one function, so that the command line and a manifest
refuse exactly the same values. A refusal names which of the asked values is wrong."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from imagepack.core.errors import ImagepackError, InvalidValueError, MetadataError
from imagepack.core.problems import Severity
from imagepack.formats.partitions import Firmware
from imagepack.oci.metadata.edits import build_metadata
from imagepack.oci.metadata.model import LaunchMode
from imagepack.oci.metadata.systems import OsName, check_system


class Asked(StrEnum):
    """Which asked value a refusal is about (named as a manifest's `oci` table names it)."""

    OS = "os"
    OS_VERSION = "os_version"
    LAUNCH_MODE = "launch_mode"
    LAUNCH_OPTIONS = "launch_options"


class RequestRefused(MetadataError):
    """A value asked for that the archive could not carry; `asked` says which."""

    def __init__(self, refused: ImagepackError, asked: Asked) -> None:
        super().__init__(
            refused.reason,
            subject=refused.subject,
            detail=refused.detail,
            code=refused.code,
            remedy=refused.remedy,
            value=refused.value,
        )
        self.shown.update(refused.shown)
        self.asked = asked


class RuleRefused(RequestRefused):
    """Values each readable, that together break a rule of the system's (a Windows edition, OCI's list under
    strict): what the archive would be refused for once made, refused before it is made."""


# The asked value a rule of the operating system refuses, by the rule's code; others are the version's.
_RULE_VALUE = {
    "metadata.windows-mode": Asked.LAUNCH_MODE,
    "metadata.unknown-os": Asked.OS,
    "metadata.os-empty": Asked.OS,
    "metadata.os-typo": Asked.OS,
}


def check_request(
    *,
    operating_system: str | None,
    operating_system_version: str | None,
    launch_mode: LaunchMode | None,
    overrides: Mapping[str, str],
    strict: bool,
    has_base: bool,
    os_unlisted: bool = False,
) -> None:
    """Refuse what `make_metadata` would refuse of these values whatever the disk says: each value read as the
    archive reads it (stand-ins for what is not given), then, when both the system and its version are given, the
    system's rules (a Windows release and edition, OCI's list under `strict`). Raises RequestRefused."""
    for asked, name, version, launch in (
        (Asked.OS, "Linux" if operating_system is None else operating_system, "1", {}),
        (Asked.OS_VERSION, "Linux", "1" if operating_system_version is None else operating_system_version, {}),
        (Asked.LAUNCH_OPTIONS, "Linux", "1", overrides),
    ):
        try:
            build_metadata(
                operating_system=name, operating_system_version=version, firmware=Firmware.BIOS, overrides=launch
            )
        except (InvalidValueError, MetadataError) as e:
            raise RequestRefused(e, asked) from None
    if operating_system is None or operating_system_version is None:
        return  # the rest comes from a metadata file or an OVF descriptor: checked when the archive is made
    mode = launch_mode or (None if has_base else LaunchMode.PARAVIRTUALIZED)  # a base file's own mode otherwise
    for problem in check_system(
        operating_system,
        operating_system_version,
        mode or LaunchMode.PARAVIRTUALIZED,
        strict=strict,
        os_name=OsName.AS_TYPED if os_unlisted else OsName.GIVEN,
    ):
        asked = _RULE_VALUE.get(problem.code, Asked.OS_VERSION)
        if problem.severity is Severity.ERROR and (mode is not None or asked is not Asked.LAUNCH_MODE):
            refused = MetadataError.from_problem(problem)
            raise RuleRefused(refused, asked)
