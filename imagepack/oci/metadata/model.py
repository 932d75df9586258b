"""The typed model of a .oci archive's image_metadata.json: its enums and dataclasses, each of which writes itself
back as JSON with every key it does not know kept in place."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from imagepack.core.errors import MetadataError
from imagepack.formats.partitions import Firmware
from imagepack.oci.metadata.codec import JsonLimits, decode_json, json_type

METADATA_NAME = "image_metadata.json"
METADATA_VERSION = 2
MAX_METADATA_BYTES = 1024 * 1024  # OCI's own files are about 1 KiB; capability data adds a few KiB
MAX_DEPTH = 64  # the format itself needs 4 levels, capability data inside an object a few more
METADATA_JSON = JsonLimits(MAX_METADATA_BYTES, MAX_DEPTH, "image metadata")
PV_ATTACHMENT_VERSIONS = (1, 2)
CAPS_FORMAT_VERSION = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


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
        out: dict[str, Any] = {spec.json_name: json_value(getattr(self, spec.attr)) for spec in LAUNCH_FIELDS}
        return with_extra(out, self.extra)

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
        return with_extra(out, self.extra)

    def describe(self) -> str:
        """One line for people: 'VM.Standard.E4.Flex (OCPUs 1-64, memory 1-1024 GB)'."""
        limits = []
        if self.ocpu is not None:
            limits.append(f"OCPUs {number_text(self.ocpu[0])}-{number_text(self.ocpu[1])}")
        if self.memory is not None:
            limits.append(f"memory {number_text(self.memory[0])}-{number_text(self.memory[1])} GB")
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
            parsed = decode_json(
                data.encode("utf-8", "surrogatepass"), "imageCapabilityData", METADATA_JSON, error=MetadataError
            )
            if not isinstance(parsed, dict):
                raise MetadataError(f"imageCapabilityData: holds {json_type(parsed)}, not an object")
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
            "additionalMetadata": with_extra(additional, self.additional_extra),
        }
        return with_extra(out, self.extra)


# ---------------------------------------------------------------------------------------------------------------
# The launch option fields, once: JSON name, attribute, and how a value is read from a file or a command line.


@dataclass(frozen=True)
class LaunchField:
    json_name: str
    attr: str
    enum: type[StrEnum] | None = None
    nullable: bool = False
    boolean: bool = False


LAUNCH_FIELDS: tuple[LaunchField, ...] = (
    LaunchField("firmware", "firmware", Firmware),
    LaunchField("networkType", "network_type", NetworkType),
    LaunchField("bootVolumeType", "boot_volume_type", VolumeType),
    LaunchField("remoteDataVolumeType", "remote_data_volume_type", VolumeType),
    LaunchField("localDataVolumeType", "local_data_volume_type", VolumeType, nullable=True),
    LaunchField("launchOptionsSource", "launch_options_source", LaunchMode),
    LaunchField("pvAttachmentVersion", "pv_attachment_version", nullable=True),
    LaunchField("pvEncryptionInTransitEnabled", "pv_encryption_in_transit_enabled", boolean=True),
    LaunchField("consistentVolumeNamingEnabled", "consistent_volume_naming_enabled", boolean=True),
)
FIELD_BY_NAME = {spec.json_name: spec for spec in LAUNCH_FIELDS}


# ---------------------------------------------------------------------------------------------------------------
# Values as JSON writes them and as messages show them


def json_value(value: Any) -> Any:
    return value.value if isinstance(value, StrEnum) else value


def with_extra(known: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Known keys first; an unknown key never replaces a known one."""
    for key, value in extra.items():
        if key not in known:
            known[key] = copy.deepcopy(value)
    return known


def _constraint_json(limits: tuple[float, float] | None, keys: tuple[str, str], extra: dict[str, Any]) -> Any:
    if limits is None:
        return None
    return with_extra({keys[0]: limits[0], keys[1]: limits[1]}, extra)


def number_text(value: float) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def allowed_text(enum: type[StrEnum], *, nullable: bool = False) -> str:
    return ", ".join([member.value for member in enum] + (["null"] if nullable else []))
