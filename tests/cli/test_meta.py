"""image_metadata.json: what round-trips unchanged, what the reader refuses and why, the launch-mode presets,
`meta set` values, and the checks that say whether OCI can use the combination."""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from imagepack.core.errors import InvalidValueError, MetadataError
from imagepack.core.problems import Problem, Remedy, Severity
from imagepack.formats.partitions import Firmware
from imagepack.oci.metadata import (
    CUSTOM_REQUIRED,
    OVERRIDE_KEYS,
    SET_KEYS,
    ImageMetadata,
    LaunchMode,
    NetworkType,
    OsName,
    ShapeCompatibility,
    VolumeType,
    build_metadata,
    check_metadata,
    dump_metadata,
    launch_options_for,
    load_metadata,
    oslist,
    parse_assignments,
    parse_shape,
    set_values,
)
from imagepack.writers.sample import write_sample_disk
from tests.conftest import run_cli

# SPEC §2, as written there.
SPEC_EXAMPLE = b"""{
  "version": 2,
  "externalLaunchOptions": {
    "firmware": "UEFI_64",
    "networkType": "PARAVIRTUALIZED",
    "bootVolumeType": "PARAVIRTUALIZED",
    "remoteDataVolumeType": "PARAVIRTUALIZED",
    "localDataVolumeType": "PARAVIRTUALIZED",
    "launchOptionsSource": "PARAVIRTUALIZED",
    "pvAttachmentVersion": 2,
    "pvEncryptionInTransitEnabled": false,
    "consistentVolumeNamingEnabled": false
  },
  "imageCapabilityData": null,
  "imageCapsFormatVersion": null,
  "operatingSystem": "Oracle Linux",
  "operatingSystemVersion": "8",
  "additionalMetadata": {
    "shapeCompatibilities": [
      {"internalShapeName": "VM.Standard.E4.Flex", "ocpuConstraints": null, "memoryConstraints": null}
    ]
  }
}
"""

CAPABILITIES = {
    "capabilities": {
        "Compute.Firmware": {"descriptorType": "enumstring", "values": ["BIOS", "UEFI_64"], "defaultValue": "UEFI_64"},
        "Compute.LaunchMode": {
            "descriptorType": "enumstring",
            "values": ["NATIVE", "EMULATED", "PARAVIRTUALIZED", "CUSTOM"],
            "defaultValue": "PARAVIRTUALIZED",
        },
        "Storage.ParaVirtualization.AttachmentVersion": {
            "descriptorType": "enuminteger",
            "values": [1, 2],
            "defaultValue": 2,
        },
    }
}


def spec_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(SPEC_EXAMPLE)
    return doc


def encode(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def ordered(doc: Any) -> str:
    """A document as text with its key order, so that equality also compares the order of keys."""
    return json.dumps(doc, ensure_ascii=False)


def doc_with_unknown_keys(capability_data: str | dict[str, Any]) -> dict[str, Any]:
    """A file as a newer OCI might write it: unknown keys at every level, after the known ones."""
    doc = spec_doc()
    doc["externalLaunchOptions"]["futureOption"] = {"nested": [1, 2.5, None, True]}
    doc["imageCapabilityData"] = capability_data
    doc["imageCapsFormatVersion"] = "23cfd738-ad9c-4f56-9281-67be6c8cd14c"
    doc["additionalMetadata"] = {
        "sourcePublicImageId": None,
        "shapeCompatibilities": [
            {
                "internalShapeName": "VM.Standard.E4.Flex",
                "ocpuConstraints": {"min": 1, "max": 64, "unit": "OCPU"},
                "memoryConstraints": {"minInGBs": 1.5, "maxInGBs": 1024, "note": "ロ"},
                "shapeNote": "kept",
            },
            {"internalShapeName": "x7-2c.52.768", "ocpuConstraints": None, "memoryConstraints": None},
        ],
        "futureList": ["a", {"b": "c"}],
    }
    doc["topLevelFuture"] = {"deep": {"deeper": ["x"]}}
    doc["anotherOne"] = "value with \u00e9 and \u65e5\u672c"
    return doc


def refused(data: bytes, label: str = "meta.json") -> str:
    """The message load_metadata gives for `data`; it must be one line naming the label."""
    with pytest.raises(MetadataError) as caught:
        load_metadata(data, label=label)
    message = str(caught.value)
    assert message.startswith(f"{label}: ")
    assert "\n" not in message
    return message


def linux(mode: LaunchMode = LaunchMode.PARAVIRTUALIZED, firmware: Firmware = Firmware.UEFI_64) -> ImageMetadata:
    return build_metadata(
        operating_system="Oracle Linux", operating_system_version="8", firmware=firmware, launch_mode=mode
    )


def windows(version: str, mode: LaunchMode = LaunchMode.PARAVIRTUALIZED, name: str = "Windows") -> ImageMetadata:
    return build_metadata(
        operating_system=name, operating_system_version=version, firmware=Firmware.UEFI_64, launch_mode=mode
    )


def with_launch(meta: ImageMetadata, **values: str) -> ImageMetadata:
    return set_values(meta, values)


def one_line(messages: list[str]) -> list[str]:
    for message in messages:
        assert "\n" not in message and "; " in message, message  # every message says what to do
    return messages


# --- round trips -------------------------------------------------------------------------------------------------


def test_spec_example_reads_back_as_the_same_document_in_the_same_key_order() -> None:
    meta = load_metadata(SPEC_EXAMPLE)
    assert ordered(meta.to_json()) == ordered(spec_doc())
    assert meta.launch_mode is LaunchMode.PARAVIRTUALIZED
    assert meta.launch.firmware is Firmware.UEFI_64
    assert meta.shapes == [ShapeCompatibility("VM.Standard.E4.Flex")]


def test_spec_example_is_byte_for_byte_stable_after_a_second_round_trip() -> None:
    first = dump_metadata(load_metadata(SPEC_EXAMPLE))
    assert dump_metadata(load_metadata(first)) == first
    assert json.loads(first) == spec_doc()


def test_written_metadata_is_utf8_indented_json_ending_with_one_newline() -> None:
    meta = load_metadata(SPEC_EXAMPLE)
    meta.operating_system_version = "8 \u65e5\u672c"
    data = dump_metadata(meta)
    assert data.endswith(b"}\n") and not data.endswith(b"\n\n")
    assert "8 \u65e5\u672c".encode() in data  # written as UTF-8, not as \\u escapes
    assert data.startswith(b'{\n  "version": 2,\n  "externalLaunchOptions": {\n    "firmware": "UEFI_64",')


@pytest.mark.parametrize("capability_form", ["string", "object"])
def test_unknown_keys_at_every_level_survive_in_their_order(capability_form: str) -> None:
    caps: str | dict[str, Any] = (
        json.dumps(CAPABILITIES, separators=(",", ":")) if capability_form == "string" else CAPABILITIES
    )
    doc = doc_with_unknown_keys(caps)
    meta = load_metadata(encode(doc))
    assert ordered(meta.to_json()) == ordered(doc)
    assert meta.extra == {"topLevelFuture": doc["topLevelFuture"], "anotherOne": doc["anotherOne"]}
    assert meta.launch.extra == {"futureOption": {"nested": [1, 2.5, None, True]}}
    assert meta.additional_extra == {"futureList": ["a", {"b": "c"}]}
    assert meta.shapes[0].extra == {"shapeNote": "kept"}
    assert meta.shapes[0].ocpu == (1, 64) and meta.shapes[0].memory == (1.5, 1024)


@pytest.mark.parametrize("capability_form", ["string", "object"])
def test_metadata_with_unknown_keys_is_byte_for_byte_stable_after_a_second_round_trip(capability_form: str) -> None:
    caps: str | dict[str, Any] = json.dumps(CAPABILITIES) if capability_form == "string" else CAPABILITIES
    first = dump_metadata(load_metadata(encode(doc_with_unknown_keys(caps))))
    second = dump_metadata(load_metadata(first))
    assert second == first


def test_capability_data_read_as_a_string_is_written_as_the_same_string() -> None:
    text = json.dumps(CAPABILITIES, separators=(",", ":"))
    meta = load_metadata(encode(doc_with_unknown_keys(text)))
    assert meta.image_capability_data == text
    assert json.loads(dump_metadata(meta))["imageCapabilityData"] == text
    assert meta.capabilities() == CAPABILITIES


def test_capability_data_read_as_an_object_is_written_as_an_object() -> None:
    meta = load_metadata(encode(doc_with_unknown_keys(CAPABILITIES)))
    assert json.loads(dump_metadata(meta))["imageCapabilityData"] == CAPABILITIES
    assert meta.capabilities() == CAPABILITIES


def test_absent_source_image_id_stays_absent_and_a_null_one_stays_null() -> None:
    absent = load_metadata(SPEC_EXAMPLE)
    assert "sourcePublicImageId" not in json.loads(dump_metadata(absent))["additionalMetadata"]
    doc = spec_doc()
    doc["additionalMetadata"]["sourcePublicImageId"] = None
    present = load_metadata(encode(doc))
    assert present.has_source_public_image_id and present.source_public_image_id is None
    assert json.loads(dump_metadata(present))["additionalMetadata"]["sourcePublicImageId"] is None


def test_compact_one_line_file_and_trailing_padding_are_read() -> None:
    compact = json.dumps(spec_doc(), separators=(",", ":")).encode()
    padded = compact + b"\n" + b" " * 500 + b"\n"  # how our archive layout pads the member
    assert load_metadata(padded).to_json() == spec_doc()


def test_optional_launch_values_left_out_read_as_null_and_false() -> None:
    doc = spec_doc()
    for key in ("localDataVolumeType", "pvAttachmentVersion", "pvEncryptionInTransitEnabled"):
        del doc["externalLaunchOptions"][key]
    launch = load_metadata(encode(doc)).launch
    assert launch.local_data_volume_type is None
    assert launch.pv_attachment_version is None
    assert launch.pv_encryption_in_transit_enabled is False


# --- hostile and malformed input ---------------------------------------------------------------------------------


def test_more_than_one_mib_is_refused_even_when_it_is_valid_json() -> None:
    data = SPEC_EXAMPLE + b" " * (1024 * 1024)
    assert "1 MiB" in refused(data)


def test_exactly_one_mib_of_padding_within_the_limit_is_read() -> None:
    data = SPEC_EXAMPLE + b" " * (1024 * 1024 - len(SPEC_EXAMPLE))
    assert len(data) == 1024 * 1024
    assert load_metadata(data).operating_system == "Oracle Linux"


def test_a_mebibyte_of_open_brackets_is_refused_cleanly_and_fast() -> None:
    started = time.monotonic()
    assert "deeper than 64" in refused(b"[" * (1024 * 1024))
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("opener,closer", [(b"[", b"]"), (b'{"a":', b"}")])
def test_nesting_100k_deep_is_refused_without_recursion_error(opener: bytes, closer: bytes) -> None:
    data = opener * 100_000 + b"1" + closer * 100_000
    assert "deeper than 64" in refused(data)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    doc = spec_doc()
    doc["note"] = '[{"' * 5000 + '\\"['  # quotes and backslashes inside the string must not end it early
    meta = load_metadata(encode(doc))
    assert meta.extra["note"] == doc["note"]


def test_nesting_just_under_the_limit_in_an_unknown_key_is_kept() -> None:
    doc = spec_doc()
    deep: Any = "bottom"
    for _ in range(62):  # the top-level object makes 63
        deep = [deep]
    doc["deep"] = deep
    assert load_metadata(encode(doc)).extra["deep"] == deep


@pytest.mark.parametrize(
    "data",
    [
        b'{"operatingSystem": "Oracle \xff Linux"}',
        b'{"operatingSystem": "\xc0\xaf"}',  # overlong encoding of '/'
        b'{"operatingSystem": "\xed\xa0\x80"}',  # an encoded surrogate
        SPEC_EXAMPLE.decode().encode("utf-16"),
    ],
)
def test_text_that_is_not_strict_utf8_is_refused(data: bytes) -> None:
    assert "not valid UTF-8" in refused(data)


def test_a_byte_order_mark_is_refused_with_what_to_do() -> None:
    assert "without one" in refused(b"\xef\xbb\xbf" + SPEC_EXAMPLE)


def test_an_escaped_lone_surrogate_is_refused() -> None:
    doc = SPEC_EXAMPLE.replace(b'"Oracle Linux"', b'"Oracle \\ud800 Linux"')
    assert "surrogate" in refused(doc)


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_nan_infinity_and_numbers_out_of_range_are_refused(constant: bytes) -> None:
    data = SPEC_EXAMPLE.replace(b'"pvAttachmentVersion": 2', b'"pvAttachmentVersion": ' + constant)
    message = refused(data)
    assert constant.lstrip(b"-").decode() in message


def test_an_integer_with_thousands_of_digits_is_refused() -> None:
    data = SPEC_EXAMPLE.replace(b'"pvAttachmentVersion": 2', b'"pvAttachmentVersion": ' + b"9" * 5000)
    assert "too many digits" in refused(data)


@pytest.mark.parametrize(
    "old,new",
    [
        (b'"version": 2,', b'"version": 2, "version": 2,'),
        (b'"firmware": "UEFI_64",', b'"firmware": "UEFI_64", "firmware": "BIOS",'),
        (b'"memoryConstraints": null', b'"memoryConstraints": null, "memoryConstraints": null'),
    ],
)
def test_duplicate_keys_are_refused_at_any_level(old: bytes, new: bytes) -> None:
    data = SPEC_EXAMPLE.replace(old, new)
    assert data != SPEC_EXAMPLE
    assert "appears twice" in refused(data)


def test_invalid_json_names_line_and_column() -> None:
    message = refused(b'{\n  "version": 2,\n  oops\n}')
    assert "not valid JSON" in message and "line 3 column 3" in message


@pytest.mark.parametrize(
    "key,value,allowed",
    [
        ("firmware", "UEFI", "BIOS, UEFI_64"),
        ("networkType", "paravirtualized", "E1000, VFIO, PARAVIRTUALIZED, ACCELERATEDPV"),
        ("bootVolumeType", "NVME", "ISCSI, SCSI, IDE, VFIO, PARAVIRTUALIZED"),
        ("localDataVolumeType", "NVME", "ISCSI, SCSI, IDE, VFIO, PARAVIRTUALIZED, null"),
        ("launchOptionsSource", "HYBRID", "NATIVE, PARAVIRTUALIZED, EMULATED, CUSTOM"),
    ],
)
def test_wrong_enum_values_are_refused_with_the_allowed_values(key: str, value: str, allowed: str) -> None:
    doc = spec_doc()
    doc["externalLaunchOptions"][key] = value
    message = refused(encode(doc))
    assert f"externalLaunchOptions.{key}" in message
    assert f'"{value}"' in message
    assert message.endswith(f"use one of {allowed}")


@pytest.mark.parametrize("version", [3, 1, 0])
def test_versions_other_than_2_are_refused(version: int) -> None:
    doc = spec_doc()
    doc["version"] = version
    message = refused(encode(doc))
    assert f"version is {version}" in message and "version 2" in message


@pytest.mark.parametrize("data", [b"[]", b'"version 2"', b"null", b"2", b"true"])
def test_a_document_that_is_not_an_object_is_refused(data: bytes) -> None:
    assert "not an object" in refused(data)


@pytest.mark.parametrize(
    "path,value,expected",
    [
        (("version",), "2", "version is a string, not a number"),
        (("version",), True, "version is a boolean, not a number"),
        (("externalLaunchOptions",), [], "externalLaunchOptions is an array, not an object"),
        (("externalLaunchOptions", "firmware"), 1, "externalLaunchOptions.firmware is a number"),
        (("externalLaunchOptions", "pvAttachmentVersion"), "2", "pvAttachmentVersion is a string, not a whole number"),
        (("externalLaunchOptions", "pvAttachmentVersion"), 2.0, "pvAttachmentVersion is a number, not a whole number"),
        (("externalLaunchOptions", "pvEncryptionInTransitEnabled"), "false", "is a string, not true or false"),
        (("externalLaunchOptions", "consistentVolumeNamingEnabled"), None, "is null, not true or false"),
        (("imageCapabilityData",), 5, "imageCapabilityData is a number"),
        (("imageCapabilityData",), "not json", "imageCapabilityData: not valid JSON"),
        (("imageCapabilityData",), "[1, 2]", "imageCapabilityData holds an array, not a JSON object"),
        (("imageCapsFormatVersion",), {}, "imageCapsFormatVersion is an object, not a string or null"),
        (("operatingSystem",), None, "operatingSystem is null, not a string"),
        (("operatingSystemVersion",), 8, "operatingSystemVersion is a number, not a string"),
        (("additionalMetadata",), "x", "additionalMetadata is a string, not an object"),
        (("additionalMetadata", "shapeCompatibilities"), {}, "shapeCompatibilities is an object, not an array"),
        (("additionalMetadata", "sourcePublicImageId"), 7, "sourcePublicImageId is a number"),
    ],
)
def test_wrong_types_are_refused_naming_the_place(path: tuple[str, ...], value: Any, expected: str) -> None:
    doc = spec_doc()
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert expected in refused(encode(doc))


@pytest.mark.parametrize(
    "entry,expected",
    [
        ("VM.Standard.E4.Flex", "shapeCompatibilities[0] is a string, not an object"),
        ({"ocpuConstraints": None}, "shapeCompatibilities[0].internalShapeName is missing"),
        ({"internalShapeName": 4}, "internalShapeName is a number, not a string"),
        ({"internalShapeName": "A", "ocpuConstraints": {"min": 1}}, "ocpuConstraints.max is missing"),
        ({"internalShapeName": "A", "ocpuConstraints": {"min": "1", "max": 2}}, "ocpuConstraints.min is a string"),
        ({"internalShapeName": "A", "memoryConstraints": {"minInGBs": 1, "maxInGBs": False}}, "maxInGBs is a boolean"),
    ],
)
def test_malformed_shape_entries_are_refused(entry: Any, expected: str) -> None:
    doc = spec_doc()
    doc["additionalMetadata"]["shapeCompatibilities"] = [entry]
    assert expected in refused(encode(doc))


@pytest.mark.parametrize("key", ["version", "externalLaunchOptions", "operatingSystem", "operatingSystemVersion"])
def test_missing_required_top_level_keys_are_refused(key: str) -> None:
    doc = spec_doc()
    del doc[key]
    assert f"{key} is missing; add" in refused(encode(doc))


def test_missing_required_launch_option_is_refused_with_its_values() -> None:
    doc = spec_doc()
    del doc["externalLaunchOptions"]["networkType"]
    message = refused(encode(doc))
    assert "externalLaunchOptions.networkType is missing" in message and "E1000" in message


def test_the_default_label_is_the_member_name() -> None:
    with pytest.raises(MetadataError, match=r"^image_metadata\.json: "):
        load_metadata(b"[]")


# --- presets and overrides ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode,expected",
    [
        (LaunchMode.NATIVE, ("VFIO", "ISCSI", "PARAVIRTUALIZED", "VFIO", 1)),
        (LaunchMode.PARAVIRTUALIZED, ("PARAVIRTUALIZED",) * 4 + (2,)),
        (LaunchMode.EMULATED, ("E1000", "IDE", "IDE", None, None)),
    ],
)
@pytest.mark.parametrize("firmware", list(Firmware))
def test_each_launch_mode_preset(mode: LaunchMode, expected: tuple[Any, ...], firmware: Firmware) -> None:
    options = launch_options_for(mode, firmware)
    got = (
        options.network_type,
        options.boot_volume_type,
        options.remote_data_volume_type,
        options.local_data_volume_type,
        options.pv_attachment_version,
    )
    assert got == expected
    assert options.launch_options_source is mode and options.firmware is firmware
    assert options.pv_encryption_in_transit_enabled is False and options.consistent_volume_naming_enabled is False


def test_overrides_replace_preset_values_and_accept_any_case() -> None:
    options = launch_options_for(
        LaunchMode.PARAVIRTUALIZED,
        Firmware.UEFI_64,
        {
            "networkType": "vfio",
            "localDataVolumeType": "null",
            "pvAttachmentVersion": "1",
            "pvEncryptionInTransitEnabled": "true",
            "consistentVolumeNamingEnabled": "yes",
            "firmware": "bios",
        },
    )
    assert options.network_type is NetworkType.VFIO
    assert options.boot_volume_type is VolumeType.PARAVIRTUALIZED
    assert options.local_data_volume_type is None
    assert options.pv_attachment_version == 1
    assert options.pv_encryption_in_transit_enabled and options.consistent_volume_naming_enabled
    assert options.firmware is Firmware.BIOS


def test_an_unknown_override_key_is_a_usage_error_listing_the_keys() -> None:
    with pytest.raises(InvalidValueError) as caught:
        launch_options_for(LaunchMode.NATIVE, Firmware.BIOS, {"netType": "VFIO"})
    assert '"netType"' in str(caught.value)
    assert ", ".join(OVERRIDE_KEYS) in str(caught.value)


@pytest.mark.parametrize(
    "key,value,expected",
    [
        ("networkType", "virtio", "use one of E1000, VFIO, PARAVIRTUALIZED, ACCELERATEDPV"),
        ("bootVolumeType", "null", "use one of ISCSI, SCSI, IDE, VFIO, PARAVIRTUALIZED"),
        ("pvAttachmentVersion", "3", "use 1, 2 or null"),
        ("pvEncryptionInTransitEnabled", "maybe", "use true or false"),
    ],
)
def test_override_values_not_allowed_are_refused_with_the_allowed_ones(key: str, value: str, expected: str) -> None:
    with pytest.raises(MetadataError) as caught:
        launch_options_for(LaunchMode.PARAVIRTUALIZED, Firmware.UEFI_64, {key: value})
    assert str(caught.value).startswith(f'{key}="{value}"')
    assert str(caught.value).endswith(expected)


def test_custom_mode_lists_every_missing_launch_option() -> None:
    with pytest.raises(InvalidValueError) as caught:
        launch_options_for(LaunchMode.CUSTOM, Firmware.UEFI_64, {"networkType": "VFIO", "bootVolumeType": "ISCSI"})
    message = str(caught.value)
    missing = message.split("missing: ")[1].split(";")[0]
    assert missing.split(", ") == [k for k in CUSTOM_REQUIRED if k not in ("networkType", "bootVolumeType")]


def test_custom_mode_with_every_value_given() -> None:
    values = {
        "networkType": "VFIO",
        "bootVolumeType": "PARAVIRTUALIZED",
        "remoteDataVolumeType": "ISCSI",
        "localDataVolumeType": "null",
        "pvAttachmentVersion": "2",
        "pvEncryptionInTransitEnabled": "false",
        "consistentVolumeNamingEnabled": "true",
    }
    options = launch_options_for(LaunchMode.CUSTOM, Firmware.BIOS, values)
    assert options.launch_options_source is LaunchMode.CUSTOM
    assert options.remote_data_volume_type is VolumeType.ISCSI
    assert options.local_data_volume_type is None
    assert options.consistent_volume_naming_enabled is True


def test_built_metadata_is_the_preset_with_the_given_system_and_shapes() -> None:
    shape = parse_shape("VM.Standard.E4.Flex:1-64:1-1024")
    meta = build_metadata(
        operating_system="Oracle Linux",
        operating_system_version="9",
        firmware=Firmware.UEFI_64,
        shapes=[shape],
    )
    doc = meta.to_json()
    assert doc["version"] == 2 and doc["externalLaunchOptions"]["launchOptionsSource"] == "PARAVIRTUALIZED"
    assert doc["additionalMetadata"] == {
        "shapeCompatibilities": [
            {
                "internalShapeName": "VM.Standard.E4.Flex",
                "ocpuConstraints": {"min": 1, "max": 64},
                "memoryConstraints": {"minInGBs": 1, "maxInGBs": 1024},
            }
        ]
    }
    assert load_metadata(dump_metadata(meta)) == meta


def test_a_base_file_keeps_unknown_keys_capabilities_and_shapes_while_arguments_override_it() -> None:
    base = load_metadata(encode(doc_with_unknown_keys(json.dumps(CAPABILITIES))))
    meta = build_metadata(
        operating_system="Canonical Ubuntu",
        operating_system_version="22.04",
        firmware=Firmware.BIOS,
        overrides={"consistentVolumeNamingEnabled": "true"},
        base=base,
    )
    assert (meta.operating_system, meta.operating_system_version) == ("Canonical Ubuntu", "22.04")
    assert meta.launch.firmware is Firmware.BIOS and meta.launch.consistent_volume_naming_enabled
    assert meta.launch.extra == base.launch.extra
    assert meta.extra == base.extra and meta.additional_extra == base.additional_extra
    assert meta.image_capability_data == base.image_capability_data
    assert meta.image_caps_format_version == base.image_caps_format_version
    assert meta.has_source_public_image_id
    assert meta.shapes == base.shapes
    assert base.operating_system == "Oracle Linux" and base.launch.firmware is Firmware.UEFI_64  # base untouched


def test_a_base_in_its_own_mode_keeps_its_launch_values_and_another_mode_applies_that_preset() -> None:
    base = with_launch(linux(LaunchMode.NATIVE), remoteDataVolumeType="ISCSI")
    same = build_metadata(
        operating_system="Oracle Linux",
        operating_system_version="8",
        firmware=Firmware.UEFI_64,
        launch_mode=LaunchMode.NATIVE,
        base=base,
    )
    assert same.launch.remote_data_volume_type is VolumeType.ISCSI
    other = build_metadata(
        operating_system="Oracle Linux",
        operating_system_version="8",
        firmware=Firmware.UEFI_64,
        launch_mode=LaunchMode.PARAVIRTUALIZED,
        base=base,
        shapes=[ShapeCompatibility("VM.Standard.A1.Flex")],
    )
    assert other.launch == launch_options_for(LaunchMode.PARAVIRTUALIZED, Firmware.UEFI_64)
    assert [s.name for s in other.shapes] == ["VM.Standard.A1.Flex"]


# --- shapes ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("VM.Standard.E4.Flex", ShapeCompatibility("VM.Standard.E4.Flex")),
        ("VM.Standard.A1.Flex:1-80", ShapeCompatibility("VM.Standard.A1.Flex", ocpu=(1, 80))),
        ("VM.Standard.E4.Flex:1-64:1-1024", ShapeCompatibility("VM.Standard.E4.Flex", (1, 64), (1, 1024))),
        ("  VM.Standard3.Flex:1-32:0.5-512 ", ShapeCompatibility("VM.Standard3.Flex", (1, 32), (0.5, 512))),
        ("x7-2c.52.768", ShapeCompatibility("x7-2c.52.768")),
    ],
)
def test_shapes_parse_from_the_command_line_form(text: str, expected: ShapeCompatibility) -> None:
    assert parse_shape(text) == expected


def test_parsed_whole_numbers_are_written_as_json_integers() -> None:
    assert parse_shape("VM.Standard.E4.Flex:2-8").to_json()["ocpuConstraints"] == {"min": 2, "max": 8}
    assert '"min": 2,' in json.dumps(parse_shape("VM.Standard.E4.Flex:2-8").to_json())


@pytest.mark.parametrize(
    "text",
    [
        "",
        "VM.Standard.E4.Flex:",
        ":1-2",
        "VM.Standard.E4.Flex:1",
        "VM.Standard.E4.Flex:1-2:3",
        "VM.Standard.E4.Flex:1-2:3-4:5-6",
        "VM Standard E4",
        "VM.Standard.E4.Flex:a-b",
        "VM.Standard.E4.Flex:-1-2",
    ],
)
def test_malformed_shapes_are_refused_with_the_form(text: str) -> None:
    with pytest.raises(InvalidValueError, match=r"expected NAME\[:OCPU_MIN-OCPU_MAX\[:MEMORY_MIN_GB-MEMORY_MAX_GB\]\]"):
        parse_shape(text)


@pytest.mark.parametrize("text", ["VM.Standard.E4.Flex:8-4", "VM.Standard.E4.Flex:1-4:64-16", "A:0-0"])
def test_shapes_with_empty_ranges_are_refused(text: str) -> None:
    with pytest.raises(InvalidValueError, match="is empty; write MIN-MAX"):
        parse_shape(text)


def test_shape_describe_reads_as_one_line() -> None:
    assert parse_shape("VM.Standard.E4.Flex:1-64:1-1024").describe() == (
        "VM.Standard.E4.Flex (OCPUs 1-64, memory 1-1024 GB)"
    )
    assert parse_shape("x7-2c.52.768").describe() == "x7-2c.52.768"


# --- meta set ----------------------------------------------------------------------------------------------------


def test_assignments_parse_into_keys_and_values() -> None:
    assert parse_assignments(["operatingSystemVersion=9", "operatingSystem=Oracle Linux", "x=a=b", "y="]) == {
        "operatingSystemVersion": "9",
        "operatingSystem": "Oracle Linux",
        "x": "a=b",
        "y": "",
    }


@pytest.mark.parametrize("pairs", [["firmware"], ["=BIOS"], [" firmware=BIOS"], ["firmware=BIOS", "firmware=UEFI_64"]])
def test_malformed_assignments_are_usage_errors(pairs: list[str]) -> None:
    with pytest.raises(InvalidValueError):
        parse_assignments(pairs)


def test_set_values_changes_the_system_without_touching_the_original() -> None:
    meta = load_metadata(SPEC_EXAMPLE)
    changed = set_values(meta, {"operatingSystem": "CentOS", "operatingSystemVersion": " 7 "})
    assert (changed.operating_system, changed.operating_system_version) == ("CentOS", "7")
    assert (meta.operating_system, meta.operating_system_version) == ("Oracle Linux", "8")


def test_set_launch_mode_applies_the_preset_and_keeps_firmware_and_booleans() -> None:
    meta = with_launch(linux(firmware=Firmware.BIOS), consistentVolumeNamingEnabled="true")
    native = set_values(meta, {"launchMode": "native"})
    assert native.launch == launch_options_for(
        LaunchMode.NATIVE, Firmware.BIOS, {"consistentVolumeNamingEnabled": "true"}
    )


def test_set_launch_values_given_with_the_mode_override_its_preset_whatever_their_order() -> None:
    meta = set_values(linux(), {"networkType": "PARAVIRTUALIZED", "launchMode": "NATIVE"})
    assert meta.launch_mode is LaunchMode.NATIVE
    assert meta.launch.network_type is NetworkType.PARAVIRTUALIZED
    assert meta.launch.boot_volume_type is VolumeType.ISCSI


def test_set_custom_mode_keeps_every_current_value() -> None:
    meta = linux(LaunchMode.NATIVE)
    custom = set_values(meta, {"launchMode": "CUSTOM"})
    assert custom.launch == replace(meta.launch, launch_options_source=LaunchMode.CUSTOM)


def test_set_null_clears_nullable_values() -> None:
    meta = set_values(linux(), {"pvAttachmentVersion": "null", "localDataVolumeType": "NULL"})
    assert meta.launch.pv_attachment_version is None and meta.launch.local_data_volume_type is None
    doc = json.loads(dump_metadata(meta))["externalLaunchOptions"]
    assert doc["pvAttachmentVersion"] is None and doc["localDataVolumeType"] is None


def test_set_source_image_and_capability_schema() -> None:
    meta = set_values(
        linux(),
        {
            "sourcePublicImageId": "ocid1.image.oc1.phx.aaaaaaaabc123",
            "imageCapsFormatVersion": "34DD2CEA-AFF2-4F45-B8F6-1CB5290BFAB2",
        },
    )
    additional = json.loads(dump_metadata(meta))["additionalMetadata"]
    assert additional["sourcePublicImageId"] == "ocid1.image.oc1.phx.aaaaaaaabc123"
    assert meta.image_caps_format_version == "34dd2cea-aff2-4f45-b8f6-1cb5290bfab2"
    cleared = set_values(meta, {"sourcePublicImageId": "null"})
    assert json.loads(dump_metadata(cleared))["additionalMetadata"]["sourcePublicImageId"] is None


def test_set_unknown_key_is_a_usage_error_listing_the_keys() -> None:
    with pytest.raises(InvalidValueError) as caught:
        set_values(linux(), {"launchOptionsSource": "NATIVE"})
    assert ", ".join(SET_KEYS) in str(caught.value)


@pytest.mark.parametrize(
    "key,value,expected",
    [
        ("launchMode", "FAST", "use one of NATIVE, PARAVIRTUALIZED, EMULATED, CUSTOM"),
        ("firmware", "UEFI", "use one of BIOS, UEFI_64"),
        ("operatingSystem", "  ", "is empty"),
        ("operatingSystemVersion", "8\n9", "control characters"),
        ("operatingSystem", "Oracle \udcff", "undecodable"),
        ("imageCapsFormatVersion", "v2", "not a capability schema UUID"),
        ("sourcePublicImageId", "ami-12345", "not an image OCID"),
    ],
)
def test_set_values_not_allowed_are_refused(key: str, value: str, expected: str) -> None:
    with pytest.raises(MetadataError, match=expected):
        set_values(linux(), {key: value})


# --- checks ------------------------------------------------------------------------------------------------------


def split(problems: list[Problem]) -> tuple[list[Problem], list[Problem], list[Problem]]:
    """Errors, warnings and notes, in their order; every message is one line that says what to do."""
    one_line([problem.message for problem in problems])
    errors, warnings, notes = ([p for p in problems if p.severity is severity] for severity in Severity)
    return errors, warnings, notes


def codes(problems: list[Problem]) -> list[str]:
    return [problem.code for problem in problems]


def texts(problems: list[Problem]) -> list[str]:
    return [problem.message for problem in problems]


@pytest.mark.parametrize("mode", [LaunchMode.NATIVE, LaunchMode.PARAVIRTUALIZED])
@pytest.mark.parametrize("firmware", list(Firmware))
def test_every_preset_for_oracle_linux_passes_the_checks(mode: LaunchMode, firmware: Firmware) -> None:
    assert check_metadata(linux(mode, firmware), strict=True) == []


def test_emulated_preset_with_bios_passes_the_checks() -> None:
    assert check_metadata(linux(LaunchMode.EMULATED, Firmware.BIOS), strict=True) == []


def test_emulated_with_uefi_is_only_a_warning() -> None:
    errors, warnings, notes = split(check_metadata(linux(LaunchMode.EMULATED, Firmware.UEFI_64), strict=True))
    assert errors == [] and notes == []
    assert codes(warnings) == ["metadata.firmware-mode"] and "set firmware=BIOS" in warnings[0].message
    assert warnings[0].remedy is Remedy.STATE_FIRMWARE


@pytest.mark.parametrize(
    "mode,key,value",
    [
        ("NATIVE", "networkType", "E1000"),
        ("NATIVE", "bootVolumeType", "IDE"),
        ("PARAVIRTUALIZED", "networkType", "E1000"),
        ("PARAVIRTUALIZED", "remoteDataVolumeType", "SCSI"),
        ("EMULATED", "networkType", "VFIO"),
        ("EMULATED", "bootVolumeType", "PARAVIRTUALIZED"),
        ("EMULATED", "localDataVolumeType", "VFIO"),
    ],
)
def test_devices_a_mode_cannot_have_are_errors(mode: str, key: str, value: str) -> None:
    meta = set_values(linux(firmware=Firmware.BIOS), {"launchMode": mode, key: value})
    errors, _, _ = split(check_metadata(meta))
    code = "metadata.paravirtual-device" if mode == "EMULATED" else "metadata.emulated-device"
    assert codes(errors) == [code]
    assert f"{key} {value}" in errors[0].message or f"{key} is {value}" in errors[0].message
    assert f"launchOptionsSource {mode}" in errors[0].message


def test_custom_mode_allows_any_device_combination() -> None:
    meta = set_values(linux(firmware=Firmware.BIOS), {"launchMode": "CUSTOM", "networkType": "E1000"})
    assert check_metadata(meta) == []


def test_attachment_version_other_than_1_or_2_is_an_error() -> None:
    meta = linux()
    meta.launch.pv_attachment_version = 3
    errors, _, _ = split(check_metadata(meta))
    assert codes(errors) == ["metadata.pv-attachment-version"]
    assert texts(errors) == ["pvAttachmentVersion is 3; OCI knows 1 and 2: set pvAttachmentVersion=2"]


def test_attachment_version_missing_for_paravirtualized_volumes_is_a_warning() -> None:
    errors, warnings, _ = split(check_metadata(set_values(linux(), {"pvAttachmentVersion": "null"})))
    assert errors == [] and codes(warnings) == ["metadata.pv-attachment-missing"]
    assert "set pvAttachmentVersion=2" in warnings[0].message


def test_in_transit_encryption_without_paravirtualized_volumes_is_a_warning() -> None:
    meta = set_values(linux(LaunchMode.EMULATED, Firmware.BIOS), {"pvEncryptionInTransitEnabled": "true"})
    errors, warnings, _ = split(check_metadata(meta))
    assert errors == [] and codes(warnings)[0] == "metadata.pv-encryption-unused"
    assert "pvEncryptionInTransitEnabled=false" in warnings[0].message


@pytest.mark.parametrize(
    "name,version",
    [
        ("Windows", "Server 2019 Standard"),
        ("Windows", "Server 2012 R2 Datacenter"),
        ("Windows Server", "2022 Datacenter"),
        ("Microsoft Windows", "server 2016 standard"),
        ("Windows Server 2012", "Standard"),
    ],
)
def test_windows_naming_a_supported_release_and_edition_passes(name: str, version: str) -> None:
    assert check_metadata(windows(version, name=name), strict=True) == []


@pytest.mark.parametrize(
    "version,code,expected",
    [
        ("2019", "metadata.windows-edition", "names no edition"),
        ("Server 2019", "metadata.windows-edition", "names no edition"),
        ("Standard", "metadata.windows-release", "names no Windows Server release"),
        ("Server 2019 Standard Datacenter", "metadata.windows-edition", "names both editions"),
        ("Server 2016 or 2019 Standard", "metadata.windows-release", "names 2 releases"),
    ],
)
def test_windows_without_exactly_one_release_and_edition_is_an_error(version: str, code: str, expected: str) -> None:
    errors, _, _ = split(check_metadata(windows(version)))
    assert codes(errors) == [code] and expected in errors[0].message
    assert "Server 2019 Standard" in errors[0].message  # the example of what to write
    assert errors[0].remedy is Remedy.STATE_OS


@pytest.mark.parametrize("mode", [LaunchMode.NATIVE, LaunchMode.EMULATED, LaunchMode.CUSTOM])
def test_windows_in_another_mode_than_paravirtualized_is_an_error(mode: LaunchMode) -> None:
    meta = set_values(windows("Server 2022 Standard"), {"launchMode": mode.value, "firmware": "BIOS"})
    errors, _, _ = split(check_metadata(meta))
    [error] = [e for e in errors if e.code == "metadata.windows-mode"]
    assert "PARAVIRTUALIZED mode only" in error.message and "set launchMode=PARAVIRTUALIZED" in error.message


def test_windows_release_older_than_oci_lists_is_a_warning_or_a_strict_error() -> None:
    meta = windows("Server 2008 Standard")
    errors, warnings, _ = split(check_metadata(meta))
    assert errors == [] and codes(warnings) == ["metadata.os-release-unlisted"]
    assert "not on OCI's list" in warnings[0].message
    errors, warnings, _ = split(check_metadata(meta, strict=True))
    assert warnings == [] and codes(errors) == ["metadata.os-release-unlisted"]
    assert "not on OCI's list" in errors[0].message


def test_windows_release_newer_than_oci_lists_is_a_note_even_when_strict() -> None:
    errors, warnings, notes = split(check_metadata(windows("Server 2025 Standard"), strict=True))
    assert errors == [] and warnings == []
    assert codes(notes) == ["metadata.os-release-newer"]
    assert texts(notes) == [
        "Windows Server 2025 Standard is newer than the releases on OCI's list this imagepack knows "
        "(2012, 2012 R2, 2016, 2019, 2022); the import may still accept it"
    ]


@pytest.mark.parametrize(
    "name,version,releases",
    [
        ("Oracle Linux", "10", "6-9"),
        ("oracle linux", "10.0", "6-9"),
        ("Ubuntu", "24.10", "18.04, 20.04, 22.04, 24.04"),
        ("CentOS", "Stream 9", "8"),
        ("Oracle Linux Cloud Developer", "9", "8"),
    ],
)
def test_release_newer_than_the_list_of_a_listed_system_is_a_note(name: str, version: str, releases: str) -> None:
    meta = build_metadata(operating_system=name, operating_system_version=version, firmware=Firmware.UEFI_64)
    errors, warnings, notes = split(check_metadata(meta, strict=True))
    assert errors == [] and warnings == []
    assert codes(notes) == ["metadata.os-release-newer"]
    assert f"newer than the releases on OCI's list this imagepack knows ({releases})" in notes[0].message
    assert not notes[0].message.startswith("note")  # the severity says so, not the text


@pytest.mark.parametrize("name,version", [("Oracle Linux", "5.11"), ("Ubuntu", "21.10"), ("Ubuntu", "jammy")])
def test_older_or_skipped_release_of_a_listed_system_is_a_warning_naming_its_line(name: str, version: str) -> None:
    meta = build_metadata(operating_system=name, operating_system_version=version, firmware=Firmware.UEFI_64)
    errors, warnings, _ = split(check_metadata(meta))
    assert errors == [] and codes(warnings) == ["metadata.os-release-unlisted"]
    assert "not on OCI's list" in warnings[0].message
    assert f"({oslist.canonical_name(name)} " in warnings[0].message
    assert len(warnings[0].message) < 200
    errors, warnings, _ = split(check_metadata(meta, strict=True))
    assert warnings == [] and codes(errors) == ["metadata.os-release-unlisted"]


def test_system_not_on_the_list_is_a_warning_and_a_strict_error() -> None:
    meta = build_metadata(operating_system="Talos", operating_system_version="1.8.1", firmware=Firmware.UEFI_64)
    errors, warnings, _ = split(check_metadata(meta))
    assert errors == [] and codes(warnings) == ["metadata.unknown-os"]
    assert "did you mean" not in warnings[0].message
    assert "Oracle Linux, CentOS, CentOS Stream, Ubuntu, Windows Server" in warnings[0].message
    assert len(warnings[0].message) < 200
    assert warnings[0].remedy is Remedy.STATE_OS
    errors, warnings, _ = split(check_metadata(meta, strict=True))
    assert warnings == [] and codes(errors) == ["metadata.unknown-os"] and '"Talos"' in errors[0].message


@pytest.mark.parametrize(
    "typed,meant",
    [("Oracle Linx", "Oracle Linux"), ("Ubunto", "Ubuntu"), ("Windoes", "Windows"), ("centos strem", "CentOS Stream")],
)
def test_misspelt_system_name_suggests_the_closest_known_one(typed: str, meant: str) -> None:
    meta = build_metadata(operating_system=typed, operating_system_version="8", firmware=Firmware.UEFI_64)
    _, warnings, _ = split(check_metadata(meta, os_name=OsName.REPORTED))  # an archive's, as verify reads it
    assert codes(warnings)[0] == "metadata.unknown-os"
    assert f"did you mean {meant}?" in warnings[0].message
    assert len(warnings[0].message) < 200


@pytest.mark.parametrize(
    "typed,stored",
    [
        ("ubuntu", "Ubuntu"),
        ("ORACLE LINUX", "Oracle Linux"),
        ("oracle-linux", "Oracle Linux"),
        ("centos", "CentOS"),
        ("windows", "Windows"),
        ("canonical ubuntu", "Canonical Ubuntu"),
        ("Talos", "Talos"),
    ],
)
def test_a_known_system_name_is_stored_in_oci_spelling(typed: str, stored: str) -> None:
    built = build_metadata(operating_system=typed, operating_system_version="8", firmware=Firmware.UEFI_64)
    assert built.operating_system == stored
    assert set_values(linux(), {"operatingSystem": f" {typed} "}).operating_system == stored


def test_empty_operating_system_is_an_error() -> None:
    meta = linux()
    meta.operating_system = ""
    errors, _, _ = split(check_metadata(meta))
    assert codes(errors) == ["metadata.os-empty"]
    assert texts(errors) == ["operatingSystem is empty; set it, e.g. operatingSystem='Oracle Linux'"]


def test_arm_shape_with_bios_is_an_error() -> None:
    meta = build_metadata(
        operating_system="Oracle Linux",
        operating_system_version="9",
        firmware=Firmware.BIOS,
        shapes=[parse_shape("VM.Standard.A1.Flex")],
    )
    errors, _, _ = split(check_metadata(meta))
    assert codes(errors) == ["metadata.shape-firmware"] and errors[0].remedy is Remedy.STATE_FIRMWARE
    assert texts(errors) == ["shape VM.Standard.A1.Flex is Arm, which boots with UEFI only; set firmware=UEFI_64"]


@pytest.mark.parametrize("shape", ["VM.Standard.E4.Flex", "VM.Standard.A1.Flex", "VM.Standard.E2.1.Micro"])
def test_amd_and_arm_shapes_outside_paravirtualized_mode_are_errors(shape: str) -> None:
    meta = build_metadata(
        operating_system="Oracle Linux",
        operating_system_version="9",
        firmware=Firmware.UEFI_64,
        launch_mode=LaunchMode.NATIVE,
        shapes=[parse_shape(shape)],
    )
    errors, _, _ = split(check_metadata(meta))
    assert codes(errors) == ["metadata.shape-mode"]
    assert texts(errors) == [
        f"shape {shape} ({'Arm' if '.A1.' in shape else 'AMD'}) supports PARAVIRTUALIZED mode only, not NATIVE; "
        "set launchMode=PARAVIRTUALIZED or remove the shape"
    ]


def test_intel_and_internal_shapes_are_fine_in_native_mode() -> None:
    meta = linux(LaunchMode.NATIVE)
    meta.shapes = [parse_shape("VM.Standard2.1"), parse_shape("VM.Standard3.Flex"), parse_shape("x7-2c.52.768")]
    assert check_metadata(meta) == []


def test_arm_and_x86_shapes_together_are_an_error() -> None:
    meta = linux()
    meta.shapes = [parse_shape("VM.Standard.A1.Flex"), parse_shape("VM.Standard.E4.Flex")]
    errors, _, _ = split(check_metadata(meta))
    assert codes(errors) == ["metadata.shape-architecture"]
    assert "mix Arm (VM.Standard.A1.Flex) and x86 (VM.Standard.E4.Flex)" in errors[0].message


def test_windows_on_an_arm_shape_is_an_error() -> None:
    meta = windows("Server 2022 Datacenter")
    meta.shapes = [parse_shape("VM.Standard.A1.Flex")]
    errors, _, _ = split(check_metadata(meta))
    [error] = [e for e in errors if e.code == "metadata.shape-windows"]
    assert "Windows Server runs on x86 only" in error.message


def test_loaded_empty_shape_range_and_duplicate_shape() -> None:
    doc = spec_doc()
    doc["additionalMetadata"]["shapeCompatibilities"] = [
        {"internalShapeName": "VM.Standard3.Flex", "ocpuConstraints": {"min": 8, "max": 2}, "memoryConstraints": None},
        {"internalShapeName": "VM.Standard3.Flex", "ocpuConstraints": None, "memoryConstraints": None},
    ]
    errors, warnings, notes = split(check_metadata(load_metadata(encode(doc))))
    assert codes(errors) == ["metadata.shape-range"]
    assert texts(errors) == [
        "shape VM.Standard3.Flex: ocpuConstraints 8-2 is an empty range; give min-max with 0 <= min <= max, "
        "or no constraint"
    ]
    assert codes(warnings) == ["metadata.shape-duplicate"]
    assert texts(warnings) == ["shape VM.Standard3.Flex is listed twice; remove one"]
    assert notes == []


def test_errors_come_before_warnings_whatever_the_order_of_the_checks() -> None:
    meta = set_values(linux(LaunchMode.EMULATED, Firmware.UEFI_64), {"operatingSystem": "Talos"})
    meta.shapes = [ShapeCompatibility("VM.Standard.A1.Flex")]
    problems = check_metadata(meta)
    assert [p.severity for p in problems] == [Severity.ERROR, Severity.WARNING, Severity.WARNING]
    assert codes(problems) == ["metadata.shape-mode", "metadata.firmware-mode", "metadata.unknown-os"]


def test_capability_data_that_does_not_allow_the_launch_options_is_a_warning() -> None:
    caps = json.loads(json.dumps(CAPABILITIES))
    caps["capabilities"]["Compute.Firmware"]["values"] = ["BIOS"]
    meta = linux()
    meta.image_capability_data = json.dumps(caps)
    errors, warnings, _ = split(check_metadata(meta))
    assert errors == []
    assert codes(warnings) == ["metadata.capabilities"]
    assert texts(warnings) == [
        'imageCapabilityData allows Compute.Firmware BIOS, but firmware is "UEFI_64"; '
        "set firmware to one of those, or imageCapabilityData to match"
    ]


def test_capability_data_that_allows_the_launch_options_passes() -> None:
    meta = linux()
    meta.image_capability_data = CAPABILITIES
    meta.image_caps_format_version = "23cfd738-ad9c-4f56-9281-67be6c8cd14c"
    assert check_metadata(meta) == []


def test_capability_schema_version_that_is_not_a_uuid_is_a_warning() -> None:
    doc = spec_doc()
    doc["imageCapsFormatVersion"] = "v1"
    errors, warnings, _ = split(check_metadata(load_metadata(encode(doc))))
    assert errors == [] and codes(warnings) == ["metadata.caps-format-version"]
    assert "is not a UUID" in warnings[0].message


def _shaped(meta: ImageMetadata, *shapes: ShapeCompatibility) -> ImageMetadata:
    meta.shapes = list(shapes)
    return meta


def _changed(meta: ImageMetadata, **attributes: Any) -> ImageMetadata:
    return replace(meta, **attributes)


def _with_capabilities(data: str | dict[str, Any]) -> ImageMetadata:
    return _changed(linux(), image_capability_data=data)


def _firmware_allowed(values: list[str]) -> dict[str, Any]:
    caps: dict[str, Any] = json.loads(json.dumps(CAPABILITIES))
    caps["capabilities"]["Compute.Firmware"]["values"] = values
    return caps


def _os(name: str, version: str) -> ImageMetadata:
    return build_metadata(operating_system=name, operating_system_version=version, firmware=Firmware.UEFI_64)


def _pv_version(version: int) -> ImageMetadata:
    meta = linux()
    meta.launch.pv_attachment_version = version
    return meta


A1, E4, STANDARD3 = "VM.Standard.A1.Flex", "VM.Standard.E4.Flex", "VM.Standard3.Flex"

# One metadata per rule that breaks that rule alone: (code, severity, remedy, metadata).
ONE_RULE_BROKEN: list[tuple[str, Severity, Remedy | None, Callable[[], ImageMetadata]]] = [
    ("metadata.version", Severity.ERROR, None, lambda: _changed(linux(), version=3)),
    ("metadata.emulated-device", Severity.ERROR, None, lambda: with_launch(linux(), networkType="E1000")),
    (
        "metadata.paravirtual-device",
        Severity.ERROR,
        None,
        lambda: with_launch(linux(LaunchMode.EMULATED, Firmware.BIOS), networkType="VFIO"),
    ),
    ("metadata.pv-attachment-version", Severity.ERROR, None, lambda: _pv_version(3)),
    ("metadata.os-empty", Severity.ERROR, Remedy.STATE_OS, lambda: _changed(linux(), operating_system=" ")),
    (
        "metadata.os-version-empty",
        Severity.ERROR,
        Remedy.STATE_OS,
        lambda: _changed(linux(), operating_system_version=""),
    ),
    ("metadata.windows-mode", Severity.ERROR, None, lambda: windows("Server 2022 Standard", LaunchMode.NATIVE)),
    ("metadata.windows-release", Severity.ERROR, Remedy.STATE_OS, lambda: windows("Standard")),
    ("metadata.windows-edition", Severity.ERROR, Remedy.STATE_OS, lambda: windows("Server 2019")),
    ("metadata.shape-name", Severity.ERROR, None, lambda: _shaped(linux(), ShapeCompatibility(""))),
    (
        "metadata.shape-range",
        Severity.ERROR,
        None,
        lambda: _shaped(linux(), ShapeCompatibility(STANDARD3, memory=(16, 8))),
    ),
    (
        "metadata.shape-firmware",
        Severity.ERROR,
        Remedy.STATE_FIRMWARE,
        lambda: _shaped(linux(firmware=Firmware.BIOS), ShapeCompatibility(A1)),
    ),
    (
        "metadata.shape-windows",
        Severity.ERROR,
        None,
        lambda: _shaped(windows("Server 2022 Datacenter"), ShapeCompatibility(A1)),
    ),
    ("metadata.shape-mode", Severity.ERROR, None, lambda: _shaped(linux(LaunchMode.NATIVE), ShapeCompatibility(E4))),
    (
        "metadata.shape-architecture",
        Severity.ERROR,
        None,
        lambda: _shaped(linux(), ShapeCompatibility(A1), ShapeCompatibility(E4)),
    ),
    ("metadata.unknown-os", Severity.WARNING, Remedy.STATE_OS, lambda: _os("Talos", "1.8.1")),
    ("metadata.os-typo", Severity.ERROR, Remedy.OS_UNLISTED, lambda: _os("Ubunto", "22.04")),
    ("metadata.os-release-unlisted", Severity.WARNING, Remedy.STATE_OS, lambda: _os("Oracle Linux", "5.11")),
    (
        "metadata.firmware-mode",
        Severity.WARNING,
        Remedy.STATE_FIRMWARE,
        lambda: linux(LaunchMode.EMULATED, Firmware.UEFI_64),
    ),
    (
        "metadata.pv-attachment-missing",
        Severity.WARNING,
        None,
        lambda: with_launch(linux(), pvAttachmentVersion="null"),
    ),
    (
        "metadata.pv-attachment-unused",
        Severity.WARNING,
        None,
        lambda: with_launch(linux(LaunchMode.EMULATED, Firmware.BIOS), pvAttachmentVersion="2"),
    ),
    (
        "metadata.pv-encryption-unused",
        Severity.WARNING,
        None,
        lambda: with_launch(linux(LaunchMode.EMULATED, Firmware.BIOS), pvEncryptionInTransitEnabled="true"),
    ),
    ("metadata.capabilities-unreadable", Severity.WARNING, None, lambda: _with_capabilities("[1, 2")),
    ("metadata.capabilities-missing", Severity.WARNING, None, lambda: _with_capabilities({"other": {}})),
    ("metadata.capabilities", Severity.WARNING, None, lambda: _with_capabilities(_firmware_allowed(["BIOS"]))),
    (
        "metadata.caps-format-version",
        Severity.WARNING,
        None,
        lambda: _changed(linux(), image_caps_format_version="v1"),
    ),
    (
        "metadata.shape-duplicate",
        Severity.WARNING,
        None,
        lambda: _shaped(linux(), ShapeCompatibility(STANDARD3), ShapeCompatibility(STANDARD3)),
    ),
    ("metadata.os-release-newer", Severity.NOTE, None, lambda: _os("Oracle Linux", "10")),
]
RULE_IDS = [code for code, *_ in ONE_RULE_BROKEN]


@pytest.mark.parametrize("code,severity,remedy,make", ONE_RULE_BROKEN, ids=RULE_IDS)
def test_each_rule_broken_alone_reports_its_own_code(
    code: str, severity: Severity, remedy: Remedy | None, make: Callable[[], ImageMetadata]
) -> None:
    [problem] = check_metadata(make())
    assert (problem.code, problem.severity, problem.remedy) == (code, severity, remedy)


def test_every_rule_has_a_code_of_its_own_and_the_docstring_lists_each_one() -> None:
    assert len(set(RULE_IDS)) == len(RULE_IDS)
    documented = re.findall(r"^\s+(metadata\.[a-z-]+)\s", check_metadata.__doc__ or "", re.MULTILINE)
    assert sorted(documented) == sorted(RULE_IDS)


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("make", [make for *_, make in ONE_RULE_BROKEN], ids=RULE_IDS)
def test_no_message_names_a_command_line_option(make: Callable[[], ImageMetadata], strict: bool) -> None:
    problems = check_metadata(make(), strict=strict)
    assert problems
    for problem in problems:
        assert "--" not in problem.message and "\n" not in problem.message


# --- supported systems -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,version",
    [
        ("Oracle Linux", "8"),
        ("OracleLinux", "8.9"),
        ("Oracle Linux", "6.10"),
        ("oracle-linux", "9.x"),
        ("Oracle Linux Server", "7.9"),
        ("Oracle Linux Cloud Developer", "8"),
        ("CentOS", "7"),
        ("CentOS Linux", "7.9.2009"),
        ("CentOS Stream", "8"),
        ("CentOS", "Stream 8"),
        ("Ubuntu", "22.04"),
        ("Canonical Ubuntu", "24.04"),
        ("Ubuntu", "18.04.6 LTS"),
        ("Windows", "Server 2012 R2 Standard"),
    ],
)
def test_common_spellings_of_supported_systems_are_recognised(name: str, version: str) -> None:
    assert oslist.is_supported(name, version)


@pytest.mark.parametrize(
    "name,version",
    [
        ("Oracle Linux", "5.11"),
        ("Oracle Linux", "10"),
        ("Oracle Linux Cloud Developer", "9"),
        ("CentOS", "8"),
        ("CentOS Stream", "9"),
        ("Ubuntu", "21.10"),
        ("Ubuntu", "16.04"),
        ("Debian", "12"),
        ("Windows", "Server 2019"),
        ("Windows", "Server 2019 Essentials"),
        ("Windows", "11 Pro"),
    ],
)
def test_systems_oci_does_not_list_are_not_supported(name: str, version: str) -> None:
    assert not oslist.is_supported(name, version)


def test_each_line_of_the_list_describes_itself_for_messages() -> None:
    lines = {system.name: system.describe() for system in oslist.SUPPORTED_SYSTEMS}
    assert lines["Oracle Linux"] == "Oracle Linux 6.x, 7.x, 8.x, 9.x"
    assert lines["Oracle Linux Cloud Developer"] == "Oracle Linux Cloud Developer 8.x"
    assert lines["CentOS"] == "CentOS 7" and lines["CentOS Stream"] == "CentOS Stream 8"
    assert lines["Ubuntu"] == "Ubuntu 18.04, 20.04, 22.04, 24.04"
    assert lines["Windows Server"] == "Windows Server 2012, 2012 R2, 2016, 2019, 2022"


# --- the operating system through the command line ----------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Path:
    path = tmp_path / "disk.raw"
    write_sample_disk(path, 2 * 1024**2)
    return path


def pack_with_os(disk: Path, name: str, version: str, *extra: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = disk.with_name("disk.oci")
    return run_cli("pack", str(disk), str(out), "--os", name, "--os-version", version, *extra), out


def stored_system(archive: Path) -> tuple[str, str]:
    """operatingSystem and operatingSystemVersion as the archive's JSON member holds them, read with tarfile."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("image_metadata.json")
        assert member is not None
        doc = json.load(member)
    return doc["operatingSystem"], doc["operatingSystemVersion"]


def warning_lines(stderr: str) -> list[str]:
    lines = stderr.splitlines()
    assert all(line.startswith("imagepack: warning: ") for line in lines), stderr
    return lines


def test_pack_with_a_misspelt_os_taken_as_typed_warns_in_one_short_line_that_suggests_the_name(
    small_disk: Path,
) -> None:
    done, out = pack_with_os(small_disk, "Oracle Linx", "8", "--quiet", "--os-unlisted")

    assert done.returncode == 0, done.stderr
    [line] = warning_lines(done.stderr)
    assert "did you mean Oracle Linux?" in line and len(line) < 200
    assert stored_system(out) == ("Oracle Linx", "8")  # a suggestion, never a silent correction


def test_pack_with_a_misspelt_os_and_strict_fails_and_writes_nothing(small_disk: Path) -> None:
    done, out = pack_with_os(small_disk, "Oracle Linx", "8", "--strict")

    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("imagepack: error: ") and "did you mean Oracle Linux?" in line and len(line) < 200
    assert not out.exists()


def test_pack_stores_a_known_os_in_oci_spelling_whatever_the_case_typed(small_disk: Path) -> None:
    done, out = pack_with_os(small_disk, "ubuntu", "22.04", "--quiet")

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert stored_system(out) == ("Ubuntu", "22.04")
    shown = json.loads(run_cli("meta", "show", str(out)).stdout)
    assert shown["operatingSystem"] == "Ubuntu"


def test_pack_of_a_release_newer_than_the_list_is_a_note_that_strict_lets_pass(small_disk: Path) -> None:
    done, out = pack_with_os(small_disk, "Oracle Linux", "10", "--strict", "--quiet")

    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "imagepack: note: Oracle Linux 10 is newer than the releases on OCI's list this imagepack knows (6-9); "
        "the import may still accept it"
    ]
    [line] = done.stderr.splitlines()
    assert "unknown" not in line and len(line) < 200
    assert stored_system(out) == ("Oracle Linux", "10")


def test_meta_set_stores_a_known_os_in_oci_spelling(small_disk: Path) -> None:
    _, out = pack_with_os(small_disk, "Oracle Linux", "8", "--quiet")

    done = run_cli("meta", "set", str(out), "operatingSystem=centos", "operatingSystemVersion=7", "--quiet")

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert stored_system(out) == ("CentOS", "7")


def test_meta_set_of_a_misspelt_os_warns_and_with_strict_leaves_the_archive_alone(small_disk: Path) -> None:
    _, out = pack_with_os(small_disk, "Ubuntu", "22.04", "--quiet")

    refused = run_cli("meta", "set", str(out), "operatingSystem=Ubunto", "--strict")
    assert refused.returncode == 1
    assert "did you mean Ubuntu?" in refused.stderr and stored_system(out) == ("Ubuntu", "22.04")

    done = run_cli("meta", "set", str(out), "operatingSystem=Ubunto", "--quiet", "--os-unlisted")
    assert done.returncode == 0, done.stderr
    [line] = warning_lines(done.stderr)
    assert "did you mean Ubuntu?" in line and len(line) < 200
    assert stored_system(out) == ("Ubunto", "22.04")


def test_pack_json_lists_each_problem_with_its_code_severity_and_remedy(small_disk: Path) -> None:
    done, _ = pack_with_os(small_disk, "Oracle Linx", "8", "--json", "--os-unlisted")

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert "warnings" not in result
    [problem] = result["problems"]
    assert (problem["code"], problem["severity"], problem["remedy"]) == ("metadata.unknown-os", "warning", "os")
    assert "did you mean Oracle Linux?" in problem["message"]


def test_meta_set_of_a_release_newer_than_the_list_prints_a_note(small_disk: Path) -> None:
    _, out = pack_with_os(small_disk, "Oracle Linux", "8", "--quiet")

    done = run_cli("meta", "set", str(out), "operatingSystemVersion=10", "--strict", "--quiet")

    assert done.returncode == 0, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("imagepack: note: Oracle Linux 10 is newer than the releases on OCI's list")
    assert stored_system(out) == ("Oracle Linux", "10")


def test_verify_reports_a_release_newer_than_the_list_as_a_note_and_the_archive_ready(small_disk: Path) -> None:
    _, out = pack_with_os(small_disk, "Oracle Linux", "10", "--quiet")

    done = run_cli("verify", "--json", "--strict", str(out))

    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    notes = [problem for problem in report["problems"] if "newer than the releases" in problem["message"]]
    assert notes == [
        {
            "code": "metadata.os-release-newer",
            "severity": "note",
            "message": "Oracle Linux 10 is newer than the releases on OCI's list this imagepack knows (6-9); "
            "the import may still accept it",
            "remedy": None,
            "value": None,
        }
    ]
    assert report["ready"] is True
