"""Metadata from what a person typed: the launch-mode presets (SPEC §2), build_metadata for a new archive,
set_values for `meta set` with the keys it takes (SET_KEYS), and the KEY=VALUE and shape texts of the command line."""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from imagepack.core.errors import InvalidValueError, MetadataError
from imagepack.formats.partitions import Firmware
from imagepack.oci.metadata import oslist
from imagepack.oci.metadata.codec import has_surrogate, quote
from imagepack.oci.metadata.model import (
    CAPS_FORMAT_VERSION,
    FIELD_BY_NAME,
    LAUNCH_FIELDS,
    METADATA_VERSION,
    PV_ATTACHMENT_VERSIONS,
    ImageMetadata,
    LaunchField,
    LaunchMode,
    LaunchOptions,
    NetworkType,
    ShapeCompatibility,
    VolumeType,
    allowed_text,
)

_NOTHING: Mapping[str, str] = MappingProxyType({})

# What `overrides` may name: every launch option but the source, which the launch mode decides.
OVERRIDE_KEYS: tuple[str, ...] = tuple(
    spec.json_name for spec in LAUNCH_FIELDS if spec.json_name != "launchOptionsSource"
)
# What `meta set` takes, in the order a help text should list them.
SET_KEYS: tuple[str, ...] = (
    "operatingSystem",
    "operatingSystemVersion",
    "launchMode",
    *OVERRIDE_KEYS,
    "imageCapsFormatVersion",
    "sourcePublicImageId",
)

# network, boot, remote data, local data, pvAttachmentVersion (SPEC §2 table)
_PRESETS: dict[LaunchMode, tuple[NetworkType, VolumeType, VolumeType, VolumeType | None, int | None]] = {
    LaunchMode.NATIVE: (NetworkType.VFIO, VolumeType.ISCSI, VolumeType.PARAVIRTUALIZED, VolumeType.VFIO, 1),
    LaunchMode.PARAVIRTUALIZED: (
        NetworkType.PARAVIRTUALIZED,
        VolumeType.PARAVIRTUALIZED,
        VolumeType.PARAVIRTUALIZED,
        VolumeType.PARAVIRTUALIZED,
        2,
    ),
    LaunchMode.EMULATED: (NetworkType.E1000, VolumeType.IDE, VolumeType.IDE, None, None),
}
# CUSTOM has no preset: every one of these must be given.
CUSTOM_REQUIRED: tuple[str, ...] = tuple(key for key in OVERRIDE_KEYS if key != "firmware")


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NULL = {"null", "none"}


def _parse_field(spec: LaunchField, text: str) -> Any:
    """A launch option value typed by a person: names in any case, null for the nullable ones."""
    word = text.strip().casefold()
    shown = f"{spec.json_name}={quote(text)}"
    if spec.nullable and word in _NULL:
        return None
    if spec.enum is not None:
        for member in spec.enum:
            if member.value.casefold() == word:
                return member
        allowed = allowed_text(spec.enum, nullable=spec.nullable)
        raise MetadataError(f"{shown}: not an allowed value; use one of {allowed}")
    if spec.boolean:
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise MetadataError(f"{shown}: not a boolean; use true or false")
    try:
        number = int(word)
    except ValueError:
        number = None
    if number not in PV_ATTACHMENT_VERSIONS:
        raise MetadataError(f"{shown}: not an attachment version; use 1, 2 or null")
    return number


def _unknown_key(key: str, allowed: Sequence[str]) -> InvalidValueError:
    folded = {name.casefold(): name for name in allowed}
    close = difflib.get_close_matches(key.casefold(), list(folded), n=1, cutoff=0.7)
    meant = f"did you mean {folded[close[0]]}? " if close else ""
    return InvalidValueError(f"unknown metadata key {quote(key)}; {meant}use one of {', '.join(allowed)}")


def _keys_named(assignments: Mapping[str, str], allowed: Sequence[str]) -> dict[str, str]:
    """`assignments` with each key as OCI spells it, the key typed in any case (operatingsystem is
    operatingSystem); an unknown key is refused with the one it most likely meant, a key given twice refused."""
    folded = {name.casefold(): name for name in allowed}
    named: dict[str, str] = {}
    for key, value in assignments.items():
        name = folded.get(key.casefold())
        if name is None:
            raise _unknown_key(key, allowed)
        if name in named:
            raise InvalidValueError(f"{name} is given twice; give each key once")
        named[name] = value
    return named


def _parse_overrides(overrides: Mapping[str, str]) -> dict[str, Any]:
    """Launch option overrides by attribute name, each value checked."""
    parsed: dict[str, Any] = {}
    for key, text in _keys_named(overrides, OVERRIDE_KEYS).items():
        spec = FIELD_BY_NAME[key]
        parsed[spec.attr] = _parse_field(spec, text)
    return parsed


def launch_options_for(mode: LaunchMode, firmware: Firmware, overrides: Mapping[str, str] = _NOTHING) -> LaunchOptions:
    """The launch options of a mode (SPEC §2 table), then `overrides` (JSON names, values as typed) on top.

    The booleans start false. CUSTOM has no preset: every key of CUSTOM_REQUIRED must be in `overrides`."""
    parsed = _parse_overrides(overrides)
    values: dict[str, Any] = {
        "firmware": firmware,
        "launch_options_source": mode,
        "pv_encryption_in_transit_enabled": False,
        "consistent_volume_naming_enabled": False,
    }
    if mode is LaunchMode.CUSTOM:
        missing = [key for key in CUSTOM_REQUIRED if FIELD_BY_NAME[key].attr not in parsed]
        if missing:
            raise InvalidValueError(
                f"launch mode CUSTOM has no preset and needs a value for every launch option; missing: "
                f"{', '.join(missing)}; give them as KEY=VALUE, or choose NATIVE, PARAVIRTUALIZED or EMULATED"
            )
    else:
        network, boot, remote, local, pv_version = _PRESETS[mode]
        values.update(
            network_type=network,
            boot_volume_type=boot,
            remote_data_volume_type=remote,
            local_data_volume_type=local,
            pv_attachment_version=pv_version,
        )
    values.update(parsed)
    return LaunchOptions(**values)


def _switch_mode(current: LaunchOptions, mode: LaunchMode, firmware: Firmware) -> LaunchOptions:
    """Existing launch options moved to another mode: the mode's preset for devices and attachment version, the
    booleans and unknown keys kept (in-transit encryption is turned off for EMULATED, which has no PV volumes).
    CUSTOM keeps every value and only changes the source."""
    if mode is LaunchMode.CUSTOM:
        return replace(current, launch_options_source=mode, firmware=firmware, extra=copy.deepcopy(current.extra))
    network, boot, remote, local, pv_version = _PRESETS[mode]
    return replace(
        current,
        firmware=firmware,
        network_type=network,
        boot_volume_type=boot,
        remote_data_volume_type=remote,
        local_data_volume_type=local,
        launch_options_source=mode,
        pv_attachment_version=pv_version,
        pv_encryption_in_transit_enabled=current.pv_encryption_in_transit_enabled and mode is not LaunchMode.EMULATED,
        extra=copy.deepcopy(current.extra),
    )


def build_metadata(
    *,
    operating_system: str,
    operating_system_version: str,
    firmware: Firmware,
    launch_mode: LaunchMode | None = None,
    overrides: Mapping[str, str] = _NOTHING,
    shapes: Sequence[ShapeCompatibility] = (),
    base: ImageMetadata | None = None,
) -> ImageMetadata:
    """Metadata for a new archive.

    Without `base`: the preset of `launch_mode` (PARAVIRTUALIZED when None) with `firmware` and `overrides`.
    With `base` (a user's --metadata file): everything it holds is kept — unknown keys, capability data,
    sourcePublicImageId, its shapes unless `shapes` is given — and the arguments replace its fields. Its launch
    options are kept when `launch_mode` is None or the base's own mode; another mode applies that mode's preset
    (keeping the booleans), and CUSTOM keeps the base's values. `firmware` and `overrides` are applied last.
    """
    _check_text("operatingSystem", operating_system)
    _check_text("operatingSystemVersion", operating_system_version)
    operating_system = oslist.canonical_name(operating_system)
    shape_list = [copy.deepcopy(shape) for shape in shapes]
    if base is None:
        launch = launch_options_for(launch_mode or LaunchMode.PARAVIRTUALIZED, firmware, overrides)
        return ImageMetadata(
            version=METADATA_VERSION,
            launch=launch,
            image_capability_data=None,
            image_caps_format_version=None,
            operating_system=operating_system,
            operating_system_version=operating_system_version,
            shapes=shape_list,
        )
    meta = copy.deepcopy(base)
    if launch_mode is None or launch_mode is base.launch_mode:
        launch = replace(meta.launch, firmware=firmware)
    else:
        launch = _switch_mode(meta.launch, launch_mode, firmware)
    meta.launch = replace(launch, **_parse_overrides(overrides))
    meta.version = METADATA_VERSION
    meta.operating_system = operating_system
    meta.operating_system_version = operating_system_version
    if shape_list:
        meta.shapes = shape_list
    return meta


def _check_text(key: str, text: str) -> None:
    if not text.strip():
        raise MetadataError(f"{key} is empty; give a value, e.g. {key}={'8' if 'Version' in key else 'Oracle Linux'}")
    if has_surrogate(text) or any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
        raise MetadataError(f"{key}={quote(text)}: holds control characters or undecodable bytes; type plain text")


def set_values(meta: ImageMetadata, assignments: Mapping[str, str]) -> ImageMetadata:
    """A copy of `meta` with values changed, for `imagepack meta set ARCHIVE KEY=VALUE...`.

    Keys are SET_KEYS. launchMode is applied first whatever its place: it sets that mode's preset (keeping firmware,
    the booleans and unknown keys; CUSTOM keeps every value), and the other launch options given then override it.
    'null' clears the nullable values (localDataVolumeType, pvAttachmentVersion, imageCapsFormatVersion,
    sourcePublicImageId). An unknown key is a InvalidValueError; a value not allowed is a MetadataError."""
    assignments = _keys_named(assignments, SET_KEYS)
    updated = copy.deepcopy(meta)
    if "launchMode" in assignments:
        text = assignments["launchMode"]
        mode = next((m for m in LaunchMode if m.value.casefold() == text.strip().casefold()), None)
        if mode is None:
            raise MetadataError(f"launchMode={quote(text)}: not a launch mode; use one of {allowed_text(LaunchMode)}")
        updated.launch = _switch_mode(updated.launch, mode, updated.launch.firmware)
    launch_changes = _parse_overrides({key: value for key, value in assignments.items() if key in OVERRIDE_KEYS})
    updated.launch = replace(updated.launch, **launch_changes)
    setters: dict[str, Callable[[str], None]] = {
        "operatingSystem": lambda text: _set_os(updated, "operating_system", "operatingSystem", text),
        "operatingSystemVersion": lambda text: _set_os(
            updated, "operating_system_version", "operatingSystemVersion", text
        ),
        "imageCapsFormatVersion": lambda text: _set_caps_version(updated, text),
        "sourcePublicImageId": lambda text: _set_source_image(updated, text),
    }
    for key, text in assignments.items():
        if key in setters:
            setters[key](text)
    return updated


def _set_os(meta: ImageMetadata, attr: str, key: str, text: str) -> None:
    _check_text(key, text)
    value = text.strip()
    setattr(meta, attr, oslist.canonical_name(value) if key == "operatingSystem" else value)


def _set_caps_version(meta: ImageMetadata, text: str) -> None:
    if text.strip().casefold() in _NULL:
        meta.image_caps_format_version = None
    elif CAPS_FORMAT_VERSION.fullmatch(text.strip()):
        meta.image_caps_format_version = text.strip().lower()
    else:
        raise MetadataError(
            f"imageCapsFormatVersion={quote(text)}: not a capability schema UUID; "
            "use e.g. 23cfd738-ad9c-4f56-9281-67be6c8cd14c, or null"
        )


def _set_source_image(meta: ImageMetadata, text: str) -> None:
    value = text.strip()
    if value.casefold() in _NULL:
        meta.source_public_image_id = None
    elif re.fullmatch(r"ocid1\.image\.[a-z0-9]+\.[a-z0-9.-]+", value):
        meta.source_public_image_id = value
    else:
        raise MetadataError(
            f"sourcePublicImageId={quote(text)}: not an image OCID; use one like ocid1.image.oc1.phx.aaaa..., or null"
        )
    meta.has_source_public_image_id = True


def parse_assignments(pairs: Sequence[str]) -> dict[str, str]:
    """'KEY=VALUE' arguments as a dict; the value is everything after the first '=' and may be empty."""
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or key != key.strip():
            raise InvalidValueError(f"{quote(pair)}: expected KEY=VALUE, e.g. operatingSystemVersion=9")
        if key in values:
            raise InvalidValueError(f"{key} is given twice; give each key once")
        values[key] = value
    return values


_NUMBER = r"\d+(?:\.\d+)?"
_SHAPE_TEXT = re.compile(
    rf"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)"
    rf"(?::(?P<ocpu_min>{_NUMBER})-(?P<ocpu_max>{_NUMBER})(?::(?P<mem_min>{_NUMBER})-(?P<mem_max>{_NUMBER}))?)?"
)
SHAPE_EXAMPLE = "VM.Standard.E4.Flex:1-64:1-1024"
SHAPE_FORM = f"NAME[:OCPU_MIN-OCPU_MAX[:MEMORY_MIN_GB-MEMORY_MAX_GB]], e.g. {SHAPE_EXAMPLE}"


def _number(text: str) -> float:
    return float(text) if "." in text else int(text)


def parse_shape(text: str) -> ShapeCompatibility:
    """A shape as typed on the command line: 'VM.Standard.E4.Flex', 'VM.Standard.E4.Flex:1-64:1-1024'."""
    match = _SHAPE_TEXT.fullmatch(text.strip())
    if match is None:
        raise InvalidValueError(f"shape {quote(text)}: expected {SHAPE_FORM}")
    limits: list[tuple[float, float] | None] = []
    for what, low_key, high_key in (("OCPU", "ocpu_min", "ocpu_max"), ("memory", "mem_min", "mem_max")):
        if match[low_key] is None:
            limits.append(None)
            continue
        low, high = _number(match[low_key]), _number(match[high_key])
        if low > high or high == 0:
            raise InvalidValueError(
                f"shape {quote(text)}: the {what} range {match[low_key]}-{match[high_key]} is empty; "
                f"write MIN-MAX with MIN <= MAX, e.g. {SHAPE_EXAMPLE}"
            )
        limits.append((low, high))
    return ShapeCompatibility(name=match["name"], ocpu=limits[0], memory=limits[1])
