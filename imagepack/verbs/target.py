"""What a build makes: a `Target` (where, of which kind, how) and the checks of its settings that need no input:
the name agrees with the kind and the compression, a level or threads have something to apply to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from imagepack.compression import THREADED, Codec, check_settings, codec_named
from imagepack.core.errors import InvalidValueError
from imagepack.files.checksums import OBJECT_PUT_PART_SIZE
from imagepack.formats import ImageFormat, format_claimed_by_name, parse_format
from imagepack.formats.create_options import create_options
from imagepack.writers.disk import DiskRequest, StreamWriter, check_disk_level, output_format, uses_threads
from imagepack.writers.oci.pack import MetadataRequest


class ArchiveKind(StrEnum):
    OCI = "oci"
    GCE = "gce"  # disk.raw in a sparse GNU tar, as GCE's image import takes it (named .tar, or .tar.gz)


TargetKind = ImageFormat | ArchiveKind


def parse_target_kind(name: str) -> TargetKind:
    """A disk format or 'oci', as `--to` takes it."""
    return ArchiveKind.OCI if name.strip().lower() == ArchiveKind.OCI else parse_format(name)


def target_kind(path: Path, to: TargetKind | None = None) -> TargetKind:
    """What to write at `path`: `to` when given, else what the name says; the two must not disagree. A name
    ending in a compression suffix (`disk.qcow2.zst`) is judged by the suffix before it."""
    inner = inner_path(path)
    if to is ArchiveKind.GCE:
        if inner.suffix.lower() != ".tar":
            raise InvalidValueError(
                f"{path}: a GCE image tarball is a tar; name it {inner.stem}.tar.gz", code="target.name-disagrees"
            )
        return ArchiveKind.GCE
    named = ArchiveKind.OCI if inner.suffix.lower() == ".oci" else format_claimed_by_name(inner)  # '.img': nothing
    if to is not None and named is not None and to != named:
        codec = codec_named(path)
        raise InvalidValueError(
            f"{path}: the format asked for, {to.value}, contradicts the name, which says {named.value}; "
            f"name it {inner.stem}.{to.value}{'.' + codec.value if codec else ''}",
            code="target.name-disagrees",
        )
    if to is ArchiveKind.OCI or named is ArchiveKind.OCI:
        return ArchiveKind.OCI
    return output_format(inner, to)


def inner_path(path: Path) -> Path:
    """`path` without the compression suffix its name ends in, if any: the artifact that is compressed."""
    return path.with_suffix("") if codec_named(path) is not None and path.stem else path


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
    compression: Codec | None = None  # the whole output compressed; its name must end in the codec's suffix
    level: int | None = None  # the codec's level (its default when None)
    threads: int | None = None  # compressing threads, zstd's and the disk's (one per core when None)
    stream_writer: StreamWriter = StreamWriter.IMAGEPACK  # who writes a stream-optimized vmdk
    grow_to: int | None = None  # the disk's virtual size when larger than the source's (raw, fixed VHD, GCE)
    checksum: bool = False  # report the output's checksums, as Object Storage will show them
    part_size: int = OBJECT_PUT_PART_SIZE  # for the multipart MD5 of those


def disk_format(kind: TargetKind) -> ImageFormat:
    """The format of the disk a target holds: a .oci's is qcow2, a GCE tarball's raw."""
    if kind is ArchiveKind.OCI:
        return ImageFormat.QCOW2
    if kind is ArchiveKind.GCE:
        return ImageFormat.RAW
    return kind


def disk_request(target: Target, *, copy_if_unchanged: bool = False) -> DiskRequest:
    """The disk `target` holds, as the disk writer takes it (the level only where no codec compresses the whole
    output: then it is the disk's own codec's)."""
    return DiskRequest(
        disk_format(target.kind),
        options=target.options,
        compress=target.compress,
        copy_if_unchanged=copy_if_unchanged,
        grow_to=target.grow_to,
        threads=target.threads,
        stream_writer=target.stream_writer,
        level=target.level if target.compression is None else None,
    )


def check_compression(target: Target) -> None:
    """The name and the compression must agree (a zstd stream named .qcow2 is read as what it is not), the level
    must be the codec's (or the disk's own: a stream vmdk's grains', a compressed qcow2's clusters'), and threads
    must have something to run: zstd, a compressed qcow2 or a stream vmdk."""
    named = codec_named(target.path)
    if named != target.compression:
        said = f"{named.value}-compressed" if named else "not compressed"
        asked = f"{target.compression.value}-compressed" if target.compression else "not compressed"
        raise InvalidValueError(
            f"{target.path}: the name says {said}, but the output asked for is {asked}",
            code="target.name-disagrees",
        )
    fmt = disk_format(target.kind)
    options = create_options(fmt, target.options, compress=target.compress)
    if target.threads is not None:
        if target.threads < 1:
            raise InvalidValueError(f"threads {target.threads}: give at least one")
        if not uses_threads(fmt, options, compress=target.compress) and target.compression not in THREADED:
            raise InvalidValueError(
                "threads apply to a compressed output: a zstd or xz stream, a compressed qcow2 (or .oci) or a "
                "stream-optimized vmdk"
            )
    if target.compression is None:  # the level is the disk's own codec's, if it has one
        check_disk_level(fmt, options, compress=target.compress, stream_writer=target.stream_writer, level=target.level)
        return
    check_settings(target.compression, level=target.level, threads=codec_threads(target))


def codec_threads(target: Target) -> int | None:
    """The threads the output's codec gets: zstd's and xz's; gzip runs on one (the disk may still use them)."""
    return target.threads if target.compression in THREADED else None
