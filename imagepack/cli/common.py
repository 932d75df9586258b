"""Option parsing shared by commands: formats, sizes and the safety policy."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from imagepack.errors import InvalidValueError
from imagepack.formats import DEFAULT_MAX_SIZE, ImageFormat, SafetyPolicy, parse_format
from imagepack.formats.base import VhdSize
from imagepack.partitions import Firmware
from imagepack.sizes import parse_size

if TYPE_CHECKING:
    from imagepack.oci.pack import MetadataRequest

E = TypeVar("E", bound=Enum)


def parse_source_format(name: str | None) -> ImageFormat | None:
    return parse_format(name) if name else None


def parse_policy(max_size: str | None, *, allow_backing: bool = False, vhd_size: str | None = None) -> SafetyPolicy:
    return SafetyPolicy(
        max_size=parse_size(max_size) if max_size else DEFAULT_MAX_SIZE,
        allow_backing=allow_backing,
        vhd_size=_enum(VhdSize, vhd_size, "--vhd-size") or VhdSize.CURRENT,
    )


def metadata_request(
    *,
    os_name: str | None,
    os_version: str | None,
    launch_mode: str | None,
    firmware: str | None,
    launch_options: list[str],
    shapes: list[str],
    metadata: Path | None,
    strict: bool,
) -> MetadataRequest:
    """The pack options of `pack` and of `convert` to a .oci target, as one request."""
    from imagepack.oci.metadata import LaunchMode, parse_assignments, parse_shape
    from imagepack.oci.pack import MetadataRequest

    return MetadataRequest(
        operating_system=os_name,
        operating_system_version=os_version,
        launch_mode=_enum(LaunchMode, launch_mode, "--launch-mode"),
        firmware=_enum(Firmware, firmware, "--firmware"),
        overrides=parse_assignments(launch_options),
        shapes=[parse_shape(text) for text in shapes],
        base=metadata,
        strict=strict,
    )


def _enum(kind: type[E], value: str | None, option: str) -> E | None:
    if value is None:
        return None
    for member in kind:
        if member.value.lower() == value.lower():
            return member
    allowed = " | ".join(m.value for m in kind)
    raise InvalidValueError(f"{option} {value}: use one of {allowed}")
