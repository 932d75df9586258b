"""A .oci archive's image_metadata.json: the typed model (model), a strict reader for untrusted bytes and a writer
that keeps every key it does not know (codec, document), metadata from what a person typed (edits), and the checks
that say whether OCI can use the combination (rules, oslist)."""

from imagepack.oci.metadata.document import dump_metadata, load_metadata
from imagepack.oci.metadata.edits import (
    CUSTOM_REQUIRED,
    OVERRIDE_KEYS,
    SET_KEYS,
    SHAPE_EXAMPLE,
    SHAPE_FORM,
    build_metadata,
    launch_options_for,
    parse_assignments,
    parse_shape,
    set_values,
)
from imagepack.oci.metadata.model import (
    MAX_METADATA_BYTES,
    METADATA_NAME,
    METADATA_VERSION,
    PV_ATTACHMENT_VERSIONS,
    ImageMetadata,
    LaunchMode,
    LaunchOptions,
    NetworkType,
    ShapeCompatibility,
    VolumeType,
)
from imagepack.oci.metadata.rules import check_metadata, shape_architecture
from imagepack.oci.metadata.systems import OsName, check_system, import_guidance

__all__ = [
    "CUSTOM_REQUIRED",
    "MAX_METADATA_BYTES",
    "METADATA_NAME",
    "METADATA_VERSION",
    "OVERRIDE_KEYS",
    "PV_ATTACHMENT_VERSIONS",
    "SET_KEYS",
    "SHAPE_EXAMPLE",
    "SHAPE_FORM",
    "ImageMetadata",
    "LaunchMode",
    "LaunchOptions",
    "NetworkType",
    "OsName",
    "ShapeCompatibility",
    "VolumeType",
    "build_metadata",
    "check_metadata",
    "check_system",
    "dump_metadata",
    "import_guidance",
    "launch_options_for",
    "load_metadata",
    "parse_assignments",
    "parse_shape",
    "set_values",
    "shape_architecture",
]
