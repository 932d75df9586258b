"""One path from any source to any target: `build` makes a target from an opened source and picks how by the
target's kind: a disk format (converted by qemu-img) or a .oci archive (packed in one pass). `convert`, `pack`
and whatever comes next (presets, batches) are calls of it."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from imagepack.atomic import check_target
from imagepack.convert import output_format, write_disk
from imagepack.errors import InvalidValueError
from imagepack.formats import ImageFormat, SafetyPolicy, format_claimed_by_name, parse_format
from imagepack.inputs import Source, open_source
from imagepack.oci.metadata import ImageMetadata
from imagepack.oci.pack import MetadataRequest, make_metadata, pack_disk, with_descriptor
from imagepack.problems import Problem
from imagepack.progress import Progress


class ArchiveKind(StrEnum):
    OCI = "oci"


TargetKind = ImageFormat | ArchiveKind


def parse_target_kind(name: str) -> TargetKind:
    """A disk format or 'oci', as `--to` takes it."""
    return ArchiveKind.OCI if name.strip().lower() == ArchiveKind.OCI else parse_format(name)


def target_kind(path: Path, to: TargetKind | None = None) -> TargetKind:
    """What to write at `path`: `to` when given, else what the name says; the two must not disagree."""
    named = ArchiveKind.OCI if path.suffix.lower() == ".oci" else format_claimed_by_name(path)  # '.img': nothing
    if to is not None and named is not None and to != named:
        raise InvalidValueError(
            f"{path}: the format asked for, {to.value}, contradicts the name, which says {named.value}; "
            f"name it {path.stem}.{to.value}",
            code="target.name-disagrees",
        )
    if to is ArchiveKind.OCI or named is ArchiveKind.OCI:
        return ArchiveKind.OCI
    return output_format(path, to)


@dataclass(frozen=True)
class Target:
    """What to make: where, of which kind, and how."""

    path: Path
    kind: TargetKind
    options: Mapping[str, str] = field(default_factory=dict)  # format options (qcow2 ones for a .oci's disk)
    compress: bool = False
    metadata: MetadataRequest | None = None  # a .oci's image_metadata.json; only for a .oci
    force: bool = False
    sync: bool = False


@dataclass(frozen=True)
class BuildResult:
    source: Path
    source_format: str
    target: Path
    format: str
    virtual_size: int
    size: int
    options: dict[str, str]
    copied: bool
    seconds: float
    metadata: ImageMetadata | None = None  # what a .oci target carries
    disk_size: int | None = None  # a .oci's disk member
    warnings: list[Problem] = field(default_factory=list)  # and notes

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "source": str(self.source),
            "source_format": self.source_format,
            "target": str(self.target),
            "format": self.format,
            "virtual_size": self.virtual_size,
            "size": self.size,
            "options": self.options,
            "copied": self.copied,
            "seconds": round(self.seconds, 3),
        }
        if self.metadata is not None:
            data.update(disk_size=self.disk_size, metadata=self.metadata.to_json())
        data["problems"] = [problem.to_json() for problem in self.warnings]
        return data


def build(source: Source, target: Target, *, on_progress: Progress | None = None) -> BuildResult:
    """Make `target` from `source`; the source is never modified, the target appears whole or not at all."""
    started = time.monotonic()
    target_kind(target.path, target.kind)  # a name that says another format would mislabel the output
    check_target(target.path, force=target.force, inputs=(source.path,))
    image = source.disk
    if target.kind is ArchiveKind.OCI:
        inherited = source.archive.metadata if source.archive else None  # a .oci repacked keeps its metadata
        request = with_descriptor(
            target.metadata or MetadataRequest(), source.ova.layout.descriptor if source.ova else None
        )
        metadata, warnings = make_metadata(request, image, inherited=inherited)
        packed = pack_disk(
            image,
            target.path,
            metadata,
            warnings,
            options=target.options,
            compress=target.compress,
            sync=target.sync,
            on_progress=on_progress,
        )
        return _result(
            source,
            target,
            started,
            options=dict(target.options),
            copied=packed.copied,
            metadata=packed.metadata,
            disk_size=packed.disk_size,
            warnings=packed.warnings,
        )
    if target.metadata is not None:
        raise InvalidValueError(f"{target.path}: image metadata applies only to a .oci target, not {target.kind.value}")
    written = write_disk(
        image,
        target.path,
        target.kind,
        options=target.options,
        compress=target.compress,
        sync=target.sync,
        on_progress=on_progress,
    )
    return _result(source, target, started, options=written.options, copied=written.copied)


def _result(
    source: Source,
    target: Target,
    started: float,
    *,
    options: dict[str, str],
    copied: bool,
    metadata: ImageMetadata | None = None,
    disk_size: int | None = None,
    warnings: list[Problem] | None = None,
) -> BuildResult:
    return BuildResult(
        source=source.path,
        source_format=source.format,
        target=target.path,
        format=target.kind.value,
        virtual_size=source.virtual_size,
        size=os.stat(target.path).st_size,
        options=options,
        copied=copied,
        seconds=time.monotonic() - started,
        metadata=metadata,
        disk_size=disk_size,
        warnings=warnings or [],
    )


def make(
    source: Path,
    target: Target,
    *,
    claimed: ImageFormat | None = None,
    policy: SafetyPolicy = SafetyPolicy(),
    on_progress: Progress | None = None,
    disk: int | None = None,
) -> BuildResult:
    """Open `source` and build `target` from it (`disk`: which of an OVA's disks). The target is checked first, so
    a refusal costs no reading; a disk that must be extracted goes beside the target."""
    target_kind(target.path, target.kind)
    check_target(target.path, force=target.force, inputs=(source,))
    with open_source(source, claimed=claimed, policy=policy, scratch=target.path.parent, disk=disk) as opened:
        return build(opened, target, on_progress=on_progress)
