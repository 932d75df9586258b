"""Which options make a target, and may it be written: answered once, for `convert`, `pack`, `convert --for` and
a batch manifest's outputs alike, before any input is read. A refusal names the setting it is about, so that a
manifest can point at its key while the command line shows the same message."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from enum import StrEnum
from pathlib import Path
from typing import NoReturn

from imagepack.compression import codec_named
from imagepack.core.errors import InvalidValueError
from imagepack.files.atomic import check_target
from imagepack.files.checksums import OBJECT_PUT_PART_SIZE, check_part_size
from imagepack.formats.create_options import create_options
from imagepack.oci.metadata.requested import check_request
from imagepack.verbs.presets import Preset
from imagepack.verbs.target import ArchiveKind, Target, TargetKind, check_compression, disk_format, target_kind
from imagepack.writers.disk import StreamWriter
from imagepack.writers.oci.pack import MetadataRequest


class Setting(StrEnum):
    """Which of the asked settings a refusal is about."""

    KIND = "kind"  # the format asked for, or the name that says it
    PRESET = "preset"  # the platform, and what it takes
    OPTIONS = "options"  # the format options, compression of the disk included
    COMPRESSION = "compression"  # the level and the threads
    METADATA = "metadata"  # image metadata where it cannot go
    PART_SIZE = "part_size"


# What a caller does with a refused setting (a manifest: names its key); without one, the refusal is raised.
Refused = Callable[[Setting, InvalidValueError], NoReturn]


@contextlib.contextmanager
def _refusing(setting: Setting, refused: Refused | None) -> Iterator[None]:
    try:
        yield
    except InvalidValueError as e:
        if refused is None:
            raise
        refused(setting, e)


def wanted_target(
    path: Path,
    *,
    to: TargetKind | None = None,
    preset: Preset | None = None,
    options: Mapping[str, str] | None = None,
    compress: bool = False,
    force: bool = False,
    sync: bool = False,
    level: int | None = None,
    threads: int | None = None,
    stream_writer: StreamWriter = StreamWriter.IMAGEPACK,
    checksum: bool = False,
    part_size: int = OBJECT_PUT_PART_SIZE,
    refused: Refused | None = None,
) -> Target:
    """The target the options ask for at `path`: of the kind `to` (or the name) says, or as `preset` writes it
    (the kind the name asks of it, its options over the given ones); compressed as the name says. A .oci's image
    metadata is the caller's to add (`Target.metadata`): it is read from options of its own. A refusal goes to
    `refused` with the setting it is about, when given."""
    with _refusing(Setting.PRESET if preset is not None else Setting.KIND, refused):
        kind = preset.output_for(path).kind if preset is not None else target_kind(path, to)
    target = Target(
        path,
        kind,
        options=dict(options or {}),
        compress=compress,
        force=force,
        sync=sync,
        compression=codec_named(path),  # a preset's GCE tarball is named .tar.gz: the tarball is gzip's
        level=level,
        threads=threads,
        stream_writer=stream_writer,
        checksum=checksum,
        part_size=part_size,
    )
    if preset is not None:
        with _refusing(Setting.PRESET, refused):
            target = preset.target_for(target)
    return target


def preflight(
    target: Target,
    *,
    preset: Preset | None = None,
    inputs: tuple[Path, ...] = (),
    output: bool = True,
    refused: Refused | None = None,
) -> Target:
    """Refuse a target that cannot be written, before any input is read: a name that disagrees with its kind or
    compression, options its format does not take, a level or threads with nothing to apply to, image metadata
    on anything but a .oci (or metadata the archive would refuse whatever the disk says), a part size Object
    Storage would not take; with `output`, a path that is an input, a directory, or exists without force (a
    batch checks its outputs' paths together, batch/writes.py). Returns the target as it will be built: as
    `preset` takes it, when given. A refused setting goes to `refused` when given; a refused metadata raises
    RequestRefused."""
    if preset is not None:
        with _refusing(Setting.PRESET, refused):
            target = preset.target_for(target)
    with _refusing(Setting.KIND, refused):
        target_kind(target.path, target.kind)  # a name that says another format would mislabel the output
    with _refusing(Setting.OPTIONS, refused):
        create_options(disk_format(target.kind), target.options, compress=target.compress)
    with _refusing(Setting.COMPRESSION, refused):
        check_compression(target)
    with _refusing(Setting.METADATA, refused):
        _check_archive_settings(target)
    if target.metadata is not None:
        check_metadata(target.metadata)
    if target.checksum:
        with _refusing(Setting.PART_SIZE, refused):
            check_part_size(target.part_size)  # before any writing, not once the output is made
    if output:
        check_target(target.path, force=target.force, inputs=inputs)
    return target


def _check_archive_settings(target: Target) -> None:
    """Image metadata goes only in a .oci; a .oci's disk is never grown."""
    if target.metadata is not None and target.kind is not ArchiveKind.OCI:
        what = "a GCE tarball" if target.kind is ArchiveKind.GCE else target.kind.value
        raise InvalidValueError(f"{target.path}: image metadata applies only to a .oci target, not {what}")
    if target.grow_to is not None and target.kind is ArchiveKind.OCI:
        raise InvalidValueError(f"{target.path}: growing the disk works for raw and fixed VHD outputs, not a .oci")


def check_metadata(request: MetadataRequest) -> None:
    """What the archive would refuse of the asked metadata whatever the disk says: for `pack`'s options and a
    manifest's `oci` table alike (raises RequestRefused, naming the value)."""
    check_request(
        operating_system=request.operating_system,
        operating_system_version=request.operating_system_version,
        launch_mode=request.launch_mode,
        overrides=request.overrides,
        strict=request.strict,
        has_base=request.base is not None,
        os_unlisted=request.os_unlisted,
    )
