"""A batch manifest: TOML naming sources, each with the outputs to make from it, exactly what the single commands
take. The whole file is read and checked before any work starts, and a mistake names the entry, the key and its
line (batch/entries.py reads the text and its values)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from imagepack.core.errors import InvalidValueError
from imagepack.core.sizes import parse_size
from imagepack.formats import DEFAULT_MAX_SIZE, ImageFormat, SafetyPolicy, parse_format
from imagepack.formats.base import VhdSize
from imagepack.formats.create_options import create_options
from imagepack.formats.partitions import Firmware
from imagepack.oci.metadata import LaunchMode, parse_shape
from imagepack.oci.metadata.requested import RequestRefused
from imagepack.sources.open import OpenOptions
from imagepack.verbs.batch.entries import (
    KeyLines,
    Where,
    boolean,
    choice,
    integer,
    known_keys,
    name_of,
    parsed,
    path_value,
    read_toml,
    string,
)
from imagepack.verbs.batch.writes import check_manifest_writes
from imagepack.verbs.preflight import Setting, check_metadata, preflight, wanted_target
from imagepack.verbs.presets import preset_named
from imagepack.verbs.target import ArchiveKind, Target, disk_format, parse_target_kind
from imagepack.writers.oci.pack import MetadataRequest

SOURCE_KEYS = ("path", "from", "max_size", "allow_backing", "vhd_size", "disk", "output")
OUTPUT_KEYS = ("path", "format", "for", "resize_up", "options", "compress", "level", "threads", "checksum", "oci")
OCI_KEYS = (
    "os",
    "os_version",
    "launch_mode",
    "firmware",
    "launch_options",
    "shapes",
    "metadata",
    "strict",
    "os_unlisted",
    "guest_mismatch_ok",
)
CHECKSUMS = ("sha256",)
MAX_DISKS = 1000  # disk = N: an OVA's disks
MAX_LEVEL = 1000  # level = N: every codec's range is within it; the codec checks its own
MAX_THREADS = 1024  # threads = N


@dataclass(frozen=True)
class OutputEntry:
    target: Target
    name: str  # the path as reports show it: relative to the manifest's directory
    checksum: str | None  # "sha256", or None when the entry asks for none
    settings: dict[str, Any]  # everything that decides the bytes written, for the record
    preset: str | None = None  # `for = NAME`: built as `convert --for NAME` builds it (build.make with it)
    resize_up: bool = False  # with a preset: grow the disk to the size the platform takes


@dataclass(frozen=True)
class SourceEntry:
    path: Path
    name: str  # relative to the manifest's directory
    claimed: ImageFormat | None
    policy: SafetyPolicy
    disk: int | None  # which of an OVA's disks
    outputs: tuple[OutputEntry, ...]

    @property
    def settings(self) -> dict[str, Any]:
        return {
            "from": self.claimed.value if self.claimed else None,
            "max_size": self.policy.max_size,
            "allow_backing": self.policy.allow_backing,
            "vhd_size": self.policy.vhd_size.value,
            "disk": self.disk,
        }

    def open_options(self, scratch: Path) -> OpenOptions:
        """How this source is opened, `scratch` holding what must be extracted or decompressed."""
        return OpenOptions(claimed=self.claimed, policy=self.policy, scratch=scratch, disk=self.disk)


@dataclass(frozen=True)
class Manifest:
    path: Path
    root: Path  # its directory: what relative paths in it are relative to
    sources: tuple[SourceEntry, ...]
    sha256: str  # of its text: the reports of its shards name it, so that a merge joins shards of one plan

    @property
    def outputs(self) -> list[tuple[SourceEntry, OutputEntry]]:
        return [(source, output) for source in self.sources for output in source.outputs]


def load_manifest(path: Path) -> Manifest:
    """Read and check the whole manifest; raises InvalidValueError naming the entry, the key and the line."""
    text, document = read_toml(path)
    lines = KeyLines(text)
    top = Where(path, lines, "the manifest", ("",))
    known_keys(document, ("source",), top)
    raw_sources = document.get("source")
    if not isinstance(raw_sources, list) or not raw_sources:
        top.fail("source", "name at least one source, as [[source]] with a path and [[source.output]] tables")
    root = Path(os.path.abspath(path.parent))
    sources = tuple(
        _source(entry, index, root, Where(path, lines, f"source {index + 1}", ("source", index)))
        for index, entry in enumerate(raw_sources)
    )
    check_manifest_writes(path, sources, lines)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Manifest(Path(os.path.abspath(path)), root, sources, digest)


def _source(entry: object, index: int, root: Path, where: Where) -> SourceEntry:
    if not isinstance(entry, dict):
        where.fail(None, "must be a table with a path and outputs")
    path = path_value(entry, "path", root, where)
    where = dataclasses.replace(where, entry=f"{where.entry} ({name_of(path, root)})")
    known_keys(entry, SOURCE_KEYS, where)
    if not path.is_file():
        where.fail("path", f"{name_of(path, root)}: no such file")
    claimed = parsed(entry, "from", parse_format, where)
    policy = SafetyPolicy(
        max_size=parsed(entry, "max_size", lambda text: parse_size(text, what="max_size"), where) or DEFAULT_MAX_SIZE,
        allow_backing=boolean(entry, "allow_backing", where),
        vhd_size=choice(VhdSize, string(entry, "vhd_size", where), "vhd_size", where) or VhdSize.CURRENT,
    )
    disk = integer(entry, "disk", where, low=1, high=MAX_DISKS)  # counts an OVA's disks from 1
    raw_outputs = entry.get("output")
    if not isinstance(raw_outputs, list) or not raw_outputs:
        where.fail("output", "give the source at least one output, as [[source.output]] with a path")
    outputs = tuple(
        _output(
            raw,
            root,
            dataclasses.replace(
                where,
                entry=f"{where.entry}, output {j + 1}",
                table=("source.output", index, j),
            ),
        )
        for j, raw in enumerate(raw_outputs)
    )
    return SourceEntry(path, name_of(path, root), claimed, policy, disk, outputs)


def _output(entry: object, root: Path, where: Where) -> OutputEntry:
    if not isinstance(entry, dict):
        where.fail(None, "must be a table with a path")
    path = path_value(entry, "path", root, where)
    where = dataclasses.replace(where, entry=f"{where.entry} ({name_of(path, root)})")
    known_keys(entry, OUTPUT_KEYS, where)
    options = _options(entry, where)
    preset = string(entry, "for", where)
    format_text = string(entry, "format", where)
    compress = boolean(entry, "compress", where)
    if preset is not None and format_text is not None:
        where.fail("for", "give either a format or a preset (for), not both")
    if preset is None and "resize_up" in entry:
        where.fail("resize_up", "applies only to an output made for a preset (for = NAME)")
    checksum = _checksum(entry, where)
    level = integer(entry, "level", where, low=-MAX_LEVEL, high=MAX_LEVEL)  # the codec's own range checked below
    threads = integer(entry, "threads", where, low=1, high=MAX_THREADS)
    keys = {
        Setting.KIND: "format" if format_text else "path",
        Setting.PRESET: "for",
        Setting.OPTIONS: "options" if options else "compress",
        Setting.COMPRESSION: "level" if level is not None else "threads",
        Setting.METADATA: "oci",
    }

    def refused(setting: Setting, e: InvalidValueError) -> NoReturn:
        where.refusing(keys.get(setting, "path"), e)

    # What `convert` (or `convert --for`) makes of the same options, refused as it refuses them.
    target = wanted_target(
        path,
        to=parsed(entry, "format", parse_target_kind, where),
        preset=parsed(entry, "for", preset_named, where),
        options=options,
        compress=compress,
        level=level,
        threads=threads,
        checksum=checksum is not None,  # the build hashes the output as it writes it
        refused=refused,
    )
    if target.kind is ArchiveKind.OCI:
        target = dataclasses.replace(target, metadata=_metadata(entry, root, where))
    elif "oci" in entry:
        where.fail("oci", f"image metadata applies only to a .oci output, not {target.kind.value}")
    preflight(target, output=False, refused=refused)  # its path: checked with the batch's other files (writes.py)
    resize_up = boolean(entry, "resize_up", where)
    settings = {
        "format": target.kind.value,
        "options": create_options(disk_format(target.kind), target.options, compress=compress),
        "compress": compress,
        "compression": target.compression.value if target.compression else None,
        "level": target.level,
        "metadata": _plain(target.metadata) if target.metadata else None,
        "preset": preset,
        "resize_up": resize_up,
    }
    return OutputEntry(target, name_of(path, root), checksum, settings, preset=preset, resize_up=resize_up)


def _checksum(entry: Mapping[str, Any], where: Where) -> str | None:
    """The checksum an output asks for: sha256 unless told otherwise."""
    value = entry.get("checksum", True)
    if value is False:
        return None
    if value is not True and value not in CHECKSUMS:
        where.fail("checksum", f"{value!r}: give {' or '.join(repr(c) for c in CHECKSUMS)}, or false for none")
    return "sha256"


def _metadata(entry: Mapping[str, Any], root: Path, where: Where) -> MetadataRequest:
    """A .oci output's `oci` table, checked as `pack` checks its options: before any input is read."""
    raw = entry.get("oci", {})
    where = where.sub("oci")
    if not isinstance(raw, dict):
        where.fail(None, "must be a table of image metadata (os, os_version, launch_mode, firmware, ...)")
    known_keys(raw, OCI_KEYS, where)
    overrides = raw.get("launch_options", {})
    if not isinstance(overrides, dict) or not all(isinstance(v, str | bool) for v in overrides.values()):
        where.fail("launch_options", "must be a table of launch option names to values")
    overrides = {key: _option_text(value) for key, value in overrides.items()}
    shapes = raw.get("shapes", [])
    if not isinstance(shapes, list) or not all(isinstance(s, str) for s in shapes):
        where.fail("shapes", 'must be a list of shapes, e.g. ["VM.Standard.E4.Flex:1-64:1-1024"]')
    os_name, os_version = string(raw, "os", where), string(raw, "os_version", where)
    launch_mode = choice(LaunchMode, string(raw, "launch_mode", where), "launch_mode", where)
    base = path_value(raw, "metadata", root, where) if "metadata" in raw else None
    asked = MetadataRequest(
        operating_system=os_name,
        operating_system_version=os_version,
        launch_mode=launch_mode,
        overrides=overrides,
        base=base,
        strict=boolean(raw, "strict", where),
        os_unlisted=boolean(raw, "os_unlisted", where),
    )
    try:  # what `pack` checks of its options, by the same function: before any input is read
        check_metadata(asked)
    except RequestRefused as e:
        where.refusing(e.asked.value, e)
    parsed_shapes = [parsed({"shapes": text}, "shapes", parse_shape, where) for text in shapes]
    if base is not None and not base.is_file():
        where.fail("metadata", f"{name_of(base, root)}: no such file")
    return dataclasses.replace(
        asked,
        firmware=choice(Firmware, string(raw, "firmware", where), "firmware", where),
        shapes=[shape for shape in parsed_shapes if shape is not None],
        guest_mismatch_ok=boolean(raw, "guest_mismatch_ok", where),
    )


def _options(table: Mapping[str, Any], where: Where) -> dict[str, str]:
    """Format options as a table, `{ subformat = "streamOptimized", cluster_size = "64k" }`: what `-o` takes."""
    raw = table.get("options", {})
    if not isinstance(raw, dict) or not all(isinstance(v, str | int | bool) for v in raw.values()):
        where.fail("options", 'must be a table of format options, e.g. { subformat = "streamOptimized" }')
    return {key: _option_text(value) for key, value in raw.items()}


def _option_text(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"  # qemu-img's spelling of a boolean option
    return str(value)


def _plain(request: MetadataRequest) -> dict[str, Any]:
    """The request as JSON values, so a record can compare it with the one the output was made with."""
    plain: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(request), default=str, sort_keys=True))
    if request.base is not None:
        stat = os.stat(request.base)
        plain["base_identity"] = [stat.st_size, stat.st_mtime_ns]  # an edited base file changes the archive
    return plain
