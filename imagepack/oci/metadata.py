"""The typed model of a .oci archive's image_metadata.json: a strict reader for untrusted bytes, a writer that keeps
every key it does not know, the launch-mode presets, and the checks that say whether OCI can use the combination."""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from imagepack.errors import MetadataError, UsageError
from imagepack.oci import oslist
from imagepack.partitions import Firmware

METADATA_NAME = "image_metadata.json"
METADATA_VERSION = 2
MAX_METADATA_BYTES = 1024 * 1024  # OCI's own files are about 1 KiB; capability data adds a few KiB
MAX_DEPTH = 64  # the format itself needs 4 levels, capability data inside an object a few more
_NOTHING: Mapping[str, str] = MappingProxyType({})
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class LaunchMode(StrEnum):
    NATIVE = "NATIVE"
    PARAVIRTUALIZED = "PARAVIRTUALIZED"
    EMULATED = "EMULATED"
    CUSTOM = "CUSTOM"


class NetworkType(StrEnum):
    E1000 = "E1000"
    VFIO = "VFIO"
    PARAVIRTUALIZED = "PARAVIRTUALIZED"
    ACCELERATEDPV = "ACCELERATEDPV"


class VolumeType(StrEnum):
    ISCSI = "ISCSI"
    SCSI = "SCSI"
    IDE = "IDE"
    VFIO = "VFIO"
    PARAVIRTUALIZED = "PARAVIRTUALIZED"


# Devices that only exist in one kind of mode: emulated hardware, or paravirtual and passthrough devices.
_EMULATED_DEVICES = frozenset({"E1000", "IDE", "SCSI"})
_PV_OR_PASSTHROUGH_DEVICES = frozenset({"VFIO", "PARAVIRTUALIZED", "ACCELERATEDPV"})


@dataclass
class LaunchOptions:
    """externalLaunchOptions. `extra` holds the keys this version does not know, written back unchanged."""

    firmware: Firmware
    network_type: NetworkType
    boot_volume_type: VolumeType
    remote_data_volume_type: VolumeType
    local_data_volume_type: VolumeType | None
    launch_options_source: LaunchMode
    pv_attachment_version: int | None
    pv_encryption_in_transit_enabled: bool = False
    consistent_volume_naming_enabled: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {spec.json_name: _json_value(getattr(self, spec.attr)) for spec in _LAUNCH_FIELDS}
        return _with_extra(out, self.extra)

    @property
    def volume_types(self) -> dict[str, VolumeType | None]:
        return {
            "bootVolumeType": self.boot_volume_type,
            "remoteDataVolumeType": self.remote_data_volume_type,
            "localDataVolumeType": self.local_data_volume_type,
        }


@dataclass
class ShapeCompatibility:
    """One entry of additionalMetadata.shapeCompatibilities; a constraint is (min, max) or None for no limit.

    Numbers keep the type they were read or parsed with (1 stays 1, 1.0 stays 1.0) so that a file round-trips.
    `ocpu_extra`/`memory_extra` keep unknown keys inside the constraint objects."""

    name: str
    ocpu: tuple[float, float] | None = None
    memory: tuple[float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    ocpu_extra: dict[str, Any] = field(default_factory=dict)
    memory_extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "internalShapeName": self.name,
            "ocpuConstraints": _constraint_json(self.ocpu, ("min", "max"), self.ocpu_extra),
            "memoryConstraints": _constraint_json(self.memory, ("minInGBs", "maxInGBs"), self.memory_extra),
        }
        return _with_extra(out, self.extra)

    def describe(self) -> str:
        """One line for people: 'VM.Standard.E4.Flex (OCPUs 1-64, memory 1-1024 GB)'."""
        limits = []
        if self.ocpu is not None:
            limits.append(f"OCPUs {_number_text(self.ocpu[0])}-{_number_text(self.ocpu[1])}")
        if self.memory is not None:
            limits.append(f"memory {_number_text(self.memory[0])}-{_number_text(self.memory[1])} GB")
        return f"{self.name} ({', '.join(limits)})" if limits else self.name


@dataclass
class ImageMetadata:
    """The whole file. Unknown keys are kept: `extra` at the top level, `additional_extra` inside additionalMetadata.

    `image_capability_data` stays what it was read as: a string of JSON (OCI's form), an object, or None.
    sourcePublicImageId is written when it was read (even as null) or when it has a value."""

    version: int
    launch: LaunchOptions
    image_capability_data: str | dict[str, Any] | None
    image_caps_format_version: str | None
    operating_system: str
    operating_system_version: str
    shapes: list[ShapeCompatibility] = field(default_factory=list)
    source_public_image_id: str | None = None
    has_source_public_image_id: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    additional_extra: dict[str, Any] = field(default_factory=dict)

    @property
    def launch_mode(self) -> LaunchMode:
        return self.launch.launch_options_source

    def capabilities(self) -> dict[str, Any] | None:
        """imageCapabilityData as an object, whichever form it is stored in."""
        data = self.image_capability_data
        if isinstance(data, str):
            parsed = _decode_json(data.encode("utf-8", "surrogatepass"), "imageCapabilityData")
            if not isinstance(parsed, dict):
                raise MetadataError(f"imageCapabilityData: holds {_json_type(parsed)}, not an object")
            return parsed
        return data

    def to_json(self) -> dict[str, Any]:
        """The file's object, keys in the order OCI writes them, then the unknown ones in the order they were read."""
        additional: dict[str, Any] = {}
        if self.has_source_public_image_id or self.source_public_image_id is not None:
            # before shapeCompatibilities, as in the templates derived from OCI's own exports
            additional["sourcePublicImageId"] = self.source_public_image_id
        additional["shapeCompatibilities"] = [shape.to_json() for shape in self.shapes]
        out: dict[str, Any] = {
            "version": self.version,
            "externalLaunchOptions": self.launch.to_json(),
            "imageCapabilityData": copy.deepcopy(self.image_capability_data),
            "imageCapsFormatVersion": self.image_caps_format_version,
            "operatingSystem": self.operating_system,
            "operatingSystemVersion": self.operating_system_version,
            "additionalMetadata": _with_extra(additional, self.additional_extra),
        }
        return _with_extra(out, self.extra)


# ---------------------------------------------------------------------------------------------------------------
# The launch option fields, once: JSON name, attribute, and how a value is read from a file or a command line.


@dataclass(frozen=True)
class _Field:
    json_name: str
    attr: str
    enum: type[StrEnum] | None = None
    nullable: bool = False
    boolean: bool = False


_LAUNCH_FIELDS: tuple[_Field, ...] = (
    _Field("firmware", "firmware", Firmware),
    _Field("networkType", "network_type", NetworkType),
    _Field("bootVolumeType", "boot_volume_type", VolumeType),
    _Field("remoteDataVolumeType", "remote_data_volume_type", VolumeType),
    _Field("localDataVolumeType", "local_data_volume_type", VolumeType, nullable=True),
    _Field("launchOptionsSource", "launch_options_source", LaunchMode),
    _Field("pvAttachmentVersion", "pv_attachment_version", nullable=True),
    _Field("pvEncryptionInTransitEnabled", "pv_encryption_in_transit_enabled", boolean=True),
    _Field("consistentVolumeNamingEnabled", "consistent_volume_naming_enabled", boolean=True),
)
_FIELD_BY_NAME = {spec.json_name: spec for spec in _LAUNCH_FIELDS}
# What `overrides` may name: every launch option but the source, which the launch mode decides.
OVERRIDE_KEYS: tuple[str, ...] = tuple(
    spec.json_name for spec in _LAUNCH_FIELDS if spec.json_name != "launchOptionsSource"
)
SET_KEYS: tuple[str, ...] = (
    "operatingSystem",
    "operatingSystemVersion",
    "launchMode",
    *OVERRIDE_KEYS,
    "imageCapsFormatVersion",
    "sourcePublicImageId",
)
PV_ATTACHMENT_VERSIONS = (1, 2)

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


# ---------------------------------------------------------------------------------------------------------------
# Reading untrusted bytes


class _Refused(Exception):
    """Raised from inside json.loads hooks; turned into a MetadataError with the label."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(f"key {_quote(key)} appears twice in one object; keep one")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number; write a finite number or null")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text[:40]} is out of range; write a smaller number")
    return value


_STRUCTURE_TOKENS = re.compile(r'\\.|["\[\]{}]', re.DOTALL)


def _too_deep(text: str) -> bool:
    """Whether arrays and objects nest deeper than MAX_DEPTH, found by one linear scan without recursion
    (json.loads itself recurses, and a megabyte of '[' would end in RecursionError)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    depth = 0
    in_string = False
    for match in _STRUCTURE_TOKENS.finditer(text):
        token = match[0]
        if in_string:
            in_string = token != '"'
        elif token == '"':
            in_string = True
        elif token in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif token in "]}":
            depth -= 1
    return False


def _unpaired_surrogate(value: Any) -> str | None:
    """A string (or key) holding a lone UTF-16 surrogate from a '\\udXXX' escape: it cannot be written as UTF-8."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            texts: list[str] = [item]
        elif isinstance(item, dict):
            texts = list(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
            continue
        else:
            continue
        for text in texts:
            if _has_surrogate(text):
                return text
    return None


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _decode_json(data: bytes, label: str) -> Any:
    """Strict JSON: bounded size and depth, strict UTF-8, no NaN or Infinity, no duplicate keys."""
    if len(data) > MAX_METADATA_BYTES:
        raise MetadataError(
            f"{label}: {len(data)} bytes, more than the {MAX_METADATA_BYTES} bytes (1 MiB) image metadata may have; "
            "this is not image metadata"
        )
    if data.startswith(b"\xef\xbb\xbf"):
        raise MetadataError(f"{label}: starts with a UTF-8 byte order mark; save it as UTF-8 without one")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MetadataError(f"{label}: not valid UTF-8 (byte {exc.start}); save it as UTF-8") from None
    if _too_deep(text):
        raise MetadataError(
            f"{label}: arrays and objects nest deeper than {MAX_DEPTH} levels; this is not image metadata"
        )
    try:
        doc = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant,
            parse_float=_finite_float,
        )
    except _Refused as exc:
        raise MetadataError(f"{label}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise MetadataError(f"{label}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError:  # Python's limit on the digits of an integer
        raise MetadataError(f"{label}: a number has too many digits; this is not image metadata") from None
    except RecursionError:  # _too_deep should have said so; kept so that no input can end in a traceback
        raise MetadataError(f"{label}: nested too deeply; this is not image metadata") from None
    bad = _unpaired_surrogate(doc)
    if bad is not None:
        raise MetadataError(
            f"{label}: the string {_quote(bad)} holds an unpaired UTF-16 surrogate escape; write real characters"
        )
    return doc


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Reader:
    """Turns the decoded document into the model, naming the exact place of the first thing that is wrong."""

    def __init__(self, label: str) -> None:
        self.label = label

    def fail(self, path: str, problem: str, fix: str | None = None) -> MetadataError:
        return MetadataError(f"{self.label}: {path} {problem}" + (f"; {fix}" if fix else ""))

    def wrong_type(self, path: str, value: Any, wanted: str) -> MetadataError:
        return self.fail(path, f"is {_json_type(value)}, not {wanted}", f"write {wanted} there")

    def obj(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.wrong_type(path, value, "an object")
        return value

    def required(self, obj: dict[str, Any], key: str, path: str, fix: str) -> Any:
        if key not in obj:
            raise self.fail(f"{path}.{key}" if path else key, "is missing", fix)
        return obj[key]

    def string(self, value: Any, path: str, *, nullable: bool = False) -> Any:
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            raise self.wrong_type(path, value, "a string or null" if nullable else "a string")
        return value

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.wrong_type(path, value, "true or false")
        return value

    def number(self, value: Any, path: str) -> float:
        if not _is_number(value):
            raise self.wrong_type(path, value, "a number")
        result: float = value
        return result

    def enum(self, value: Any, path: str, enum: type[StrEnum], *, nullable: bool = False) -> Any:
        allowed = _allowed_text(enum, nullable=nullable)
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            raise self.fail(path, f"is {_json_type(value)}, not one of the names it allows", f"use one of {allowed}")
        try:
            return enum(value)
        except ValueError:
            raise self.fail(path, f"is {_quote(value)}, not an allowed value", f"use one of {allowed}") from None

    def metadata(self, doc: Any) -> ImageMetadata:
        if not isinstance(doc, dict):
            raise MetadataError(
                f"{self.label}: the document is {_json_type(doc)}, not an object; "
                'image metadata is an object that starts {"version": 2, "externalLaunchOptions": ...'
            )
        version = self.required(doc, "version", "", f'add "version": {METADATA_VERSION}')
        if not isinstance(version, int) or isinstance(version, bool):
            raise self.wrong_type("version", version, "a number")
        if version != METADATA_VERSION:
            raise self.fail(
                "version",
                f"is {version}; imagepack reads version {METADATA_VERSION}, the only one OCI writes",
                f"rewrite the file as version {METADATA_VERSION}",
            )
        launch = self.launch_options(
            self.required(doc, "externalLaunchOptions", "", "add the launch options object"), "externalLaunchOptions"
        )
        caps = doc.get("imageCapabilityData")
        if isinstance(caps, str):
            parsed = _decode_json(caps.encode("utf-8"), f"{self.label}: imageCapabilityData")
            if not isinstance(parsed, dict):
                raise self.fail(
                    "imageCapabilityData",
                    f"holds {_json_type(parsed)}, not a JSON object",
                    'write null or a string like {"capabilities":{...}}',
                )
        elif caps is not None and not isinstance(caps, dict):
            raise self.wrong_type("imageCapabilityData", caps, "a string of JSON, an object, or null")
        caps_version = self.string(doc.get("imageCapsFormatVersion"), "imageCapsFormatVersion", nullable=True)
        operating_system = self.string(
            self.required(doc, "operatingSystem", "", 'add e.g. "operatingSystem": "Oracle Linux"'), "operatingSystem"
        )
        os_version = self.string(
            self.required(doc, "operatingSystemVersion", "", 'add e.g. "operatingSystemVersion": "8"'),
            "operatingSystemVersion",
        )
        additional = doc.get("additionalMetadata")
        additional = {} if additional is None else self.obj(additional, "additionalMetadata")
        raw_shapes = additional.get("shapeCompatibilities")
        if raw_shapes is not None and not isinstance(raw_shapes, list):
            raise self.wrong_type("additionalMetadata.shapeCompatibilities", raw_shapes, "an array")
        shapes = [
            self.shape(item, f"additionalMetadata.shapeCompatibilities[{index}]")
            for index, item in enumerate(raw_shapes or [])
        ]
        has_source = "sourcePublicImageId" in additional
        source = self.string(
            additional.get("sourcePublicImageId"), "additionalMetadata.sourcePublicImageId", nullable=True
        )
        known = {
            "version",
            "externalLaunchOptions",
            "imageCapabilityData",
            "imageCapsFormatVersion",
            "operatingSystem",
            "operatingSystemVersion",
            "additionalMetadata",
        }
        return ImageMetadata(
            version=version,
            launch=launch,
            image_capability_data=caps,
            image_caps_format_version=caps_version,
            operating_system=operating_system,
            operating_system_version=os_version,
            shapes=shapes,
            source_public_image_id=source,
            has_source_public_image_id=has_source,
            extra=_unknown(doc, known),
            additional_extra=_unknown(additional, {"shapeCompatibilities", "sourcePublicImageId"}),
        )

    def launch_options(self, value: Any, path: str) -> LaunchOptions:
        obj = self.obj(value, path)
        values: dict[str, Any] = {}
        for spec in _LAUNCH_FIELDS:
            where = f"{path}.{spec.json_name}"
            if spec.nullable or spec.boolean:
                # OCI always writes them; a hand-written file may leave them out: null / false then
                raw = obj.get(spec.json_name, False if spec.boolean else None)
            else:
                allowed = _allowed_text(spec.enum) if spec.enum else ""
                raw = self.required(obj, spec.json_name, path, f"add one of {allowed}")
            if spec.enum is not None:
                values[spec.attr] = self.enum(raw, where, spec.enum, nullable=spec.nullable)
            elif spec.boolean:
                values[spec.attr] = self.boolean(raw, where)
            elif raw is not None and (not isinstance(raw, int) or isinstance(raw, bool)):
                raise self.fail(where, f"is {_json_type(raw)}, not a whole number or null", "write 2 (or 1)")
            else:
                values[spec.attr] = raw
        return LaunchOptions(**values, extra=_unknown(obj, set(_FIELD_BY_NAME)))

    def shape(self, value: Any, path: str) -> ShapeCompatibility:
        obj = self.obj(value, path)
        name = self.string(
            self.required(obj, "internalShapeName", path, 'add e.g. "internalShapeName": "VM.Standard.E4.Flex"'),
            f"{path}.internalShapeName",
        )
        ocpu, ocpu_extra = self.constraint(obj.get("ocpuConstraints"), f"{path}.ocpuConstraints", ("min", "max"))
        memory, memory_extra = self.constraint(
            obj.get("memoryConstraints"), f"{path}.memoryConstraints", ("minInGBs", "maxInGBs")
        )
        return ShapeCompatibility(
            name=name,
            ocpu=ocpu,
            memory=memory,
            extra=_unknown(obj, {"internalShapeName", "ocpuConstraints", "memoryConstraints"}),
            ocpu_extra=ocpu_extra,
            memory_extra=memory_extra,
        )

    def constraint(
        self, value: Any, path: str, keys: tuple[str, str]
    ) -> tuple[tuple[float, float] | None, dict[str, Any]]:
        if value is None:
            return None, {}
        obj = self.obj(value, path)
        fix = f"give both {keys[0]} and {keys[1]}, or write null for no limit"
        low = self.number(self.required(obj, keys[0], path, fix), f"{path}.{keys[0]}")
        high = self.number(self.required(obj, keys[1], path, fix), f"{path}.{keys[1]}")
        return (low, high), _unknown(obj, set(keys))


def _unknown(obj: dict[str, Any], known: set[str]) -> dict[str, Any]:
    return {key: value for key, value in obj.items() if key not in known}


def load_metadata(data: bytes, *, label: str = METADATA_NAME) -> ImageMetadata:
    """Read image_metadata.json from untrusted bytes. Any problem is a MetadataError with one line
    '{label}: what is wrong; what to do'. Unknown keys are kept at every level; only version 2 is read."""
    return _Reader(label).metadata(_decode_json(bytes(data), label))


def dump_metadata(meta: ImageMetadata) -> bytes:
    """The file's bytes: UTF-8 JSON indented by 2, ending with a newline. load_metadata reads it back unchanged."""
    try:
        text = json.dumps(meta.to_json(), indent=2, ensure_ascii=False, allow_nan=False)
        data = (text + "\n").encode("utf-8")
    except (ValueError, TypeError) as exc:  # only reachable through values set in code, never through the reader
        raise MetadataError(f"{METADATA_NAME}: cannot be written: {exc}") from None
    if len(data) > MAX_METADATA_BYTES:
        raise MetadataError(
            f"{METADATA_NAME}: would be {len(data)} bytes, more than the 1 MiB limit; shorten the unknown keys "
            "or the capability data it carries"
        )
    return data


# ---------------------------------------------------------------------------------------------------------------
# Values from the command line (overrides, `meta set`)


def _json_value(value: Any) -> Any:
    return value.value if isinstance(value, StrEnum) else value


def _with_extra(known: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Known keys first; an unknown key never replaces a known one."""
    for key, value in extra.items():
        if key not in known:
            known[key] = copy.deepcopy(value)
    return known


def _constraint_json(limits: tuple[float, float] | None, keys: tuple[str, str], extra: dict[str, Any]) -> Any:
    if limits is None:
        return None
    return _with_extra({keys[0]: limits[0], keys[1]: limits[1]}, extra)


def _number_text(value: float) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _quote(value: object, limit: int = 60) -> str:
    """A value inside a one-line message: quoted, escapes for control characters, shortened."""
    text = json.dumps(value, ensure_ascii=False).encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 4] + '..."'


def _allowed_text(enum: type[StrEnum], *, nullable: bool = False) -> str:
    return ", ".join([member.value for member in enum] + (["null"] if nullable else []))


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NULL = {"null", "none"}


def _parse_field(spec: _Field, text: str) -> Any:
    """A launch option value typed by a person: names in any case, null for the nullable ones."""
    word = text.strip().casefold()
    shown = f"{spec.json_name}={_quote(text)}"
    if spec.nullable and word in _NULL:
        return None
    if spec.enum is not None:
        for member in spec.enum:
            if member.value.casefold() == word:
                return member
        allowed = _allowed_text(spec.enum, nullable=spec.nullable)
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


def _unknown_key(key: str, allowed: Sequence[str]) -> UsageError:
    return UsageError(f"unknown metadata key {_quote(key)}; use one of {', '.join(allowed)}")


def _parse_overrides(overrides: Mapping[str, str]) -> dict[str, Any]:
    """Launch option overrides by attribute name, each value checked."""
    parsed: dict[str, Any] = {}
    for key, text in overrides.items():
        if key not in OVERRIDE_KEYS:
            raise _unknown_key(key, OVERRIDE_KEYS)
        spec = _FIELD_BY_NAME[key]
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
        missing = [key for key in CUSTOM_REQUIRED if _FIELD_BY_NAME[key].attr not in parsed]
        if missing:
            raise UsageError(
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
    if _has_surrogate(text) or any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
        raise MetadataError(f"{key}={_quote(text)}: holds control characters or undecodable bytes; type plain text")


def set_values(meta: ImageMetadata, assignments: Mapping[str, str]) -> ImageMetadata:
    """A copy of `meta` with values changed, for `imagepack meta set ARCHIVE KEY=VALUE...`.

    Keys are SET_KEYS. launchMode is applied first whatever its place: it sets that mode's preset (keeping firmware,
    the booleans and unknown keys; CUSTOM keeps every value), and the other launch options given then override it.
    'null' clears the nullable values (localDataVolumeType, pvAttachmentVersion, imageCapsFormatVersion,
    sourcePublicImageId). An unknown key is a UsageError; a value not allowed is a MetadataError."""
    for key in assignments:
        if key not in SET_KEYS:
            raise _unknown_key(key, SET_KEYS)
    updated = copy.deepcopy(meta)
    if "launchMode" in assignments:
        text = assignments["launchMode"]
        mode = next((m for m in LaunchMode if m.value.casefold() == text.strip().casefold()), None)
        if mode is None:
            raise MetadataError(f"launchMode={_quote(text)}: not a launch mode; use one of {_allowed_text(LaunchMode)}")
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
    elif _UUID.fullmatch(text.strip()):
        meta.image_caps_format_version = text.strip().lower()
    else:
        raise MetadataError(
            f"imageCapsFormatVersion={_quote(text)}: not a capability schema UUID; "
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
            f"sourcePublicImageId={_quote(text)}: not an image OCID; use one like ocid1.image.oc1.phx.aaaa..., or null"
        )
    meta.has_source_public_image_id = True


def parse_assignments(pairs: Sequence[str]) -> dict[str, str]:
    """'KEY=VALUE' arguments as a dict; the value is everything after the first '=' and may be empty."""
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or key != key.strip():
            raise UsageError(f"{_quote(pair)}: expected KEY=VALUE, e.g. operatingSystemVersion=9")
        if key in values:
            raise UsageError(f"{key} is given twice; give each key once")
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
        raise UsageError(f"shape {_quote(text)}: expected {SHAPE_FORM}")
    limits: list[tuple[float, float] | None] = []
    for what, low_key, high_key in (("OCPU", "ocpu_min", "ocpu_max"), ("memory", "mem_min", "mem_max")):
        if match[low_key] is None:
            limits.append(None)
            continue
        low, high = _number(match[low_key]), _number(match[high_key])
        if low > high or high == 0:
            raise UsageError(
                f"shape {_quote(text)}: the {what} range {match[low_key]}-{match[high_key]} is empty; "
                f"write MIN-MAX with MIN <= MAX, e.g. {SHAPE_EXAMPLE}"
            )
        limits.append((low, high))
    return ShapeCompatibility(name=match["name"], ocpu=limits[0], memory=limits[1])


# ---------------------------------------------------------------------------------------------------------------
# Whether OCI can use it


# Capability names that describe a launch option; their "values" must include the option's value.
_CAPABILITY_FIELDS = {
    "Compute.Firmware": "firmware",
    "Compute.LaunchMode": "launchOptionsSource",
    "Network.AttachmentType": "networkType",
    "Storage.BootVolumeType": "bootVolumeType",
    "Storage.RemoteDataVolumeType": "remoteDataVolumeType",
    "Storage.LocalDataVolumeType": "localDataVolumeType",
    "Storage.ParaVirtualization.AttachmentVersion": "pvAttachmentVersion",
    "Storage.ParaVirtualization.EncryptionInTransit": "pvEncryptionInTransitEnabled",
    "Storage.ConsistentVolumeNaming": "consistentVolumeNamingEnabled",
}


def shape_architecture(name: str) -> str | None:
    """'arm', 'amd' or 'intel' for a public VM shape name whose processor it tells; None otherwise (internal names)."""
    parts = name.split(".")
    if len(parts) < 3 or parts[0] != "VM":
        return None
    family, model = parts[1], parts[2]
    if family in ("Standard", "DenseIO", "Optimized"):
        if re.fullmatch(r"A\d+", model) or model == "Ampere":
            return "arm"
        if re.fullmatch(r"E\d+", model) or model == "AMD":
            return "amd"
        if model == "Intel":
            return "intel"
    if re.fullmatch(r"(?:Standard[123]|DenseIO[12]|Optimized3)", family):
        return "intel"
    return None


def check_metadata(meta: ImageMetadata, *, strict: bool = False) -> tuple[list[str], list[str]]:
    """(errors, warnings) about what OCI would refuse or run badly; each message ends with what to do.

    Errors: a mode with devices it cannot have (NATIVE or PARAVIRTUALIZED with E1000, IDE or SCSI; EMULATED with
    VFIO, PARAVIRTUALIZED or ACCELERATEDPV), pvAttachmentVersion other than 1, 2 or null, Windows or an Arm or AMD
    shape in another mode than PARAVIRTUALIZED, an Arm shape with BIOS or with Windows, Arm and x86 shapes together,
    an empty shape range, an empty operating system or version.

    Windows rule: operatingSystem and operatingSystemVersion together must name exactly one Windows Server release
    (2012, 2012 R2, 2016, 2019, 2022) and exactly one edition (Standard, Datacenter), because OCI licenses the image
    by them: "Windows" + "Server 2019 Standard" and "Windows Server" + "2019 Datacenter" pass, "Windows" + "2019"
    does not.

    Warnings (errors when `strict`): a system not on OCI's list (oslist), with the closest known name for a typo.
    A note (a warning starting with NOTE, never an error): a release of a listed system newer than the list, such
    as Oracle Linux 10 or Windows Server 2025. Warnings only: EMULATED with UEFI_64,
    attachment version or in-transit encryption without paravirtualized volumes, capability data that does not allow
    the launch options, a capability schema version that is not a UUID, a shape listed twice."""
    errors: list[str] = []
    warnings: list[str] = []
    launch = meta.launch
    mode = launch.launch_options_source
    devices = {"networkType": launch.network_type, **launch.volume_types}

    if meta.version != METADATA_VERSION:
        errors.append(f"version is {meta.version}; set it to {METADATA_VERSION}")
    if mode in (LaunchMode.NATIVE, LaunchMode.PARAVIRTUALIZED):
        for key, value in devices.items():
            if value is not None and value.value in _EMULATED_DEVICES:
                better = "VFIO" if key == "networkType" else "PARAVIRTUALIZED"
                errors.append(
                    f"launchOptionsSource {mode} cannot use the emulated device {key} {value}; "
                    f"set {key}={better}, or launchMode=EMULATED"
                )
    elif mode is LaunchMode.EMULATED:
        for key, value in devices.items():
            if value is not None and value.value in _PV_OR_PASSTHROUGH_DEVICES:
                better = "E1000" if key == "networkType" else "IDE"
                errors.append(
                    f"launchOptionsSource EMULATED has no paravirtual or passthrough devices, but {key} is {value}; "
                    f"set {key}={better}, or launchMode=PARAVIRTUALIZED"
                )
        if launch.firmware is Firmware.UEFI_64:
            warnings.append(
                "launchOptionsSource EMULATED with firmware UEFI_64: emulated images normally boot with BIOS; "
                "set firmware=BIOS if the disk has a BIOS boot loader, or use launchMode=PARAVIRTUALIZED"
            )

    pv_volumes = [key for key, value in launch.volume_types.items() if value is VolumeType.PARAVIRTUALIZED]
    pv_version = launch.pv_attachment_version
    if pv_version is not None and pv_version not in PV_ATTACHMENT_VERSIONS:
        errors.append(f"pvAttachmentVersion is {pv_version}; OCI knows 1 and 2: set pvAttachmentVersion=2")
    elif pv_version is None and pv_volumes:
        verb = "is" if len(pv_volumes) == 1 else "are"
        warnings.append(
            f"pvAttachmentVersion is null but {', '.join(pv_volumes)} {verb} PARAVIRTUALIZED; set pvAttachmentVersion=2"
        )
    elif pv_version is not None and not pv_volumes:
        warnings.append(
            f"pvAttachmentVersion {pv_version} has no effect without a PARAVIRTUALIZED volume; "
            "set pvAttachmentVersion=null"
        )
    if launch.pv_encryption_in_transit_enabled and not ({"bootVolumeType", "remoteDataVolumeType"} & set(pv_volumes)):
        warnings.append(
            "pvEncryptionInTransitEnabled is true but no boot or remote data volume is PARAVIRTUALIZED, so there is "
            "nothing to encrypt; set pvEncryptionInTransitEnabled=false"
        )

    _check_system(meta, strict, errors, warnings)
    _check_shapes(meta, errors, warnings)
    _check_capabilities(meta, warnings)
    caps_version = meta.image_caps_format_version
    if caps_version is not None and not _UUID.fullmatch(caps_version):
        warnings.append(
            f"imageCapsFormatVersion {_quote(caps_version)} is not a UUID as OCI writes it; "
            "set imageCapsFormatVersion=null unless it comes from OCI"
        )
    return errors, warnings


def _check_system(meta: ImageMetadata, strict: bool, errors: list[str], warnings: list[str]) -> None:
    name, version = meta.operating_system, meta.operating_system_version
    if not name.strip():
        errors.append("operatingSystem is empty; set it, e.g. operatingSystem='Oracle Linux'")
        return
    if not version.strip():
        errors.append(f"operatingSystemVersion is empty; set the version of {name}, e.g. operatingSystemVersion=8")
        return
    if not oslist.is_windows(name):
        _check_listed(name, version, strict, errors, warnings)
        return
    if meta.launch_mode is not LaunchMode.PARAVIRTUALIZED:
        errors.append(
            f"Windows images import in PARAVIRTUALIZED mode only, not {meta.launch_mode}; "
            "set launchMode=PARAVIRTUALIZED"
        )
    text = f"{name} {version}"
    releases, editions = oslist.windows_releases(text), oslist.windows_editions(text)
    example = "e.g. operatingSystem=Windows operatingSystemVersion='Server 2019 Standard'"
    if len(releases) != 1:
        problem = "names no Windows Server release" if not releases else f"names {len(releases)} releases"
        errors.append(
            f"Windows {_quote(version)} {problem}; OCI licenses Windows by release and edition: name the one the "
            f"image holds ({', '.join(oslist.WINDOWS_RELEASES)}), {example}"
        )
    if len(editions) != 1:
        problem = "names no edition" if not editions else "names both editions"
        errors.append(
            f"Windows {_quote(version)} {problem}; OCI licenses Windows by release and edition: name the one the "
            f"image holds (Standard or Datacenter), {example}"
        )
    if len(releases) == 1 and len(editions) == 1:
        _check_listed(name, version, strict, errors, warnings)


NOTE = "note: "  # starts a warning that only informs: OCI may well accept the value, and --strict lets it pass


def _check_listed(name: str, version: str, strict: bool, errors: list[str], warnings: list[str]) -> None:
    """Whether the system is on OCI's list (oslist): a release newer than the list is a note, since the list ages
    and OCI adds releases; an older or skipped release, or a name the list does not have, is a warning."""
    found = oslist.standing(name, version)
    if found.supported:
        return
    shown = f"{_short(name)} {_short(version)}"
    if found.system is not None and found.newer:
        warnings.append(
            f"{NOTE}{shown} is newer than the releases on OCI's list this imagepack knows "
            f"({found.system.releases()}); the import may still accept it"
        )
        return
    unsupported = "or expect no support from Oracle"
    if found.system is not None:
        message = f"{shown} is not on OCI's list ({found.system.describe()}); use a listed release, {unsupported}"
    elif (suggestion := oslist.closest_name(name)) is not None:
        message = (
            f"operatingSystem {_quote(name, 32)} is not on OCI's list; did you mean {suggestion}? "
            f"Fix the name, {unsupported}"
        )
    else:
        message = (
            f"operatingSystem {_quote(name, 32)} is not on OCI's list ({oslist.family_names()}); "
            f"check the spelling, {unsupported}"
        )
    (errors if strict else warnings).append(message)


def _short(text: str, limit: int = 40) -> str:
    """A value typed by a person, inside a message that must stay one short line."""
    text = "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_shapes(meta: ImageMetadata, errors: list[str], warnings: list[str]) -> None:
    seen: set[str] = set()
    arm: list[str] = []
    x86: list[str] = []
    windows = oslist.is_windows(meta.operating_system)
    for shape in meta.shapes:
        if not shape.name.strip():
            errors.append("a shape has an empty internalShapeName; remove it or give the shape's name")
            continue
        if shape.name in seen:
            warnings.append(f"shape {shape.name} is listed twice; remove one")
        seen.add(shape.name)
        for what, limits, keys in (
            ("ocpuConstraints", shape.ocpu, "min-max"),
            ("memoryConstraints", shape.memory, "minInGBs-maxInGBs"),
        ):
            if limits is not None and (limits[0] < 0 or limits[0] > limits[1]):
                errors.append(
                    f"shape {shape.name}: {what} {_number_text(limits[0])}-{_number_text(limits[1])} is an empty "
                    f"range; give {keys} with 0 <= min <= max, or no constraint"
                )
        family = shape_architecture(shape.name)
        if family == "arm":
            arm.append(shape.name)
            if meta.launch.firmware is Firmware.BIOS:
                errors.append(f"shape {shape.name} is Arm, which boots with UEFI only; set firmware=UEFI_64")
            if windows:
                errors.append(f"shape {shape.name} is Arm and Windows Server runs on x86 only; remove the shape")
        elif family is not None:
            x86.append(shape.name)
        if family in ("arm", "amd") and meta.launch_mode is not LaunchMode.PARAVIRTUALIZED:
            errors.append(
                f"shape {shape.name} ({'Arm' if family == 'arm' else 'AMD'}) supports PARAVIRTUALIZED mode only, "
                f"not {meta.launch_mode}; set launchMode=PARAVIRTUALIZED or remove the shape"
            )
    if arm and x86:
        errors.append(
            f"the shapes mix Arm ({', '.join(arm)}) and x86 ({', '.join(x86)}), but an image is built for one "
            "processor architecture; remove the shapes of the other one"
        )


def _check_capabilities(meta: ImageMetadata, warnings: list[str]) -> None:
    try:
        data = meta.capabilities()
    except MetadataError as exc:
        warnings.append(f"{exc}; set imageCapabilityData to null or to the capabilities OCI exported")
        return
    if data is None:
        return
    capabilities = data.get("capabilities")
    if not isinstance(capabilities, dict):
        warnings.append(
            'imageCapabilityData has no "capabilities" object, so OCI may refuse it; '
            "set it to null or to the capabilities OCI exported"
        )
        return
    options = meta.launch.to_json()
    for name, key in _CAPABILITY_FIELDS.items():
        descriptor = capabilities.get(name)
        values = descriptor.get("values") if isinstance(descriptor, dict) else None
        value = options.get(key)
        if not isinstance(values, list) or value is None or value in values:
            continue
        shown = ", ".join(str(_json_value(v)).lower() if isinstance(v, bool) else str(v) for v in values)
        warnings.append(
            f"imageCapabilityData allows {name} {shown or 'nothing'}, but {key} is {_quote(value)}; "
            f"set {key} to one of those, or imageCapabilityData to match"
        )
