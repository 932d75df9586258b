"""Reading image_metadata.json from untrusted bytes into the model, naming the exact place of the first thing that
is wrong, and writing the model back as the file's bytes."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from imagepack.core.errors import MetadataError
from imagepack.oci.metadata.codec import decode_json, is_number, json_type, quote
from imagepack.oci.metadata.model import (
    FIELD_BY_NAME,
    LAUNCH_FIELDS,
    MAX_METADATA_BYTES,
    METADATA_JSON,
    METADATA_NAME,
    METADATA_VERSION,
    ImageMetadata,
    LaunchOptions,
    ShapeCompatibility,
    allowed_text,
)


class _Reader:
    """Turns the decoded document into the model, naming the exact place of the first thing that is wrong."""

    def __init__(self, label: str) -> None:
        self.label = label

    def fail(self, path: str, problem: str, fix: str | None = None) -> MetadataError:
        return MetadataError(f"{self.label}: {path} {problem}" + (f"; {fix}" if fix else ""))

    def wrong_type(self, path: str, value: Any, wanted: str) -> MetadataError:
        return self.fail(path, f"is {json_type(value)}, not {wanted}", f"write {wanted} there")

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
        if not is_number(value):
            raise self.wrong_type(path, value, "a number")
        result: float = value
        return result

    def enum(self, value: Any, path: str, enum: type[StrEnum], *, nullable: bool = False) -> Any:
        allowed = allowed_text(enum, nullable=nullable)
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            raise self.fail(path, f"is {json_type(value)}, not one of the names it allows", f"use one of {allowed}")
        try:
            return enum(value)
        except ValueError:
            raise self.fail(path, f"is {quote(value)}, not an allowed value", f"use one of {allowed}") from None

    def metadata(self, doc: Any) -> ImageMetadata:
        if not isinstance(doc, dict):
            raise MetadataError(
                f"{self.label}: the document is {json_type(doc)}, not an object; "
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
            parsed = decode_json(
                caps.encode("utf-8"), f"{self.label}: imageCapabilityData", METADATA_JSON, error=MetadataError
            )
            if not isinstance(parsed, dict):
                raise self.fail(
                    "imageCapabilityData",
                    f"holds {json_type(parsed)}, not a JSON object",
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
        for spec in LAUNCH_FIELDS:
            where = f"{path}.{spec.json_name}"
            if spec.nullable or spec.boolean:
                # OCI always writes them; a hand-written file may leave them out: null / false then
                raw = obj.get(spec.json_name, False if spec.boolean else None)
            else:
                allowed = allowed_text(spec.enum) if spec.enum else ""
                raw = self.required(obj, spec.json_name, path, f"add one of {allowed}")
            if spec.enum is not None:
                values[spec.attr] = self.enum(raw, where, spec.enum, nullable=spec.nullable)
            elif spec.boolean:
                values[spec.attr] = self.boolean(raw, where)
            elif raw is not None and (not isinstance(raw, int) or isinstance(raw, bool)):
                raise self.fail(where, f"is {json_type(raw)}, not a whole number or null", "write 2 (or 1)")
            else:
                values[spec.attr] = raw
        return LaunchOptions(**values, extra=_unknown(obj, set(FIELD_BY_NAME)))

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
    return _Reader(label).metadata(decode_json(bytes(data), label, METADATA_JSON, error=MetadataError))


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
