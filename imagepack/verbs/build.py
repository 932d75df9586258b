"""One path from any source to any target: `build` makes a target from an opened source and picks how by the
target's kind: a disk format (converted by qemu-img) or a .oci archive (packed in one pass). `convert`, `pack`
and whatever comes next (presets, batches) are calls of it."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from imagepack.compression import STREAMS, THREADED, Codec, check_settings, codec_named, compress_into
from imagepack.compression.files import CODEC_STREAMS
from imagepack.core.errors import ImagepackError, InvalidValueError
from imagepack.core.openfile import opened_input
from imagepack.core.problems import Problem
from imagepack.core.progress import Progress, stage
from imagepack.files.atomic import atomic_output, check_free_space, check_target
from imagepack.files.checksums import OBJECT_PUT_PART_SIZE, Checksums, Digester, check_part_size, checksum_file
from imagepack.files.leftovers import scratch_directory
from imagepack.formats import ImageFormat, SafetyPolicy, format_claimed_by_name, parse_format
from imagepack.formats.create_options import create_options
from imagepack.oci.metadata import ImageMetadata
from imagepack.sources.open import OpenOptions, Source, SourceKind, open_in_stages
from imagepack.writers.disk import (
    StreamWriter,
    can_copy,
    is_stream_vmdk,
    output_format,
    plan_disk,
    uses_threads,
    write_disk,
)
from imagepack.writers.gce import pack_gce_tarball
from imagepack.writers.oci.choose import Origin
from imagepack.writers.oci.pack import MetadataRequest, PackedArchive, make_metadata, pack_disk, with_descriptor
from imagepack.writers.onepass import NotOnePass, decompress_raw, one_pass_for, pack_compressed


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
    compression: str | None = None  # the stream the output is, "zstd", "xz" or "gzip"
    preset: str | None = None  # the platform it was made for (presets.PRESETS)
    checksum: Checksums | None = None  # of the file written, when asked for
    uncompressed_size: int | None = None  # what the output would weigh with its disk not compressed (--compress)
    sources: dict[str, Origin] = field(default_factory=dict)  # a .oci's: where each metadata value came from

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            **({"preset": self.preset} if self.preset else {}),
            "source": str(self.source),
            "source_format": self.source_format,
            "target": str(self.target),
            "format": self.format,
            "compression": self.compression,
            "virtual_size": self.virtual_size,
            "size": self.size,
            "options": self.options,
            "copied": self.copied,
            "seconds": round(self.seconds, 3),
            "checksum": self.checksum.to_json() if self.checksum else None,
        }
        if self.uncompressed_size is not None:
            data["uncompressed_size"] = self.uncompressed_size
        if self.metadata is not None:
            data.update(
                disk_size=self.disk_size,
                metadata=self.metadata.to_json(),
                sources={key: origin.to_json() for key, origin in self.sources.items()},
            )
        data["problems"] = [problem.to_json() for problem in self.warnings]
        return data


def build(
    source: Source, target: Target, *, scratch: Path | None = None, on_progress: Progress | None = None
) -> BuildResult:
    """Make `target` from `source`; the source is never modified, the target appears whole or not at all.

    A compressed target is built uncompressed into a temporary file in `scratch` (the target's directory by
    default), compressed into place and the temporary removed, whatever happens; a raw disk that is already
    the bytes to write is compressed from the source without one.

    With `target.checksum`, the output's checksums come from the bytes as they are written where they pass
    through Python (the compressor), and from reading the file back once written where qemu-img or the kernel
    (copy_file_range) wrote them."""
    started = time.monotonic()
    target_kind(target.path, target.kind)  # a name that says another format would mislabel the output
    check_compression(target)
    check_target(target.path, force=target.force, inputs=(source.path,))
    if target.checksum:
        check_part_size(target.part_size)  # before any writing, not once the output is made
    if target.compression is None:
        if not target.checksum:
            return _build_plain(source, target, started, on_progress=on_progress)
        built = _build_plain(source, target, started, on_progress=stage(on_progress, "writing", 0.0, 0.8))
        read_back = checksum_file(
            target.path, part_size=target.part_size, on_progress=stage(on_progress, "checksumming", 0.8, 1.0)
        )
        return replace(built, checksum=read_back, seconds=time.monotonic() - started)
    codec = target.compression
    image = source.disk
    if (
        target.kind is ImageFormat.RAW
        and target.grow_to is None
        and can_copy(image, ImageFormat.RAW, options=target.options, compress=False)
    ):
        length = image.ref.size if image.ref.size is not None else os.stat(image.ref.path).st_size - image.ref.offset
        check_free_space(target.path, length)
        with atomic_output(target.path, sync=target.sync) as out:
            sums = compress_into(
                image.ref.path,
                out,
                to=codec,
                level=target.level,
                threads=_codec_threads(target),
                offset=image.ref.offset,
                length=length,
                digester=_digester(target),
                on_progress=on_progress,
            )
        return _result(
            source,
            target,
            started,
            options={},
            copied=True,
            compression=STREAMS[CODEC_STREAMS[codec]],
            checksum=sums,
        )
    where = scratch or target.path.parent
    check_room_for_both(source, target, where)
    with scratch_directory(where) as tmp:
        inner = Target(
            Path(tmp, inner_path(target.path).name),
            target.kind,
            options=target.options,
            compress=target.compress,
            metadata=target.metadata,
            grow_to=target.grow_to,
            threads=target.threads,
            stream_writer=target.stream_writer,
        )
        try:
            built = _build_plain(source, inner, started, on_progress=stage(on_progress, "writing", 0.0, 0.5))
            with atomic_output(target.path, sync=target.sync) as out:
                sums = compress_into(
                    inner.path,
                    out,
                    to=codec,
                    level=target.level,
                    threads=_codec_threads(target),
                    digester=_digester(target),
                    on_progress=stage(on_progress, "compressing", 0.5, 1.0),
                )
        except ImagepackError as e:
            # The user named the compressed output and never sees the temporary's name.
            e.message = e.message.replace(os.path.abspath(inner.path), str(target.path))
            e.message = e.message.replace(str(inner.path), str(target.path))
            raise
    return _result(
        source,
        target,
        started,
        options=built.options,
        copied=built.copied,
        metadata=built.metadata,
        disk_size=built.disk_size,
        warnings=built.warnings,
        sources=built.sources,
        compression=STREAMS[CODEC_STREAMS[codec]],
        checksum=sums,
    )


def _digester(target: Target) -> Digester | None:
    return Digester(target.part_size) if target.checksum else None


def check_compression(target: Target) -> None:
    """The name and the compression must agree (a zstd stream named .qcow2 is read as what it is not), the level
    must be the codec's, and threads must have something to run: zstd, a compressed qcow2 or a stream vmdk."""
    named = codec_named(target.path)
    if named != target.compression:
        said = f"{named.value}-compressed" if named else "not compressed"
        asked = f"{target.compression.value}-compressed" if target.compression else "not compressed"
        raise InvalidValueError(
            f"{target.path}: the name says {said}, but the output asked for is {asked}",
            code="target.name-disagrees",
        )
    if target.threads is not None:
        if target.threads < 1:
            raise InvalidValueError(f"threads {target.threads}: give at least one")
        fmt = disk_format(target.kind)
        options = create_options(fmt, target.options, compress=target.compress)
        if not uses_threads(fmt, options, compress=target.compress) and target.compression not in THREADED:
            raise InvalidValueError(
                "threads apply to a compressed output: a zstd or xz stream, a compressed qcow2 (or .oci) or a "
                "stream-optimized vmdk"
            )
    if target.compression is None:
        if target.level is not None and not _grain_level(target):
            raise InvalidValueError(
                f"level {target.level}: a level applies only to a compressed target (name it .zst, .xz or .gz) "
                "or a stream-optimized vmdk"
            )
        return
    check_settings(target.compression, level=target.level, threads=_codec_threads(target))


def _grain_level(target: Target) -> bool:
    """Whether the level is a stream vmdk's grain level (checked when its writer is planned)."""
    fmt = disk_format(target.kind)
    return target.stream_writer is StreamWriter.IMAGEPACK and is_stream_vmdk(fmt, target.options)


def _codec_threads(target: Target) -> int | None:
    """The threads the output's codec gets: zstd's and xz's; gzip runs on one (the disk may still use them)."""
    return target.threads if target.compression in THREADED else None


def check_room_for_both(source: Source, target: Target, scratch: Path) -> None:
    """The uncompressed temporary and the compressed output exist together for a while; the output can need as
    much as the temporary (incompressible data), so both must fit, on one file system or on two."""
    image = source.disk
    fmt = disk_format(target.kind)
    needed = plan_disk(
        image, fmt, options=target.options, compress=target.compress, copy_if_unchanged=True, grow_to=target.grow_to
    ).needed
    if target.kind is ArchiveKind.OCI:
        needed += 1024**2  # the metadata member, headers and padding
    temp = scratch / target.path.name
    if os.stat(scratch).st_dev == os.stat(target.path.parent).st_dev:
        check_free_space(temp, 2 * needed)
    else:
        check_free_space(temp, needed)
        check_free_space(target.path, needed)


def disk_format(kind: TargetKind) -> ImageFormat:
    """The format of the disk a target holds: a .oci's is qcow2, a GCE tarball's raw."""
    if kind is ArchiveKind.OCI:
        return ImageFormat.QCOW2
    if kind is ArchiveKind.GCE:
        return ImageFormat.RAW
    return kind


def _build_plain(source: Source, target: Target, started: float, *, on_progress: Progress | None = None) -> BuildResult:
    image = source.disk
    if target.grow_to is not None and target.kind is ArchiveKind.OCI:
        raise InvalidValueError(f"{target.path}: growing the disk works for raw and fixed VHD outputs, not a .oci")
    if target.kind is ArchiveKind.GCE:
        if target.metadata is not None:
            raise InvalidValueError(f"{target.path}: image metadata applies only to a .oci target, not a GCE tarball")
        pack_gce_tarball(image, target.path, grow_to=target.grow_to, sync=target.sync, on_progress=on_progress)
        return _result(source, target, started, options={}, copied=False)
    if target.kind is ArchiveKind.OCI:
        inherited = source.archive.metadata if source.archive else None  # a .oci repacked keeps its metadata
        request = with_descriptor(
            target.metadata or MetadataRequest(), source.ova.layout.descriptor if source.ova else None
        )
        metadata, warnings, sources = make_metadata(request, image, inherited=inherited)
        packed = pack_disk(
            image,
            target.path,
            metadata,
            warnings,
            sources=sources,
            options=target.options,
            compress=target.compress,
            threads=target.threads,
            stream_writer=target.stream_writer,
            sync=target.sync,
            on_progress=on_progress,
        )
        built = _result(
            source,
            target,
            started,
            options=dict(target.options),
            copied=packed.copied,
            metadata=packed.metadata,
            disk_size=packed.disk_size,
            warnings=packed.warnings,
            sources=packed.sources,
        )
        if packed.uncompressed_disk_size is None:
            return built
        return replace(built, uncompressed_size=built.size - packed.disk_size + packed.uncompressed_disk_size)
    if target.metadata is not None:
        raise InvalidValueError(f"{target.path}: image metadata applies only to a .oci target, not {target.kind.value}")
    written = write_disk(
        image,
        target.path,
        target.kind,
        options=target.options,
        compress=target.compress,
        grow_to=target.grow_to,
        threads=target.threads,
        stream_writer=target.stream_writer,
        level=target.level,
        sync=target.sync,
        on_progress=on_progress,
    )
    built = _result(source, target, started, options=written.options, copied=written.copied)
    return replace(built, uncompressed_size=written.uncompressed_size)


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
    sources: dict[str, Origin] | None = None,
    compression: str | None = None,
    checksum: Checksums | None = None,
) -> BuildResult:
    return BuildResult(
        source=source.path,
        source_format=source.format,
        target=target.path,
        format=target.kind.value,
        virtual_size=max(source.virtual_size, target.grow_to or 0),
        size=os.stat(target.path).st_size,
        options=options,
        copied=copied,
        seconds=time.monotonic() - started,
        metadata=metadata,
        disk_size=disk_size,
        warnings=warnings or [],
        sources=sources or {},
        compression=compression,
        checksum=checksum,
    )


def make(
    source: Path,
    target: Target,
    *,
    claimed: ImageFormat | None = None,
    policy: SafetyPolicy = SafetyPolicy(),
    scratch: Path | None = None,
    on_progress: Progress | None = None,
    disk: int | None = None,
) -> BuildResult:
    """Open `source` and build `target` from it (`disk`: which of an OVA's disks). The target is checked first, so
    a refusal costs no reading; a disk that must be extracted, and the uncompressed temporary of a compressed
    target, go in `scratch` (beside the target by default). A compressed qcow2 packed into a .oci, and a
    compressed raw disk written as raw, need no temporary (onepass.py)."""
    started = time.monotonic()
    target_kind(target.path, target.kind)
    check_compression(target)
    check_target(target.path, force=target.force, inputs=(source,))
    if target.checksum:
        check_part_size(target.part_size)  # before any writing, not once the output is made
    with opened_input(source) as opened:  # once: every reader below reads this open file, never the name again
        return _make_opened(
            opened, target, started, claimed=claimed, policy=policy, scratch=scratch, on_progress=on_progress, disk=disk
        )


def _make_opened(
    source: Path,
    target: Target,
    started: float,
    *,
    claimed: ImageFormat | None,
    policy: SafetyPolicy,
    scratch: Path | None,
    on_progress: Progress | None,
    disk: int | None,
) -> BuildResult:
    if disk is None:
        with contextlib.suppress(NotOnePass):
            writing = stage(on_progress, "writing", 0.0, 0.8) if target.checksum else on_progress
            done = _make_in_one_pass(source, target, claimed=claimed, policy=policy, on_progress=writing)
            if done is not None:
                opened, packed = done
                sums = None
                if target.checksum:  # the bytes went through Python, but holes were skipped: read them back
                    sums = checksum_file(
                        target.path,
                        part_size=target.part_size,
                        on_progress=stage(on_progress, "checksumming", 0.8, 1.0),
                    )
                return _result(
                    opened,
                    target,
                    started,
                    options={},
                    copied=True,
                    metadata=packed.metadata if packed else None,
                    disk_size=packed.disk_size if packed else None,
                    warnings=packed.warnings if packed else None,
                    sources=packed.sources if packed else None,
                    checksum=sums,
                )
    where = scratch or target.path.parent
    options = OpenOptions(claimed=claimed, policy=policy, scratch=where, disk=disk, on_progress=on_progress)
    with open_in_stages(source, options) as (opened, writing):
        built = build(opened, target, scratch=where, on_progress=writing)
    # The whole command's time: the decoding, and the scratch copy's removal, count as much as the writing.
    return replace(built, seconds=time.monotonic() - started)


def _make_in_one_pass(
    source: Path, target: Target, *, claimed: ImageFormat | None, policy: SafetyPolicy, on_progress: Progress | None
) -> tuple[Source, PackedArchive | None] | None:
    """The target written straight from a compressed source where it can be (None where it cannot): the source
    as opened (its disk now the target's bytes) and, for a .oci, the archive."""
    oci = target.kind is ArchiveKind.OCI
    plain = not target.options and not target.compress and target.compression is None and target.grow_to is None
    fmt = None if isinstance(target.kind, ArchiveKind) else target.kind
    plan = one_pass_for(source, oci=oci, fmt=fmt, claimed=claimed, plain=plain)
    if plan is None:
        return None
    name = STREAMS[plan.kind]
    if oci:
        request = with_descriptor(target.metadata or MetadataRequest(), None)
        packed, image = pack_compressed(
            source,
            plan,
            target.path,
            request,
            claimed=claimed,
            policy=policy,
            sync=target.sync,
            on_progress=on_progress,
        )
        return Source(source, SourceKind.COMPRESSED, image, compression=name), packed
    if target.metadata is not None:
        return None  # refused with its own message by the general path
    image = decompress_raw(
        source, plan, target.path, claimed=claimed, policy=policy, sync=target.sync, on_progress=on_progress
    )
    return Source(source, SourceKind.COMPRESSED, image, compression=name), None
