"""A batch manifest: TOML naming sources, each with the outputs to make from it, exactly what the single commands
take. The whole file is read and checked before any work starts, and a mistake names the entry, the key and its
line (tomllib gives no positions; `KeyLines` finds them by a scan of the text, good enough for a key's table)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from imagepack.build import (
    ArchiveKind,
    Target,
    TargetKind,
    check_compression,
    disk_format,
    parse_target_kind,
    target_kind,
)
from imagepack.compression import codec_named
from imagepack.errors import ImagepackError, InvalidValueError, MetadataError
from imagepack.formats import DEFAULT_MAX_SIZE, ImageFormat, SafetyPolicy, parse_format
from imagepack.formats.base import VhdSize
from imagepack.oci.metadata import LaunchMode, build_metadata, parse_shape
from imagepack.oci.pack import MetadataRequest
from imagepack.options import create_options
from imagepack.partitions import Firmware
from imagepack.presets import preset_named
from imagepack.sizes import parse_size

E = TypeVar("E", bound=StrEnum)
T = TypeVar("T")

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
)
CHECKSUMS = ("sha256",)


@dataclass(frozen=True)
class OutputEntry:
    target: Target
    name: str  # the path as reports show it: relative to the manifest's directory
    checksum: str | None  # "sha256", or None when the entry asks for none
    settings: dict[str, Any]  # everything that decides the bytes written, for the record
    preset: str | None = None  # `for = NAME`: built as `convert --for NAME` builds it (presets.make_for)
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


@dataclass(frozen=True)
class Manifest:
    path: Path
    root: Path  # its directory: what relative paths in it are relative to
    sources: tuple[SourceEntry, ...]

    @property
    def outputs(self) -> list[tuple[SourceEntry, OutputEntry]]:
        return [(source, output) for source in self.sources for output in source.outputs]


def preset_target(name: str, path: Path, *, options: Mapping[str, str], compress: bool) -> Target:
    """The target `for = NAME` stands for at `path`, as `convert --for NAME` makes it: the preset's kind and
    options, the entry's own options added (a conflicting one is refused)."""
    preset = preset_named(name)
    return preset.target_for(Target(path, preset.output_for(path).kind, options=options, compress=compress))


class KeyLines:
    """Line numbers of table headers and keys, by table: ("source", i) and ("source.output", i, j) for the i-th
    source and its j-th output, ("source.output.oci", i, j) for that output's subtable. A scan of the lines, not
    a TOML parser: keys inside inline tables or multi-line values fall back to their table's line."""

    _HEADER = re.compile(r"\s*(\[\[?)\s*([A-Za-z0-9_.\s\"'-]+?)\s*\]\]?\s*(#.*)?$")
    _KEY = re.compile(r"\s*([A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')\s*(?:\.[^=]*)?=")

    def __init__(self, text: str) -> None:
        self.lines: dict[tuple[object, ...], int] = {}
        table: tuple[object, ...] = ("",)
        source = output = -1
        for number, line in enumerate(text.splitlines(), 1):
            header = self._HEADER.match(line)
            if header:
                name = re.sub(r"\s+", "", header[2]).replace('"', "").replace("'", "")
                if name == "source" and header[1] == "[[":
                    source, output = source + 1, -1
                elif name == "source.output" and header[1] == "[[":
                    output += 1
                table = (name, source) if name == "source" else (name, source, output)
                self.lines.setdefault(table, number)
                continue
            key = self._KEY.match(line)
            if key:
                self.lines.setdefault((*table, key[1].strip("\"'")), number)

    def line(self, table: tuple[object, ...], key: str | None = None) -> int | None:
        """The line of `key` in `table` (or of its own header, for a subtable), else of the key naming the table
        in its parent, else of the table's header."""
        if key is not None and (*table, key) in self.lines:
            return self.lines[(*table, key)]
        if key is not None and (f"{table[0]}.{key}", *table[1:]) in self.lines:
            return self.lines[(f"{table[0]}.{key}", *table[1:])]  # the key is a subtable: its header
        name = str(table[0])
        if "." in name:
            parent, _, child = name.rpartition(".")
            parent_table = (parent, table[1]) if parent == "source" else (parent, *table[1:])
            if (*parent_table, child) in self.lines:
                return self.lines[(*parent_table, child)]
            return self.lines.get(table) or self.line(parent_table)
        return self.lines.get(table)


@dataclass(frozen=True)
class _Where:
    """An entry of the manifest, to name in an error: the file, the entry, and the table its keys are in."""

    manifest: Path
    lines: KeyLines
    entry: str
    table: tuple[object, ...]

    def fail(self, key: str | None, message: str, *, code: str = "batch.manifest") -> NoReturn:
        line = self.lines.line(self.table, key)
        at = f"{self.manifest}:{line}" if line else str(self.manifest)
        what = f"{self.entry}, key {key}" if key else self.entry
        raise InvalidValueError(f"{at}: {what}: {message}", code=code)

    def refusing(self, key: str, e: ImagepackError) -> NoReturn:
        self.fail(key, e.message, code=e.code if e.code != MetadataError.code else InvalidValueError.code)

    def sub(self, name: str) -> _Where:
        return dataclasses.replace(self, table=(f"{self.table[0]}.{name}", *self.table[1:]))


def load_manifest(path: Path) -> Manifest:
    """Read and check the whole manifest; raises InvalidValueError naming the entry, the key and the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InvalidValueError(f"{path}: cannot read the manifest: {e.strerror or e}", code="batch.manifest") from None
    except UnicodeDecodeError:
        raise InvalidValueError(f"{path}: the manifest is not UTF-8 text", code="batch.manifest") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InvalidValueError(f"{path}: not valid TOML: {e}", code="batch.manifest") from None
    lines = KeyLines(text)
    top = _Where(path, lines, "the manifest", ("",))
    _known_keys(document, ("source",), top)
    raw_sources = document.get("source")
    if not isinstance(raw_sources, list) or not raw_sources:
        top.fail("source", "name at least one source, as [[source]] with a path and [[source.output]] tables")
    root = Path(os.path.abspath(path.parent))
    sources = tuple(
        _source(entry, index, root, _Where(path, lines, f"source {index + 1}", ("source", index)))
        for index, entry in enumerate(raw_sources)
    )
    _check_paths(sources, path, lines)
    return Manifest(Path(os.path.abspath(path)), root, sources)


def _known_keys(table: Mapping[str, Any], allowed: tuple[str, ...], where: _Where) -> None:
    for key in table:
        if key not in allowed:
            where.fail(key, f"unknown key; the keys here are {', '.join(allowed)}")


def _source(entry: object, index: int, root: Path, where: _Where) -> SourceEntry:
    if not isinstance(entry, dict):
        where.fail(None, "must be a table with a path and outputs")
    path = _path(entry, "path", root, where)
    where = dataclasses.replace(where, entry=f"{where.entry} ({_name(path, root)})")
    _known_keys(entry, SOURCE_KEYS, where)
    if not path.is_file():
        where.fail("path", f"{_name(path, root)}: no such file")
    claimed = _parsed(entry, "from", parse_format, where)
    policy = SafetyPolicy(
        max_size=_parsed(entry, "max_size", lambda text: parse_size(text, what="max_size"), where) or DEFAULT_MAX_SIZE,
        allow_backing=_bool(entry, "allow_backing", where),
        vhd_size=_choice(VhdSize, _string(entry, "vhd_size", where), "vhd_size", where) or VhdSize.CURRENT,
    )
    disk = _int(entry, "disk", where)
    if disk is not None and disk < 1:
        where.fail("disk", "counts an OVA's disks from 1")
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
    return SourceEntry(path, _name(path, root), claimed, policy, disk, outputs)


def _output(entry: object, root: Path, where: _Where) -> OutputEntry:
    if not isinstance(entry, dict):
        where.fail(None, "must be a table with a path")
    path = _path(entry, "path", root, where)
    where = dataclasses.replace(where, entry=f"{where.entry} ({_name(path, root)})")
    _known_keys(entry, OUTPUT_KEYS, where)
    options = _options(entry, where)
    preset = _string(entry, "for", where)
    format_text = _string(entry, "format", where)
    compress = _bool(entry, "compress", where)
    asked: TargetKind | None = None
    if preset is not None:
        if format_text is not None:
            where.fail("for", "give either a format or a preset (for), not both")
        try:
            made_for = preset_target(preset, path, options=options, compress=compress)
        except InvalidValueError as e:
            where.refusing("for", e)
        asked, options = made_for.kind, dict(made_for.options)
    elif "resize_up" in entry:
        where.fail("resize_up", "applies only to an output made for a preset (for = NAME)")
    try:
        if format_text is not None:
            asked = parse_target_kind(format_text)
        kind = asked if preset is not None and asked is not None else target_kind(path, asked)
    except InvalidValueError as e:
        where.refusing("format" if format_text else "path", e)
    try:
        checked = create_options(disk_format(kind), options, compress=compress)
    except InvalidValueError as e:
        where.refusing("options" if options else "compress", e)
    metadata = _metadata(entry, root, where) if kind is ArchiveKind.OCI else None
    if kind is not ArchiveKind.OCI and "oci" in entry:
        where.fail("oci", f"image metadata applies only to a .oci output, not {kind.value}")
    checksum: str | None = "sha256"
    if "checksum" in entry:
        value = entry["checksum"]
        if value is False:
            checksum = None
        elif value is not True and value not in CHECKSUMS:
            where.fail("checksum", f"{value!r}: give {' or '.join(repr(c) for c in CHECKSUMS)}, or false for none")
    target = Target(
        path,
        kind,
        options=options,
        compress=compress,
        metadata=metadata,
        compression=codec_named(path),  # a preset's GCE tarball is named .tar.gz: the tarball is gzip's
        level=_int(entry, "level", where),
        threads=_int(entry, "threads", where),
        checksum=checksum is not None,  # the build hashes the output as it writes it
    )
    try:
        check_compression(target)
    except InvalidValueError as e:
        where.refusing("level" if target.level is not None else "threads", e)
    resize_up = _bool(entry, "resize_up", where)
    settings = {
        "format": kind.value,
        "options": checked,
        "compress": compress,
        "compression": target.compression.value if target.compression else None,
        "level": target.level,
        "metadata": _plain(metadata) if metadata else None,
        "preset": preset,
        "resize_up": resize_up,
    }
    return OutputEntry(target, _name(path, root), checksum, settings, preset=preset, resize_up=resize_up)


def _metadata(entry: Mapping[str, Any], root: Path, where: _Where) -> MetadataRequest:
    """A .oci output's `oci` table, checked as `pack` checks its options: before any input is read."""
    raw = entry.get("oci", {})
    where = where.sub("oci")
    if not isinstance(raw, dict):
        where.fail(None, "must be a table of image metadata (os, os_version, launch_mode, firmware, ...)")
    _known_keys(raw, OCI_KEYS, where)
    overrides = raw.get("launch_options", {})
    if not isinstance(overrides, dict) or not all(isinstance(v, str | bool) for v in overrides.values()):
        where.fail("launch_options", "must be a table of launch option names to values")
    overrides = {key: _option_text(value) for key, value in overrides.items()}
    shapes = raw.get("shapes", [])
    if not isinstance(shapes, list) or not all(isinstance(s, str) for s in shapes):
        where.fail("shapes", 'must be a list of shapes, e.g. ["VM.Standard.E4.Flex:1-64:1-1024"]')
    os_name, os_version = _string(raw, "os", where), _string(raw, "os_version", where)
    # Stand-ins for what is not given, as `pack` checks its options: a bad value is refused before any work.
    for key, os_text, version_text, launch in (
        ("os", "Linux" if os_name is None else os_name, "1", {}),
        ("os_version", "Linux", "1" if os_version is None else os_version, {}),
        ("launch_options", "Linux", "1", overrides),
    ):
        try:
            build_metadata(
                operating_system=os_text,
                operating_system_version=version_text,
                firmware=Firmware.BIOS,
                overrides=launch,
            )
        except (InvalidValueError, MetadataError) as e:
            where.refusing(key, e)
    parsed_shapes = [_parsed({"shapes": text}, "shapes", parse_shape, where) for text in shapes]
    base = _path(raw, "metadata", root, where) if "metadata" in raw else None
    if base is not None and not base.is_file():
        where.fail("metadata", f"{_name(base, root)}: no such file")
    return MetadataRequest(
        operating_system=os_name,
        operating_system_version=os_version,
        launch_mode=_choice(LaunchMode, _string(raw, "launch_mode", where), "launch_mode", where),
        firmware=_choice(Firmware, _string(raw, "firmware", where), "firmware", where),
        overrides=overrides,
        shapes=[shape for shape in parsed_shapes if shape is not None],
        base=base,
        strict=_bool(raw, "strict", where),
        os_unlisted=_bool(raw, "os_unlisted", where),
    )


def _check_paths(sources: tuple[SourceEntry, ...], manifest: Path, lines: KeyLines) -> None:
    """Two outputs with one path would race to the same file; an output that is a source would destroy it."""
    inputs = {os.path.realpath(source.path): source.name for source in sources}
    seen: dict[str, str] = {}
    for i, source in enumerate(sources):
        for j, output in enumerate(source.outputs):
            where = _Where(
                manifest,
                lines,
                f"source {i + 1} ({source.name}), output {j + 1} ({output.name})",
                ("source.output", i, j),
            )
            real = os.path.realpath(output.target.path)
            if real in inputs:
                where.fail("path", f"is the source {inputs[real]}; an output must not overwrite an input")
            if real in seen:
                where.fail("path", f"is also the path of {seen[real]}; give every output its own path")
            seen[real] = where.entry


def _path(table: Mapping[str, Any], key: str, root: Path, where: _Where) -> Path:
    text = _string(table, key, where)
    if not text:
        where.fail(key, "a path is required")
    return Path(os.path.normpath(root / os.path.expanduser(text)))


def _name(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _string(table: Mapping[str, Any], key: str, where: _Where) -> str | None:
    value = table.get(key)
    if value is not None and not isinstance(value, str):
        where.fail(key, f"must be a string, not {_toml_type(value)}")
    return value


def _parsed(table: Mapping[str, Any], key: str, parse: Callable[[str], T], where: _Where) -> T | None:
    """A string value read by the library's own parser; its refusal names the key."""
    text = _string(table, key, where)
    if text is None:
        return None
    try:
        return parse(text)
    except InvalidValueError as e:
        where.refusing(key, e)


def _bool(table: Mapping[str, Any], key: str, where: _Where) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        where.fail(key, f"must be true or false, not {_toml_type(value)}")
    return value


def _int(table: Mapping[str, Any], key: str, where: _Where) -> int | None:
    value = table.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        where.fail(key, f"must be an integer, not {_toml_type(value)}")
    return value


def _options(table: Mapping[str, Any], where: _Where) -> dict[str, str]:
    """Format options as a table, `{ subformat = "streamOptimized", cluster_size = "64k" }`: what `-o` takes."""
    raw = table.get("options", {})
    if not isinstance(raw, dict) or not all(isinstance(v, str | int | bool) for v in raw.values()):
        where.fail("options", 'must be a table of format options, e.g. { subformat = "streamOptimized" }')
    return {key: _option_text(value) for key, value in raw.items()}


def _option_text(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"  # qemu-img's spelling of a boolean option
    return str(value)


def _choice(kind: type[E], value: str | None, key: str, where: _Where) -> E | None:
    """A named value in any case, stored as OCI or qemu spells it, as the command line takes it."""
    if value is None:
        return None
    for member in kind:
        if member.value.casefold() == value.strip().casefold():
            return member
    where.fail(key, f"{value!r}: use one of {' | '.join(m.value for m in kind)}", code=InvalidValueError.code)


def _toml_type(value: object) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }
    return next((name for kind, name in names.items() if isinstance(value, kind)), "a date")


def _plain(request: MetadataRequest) -> dict[str, Any]:
    """The request as JSON values, so a record can compare it with the one the output was made with."""
    plain: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(request), default=str, sort_keys=True))
    if request.base is not None:
        stat = os.stat(request.base)
        plain["base_identity"] = [stat.st_size, stat.st_mtime_ns]  # an edited base file changes the archive
    return plain
