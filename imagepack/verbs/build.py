"""One path from any source to any target: `build` makes a target from an opened source and picks how by the
target's kind: a disk format (converted by qemu-img) or a .oci archive (packed in one pass). `convert`, `pack`,
`convert --for` (a preset) and a batch's outputs are calls of it; the target is checked first (preflight.py)."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from imagepack.compression import STREAMS, compress_into
from imagepack.compression.files import CODEC_STREAMS
from imagepack.core.errors import ImagepackError
from imagepack.core.openfile import opened_input
from imagepack.core.problems import Problem
from imagepack.core.progress import Progress, stage
from imagepack.files.atomic import atomic_output, check_free_space
from imagepack.files.checksums import Checksums, Digester, checksum_file
from imagepack.files.leftovers import scratch_directory
from imagepack.formats import ImageFormat, SafetyPolicy
from imagepack.oci.metadata import ImageMetadata
from imagepack.sources.identify import Identity, identify
from imagepack.sources.open import OpenOptions, Source, SourceKind, open_in_stages
from imagepack.verbs.preflight import preflight
from imagepack.verbs.presets import Checked, Preset
from imagepack.verbs.target import ArchiveKind as ArchiveKind
from imagepack.verbs.target import Target as Target
from imagepack.verbs.target import TargetKind as TargetKind
from imagepack.verbs.target import codec_threads, disk_request, inner_path
from imagepack.verbs.target import parse_target_kind as parse_target_kind
from imagepack.verbs.target import target_kind as target_kind
from imagepack.writers.disk import can_copy, plan_disk, write_disk
from imagepack.writers.gce import pack_gce_tarball
from imagepack.writers.oci.choose import Origin
from imagepack.writers.oci.pack import MetadataRequest, PackedArchive, make_metadata, pack_disk, with_descriptor
from imagepack.writers.onepass import NotOnePass, decompress_raw, one_pass_for, pack_compressed


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
    guest: dict[str, Any] | None = None  # a preset with readiness rules: the guest checked (inspect/run.readiness)

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
        if self.guest is not None:
            data["guest"] = self.guest
        data["problems"] = [problem.to_json() for problem in self.warnings]
        return data


def build(
    source: Source,
    target: Target,
    *,
    preset: Preset | None = None,
    resize_up: bool = False,
    scratch: Path | None = None,
    on_progress: Progress | None = None,
) -> BuildResult:
    """Make `target` from `source`; the source is never modified, the target appears whole or not at all. With
    `preset`, the source is first checked against what the platform refuses (every error in one refusal), and
    `target` built as the platform takes it (Preset.target_for, grown with `resize_up`); the preset's notes and
    warnings (the guest's readiness findings among them) come back with the result's, and the guest it checked.

    A compressed target is built uncompressed into a temporary file in `scratch` (the target's directory by
    default), compressed into place and the temporary removed, whatever happens; a raw disk that is already
    the bytes to write is compressed from the source without one.

    With `target.checksum`, the output's checksums come from the bytes as they are written where they pass
    through Python (the compressor), and from reading the file back once written where qemu-img or the kernel
    (copy_file_range) wrote them."""
    started = time.monotonic()
    checked = preset.refuse(source, resize_up=resize_up) if preset is not None else Checked([])
    if preset is not None:
        target = preset.target_for(target, source, resize_up=resize_up)
    preflight(target, inputs=(source.path,))
    if target.compression is None:
        if not target.checksum:
            built = _build_plain(source, target, started, on_progress=on_progress)
        else:
            built = _build_plain(source, target, started, on_progress=stage(on_progress, "writing", 0.0, 0.8))
            built = replace(built, checksum=_read_back(target, on_progress), seconds=time.monotonic() - started)
    elif _copies_raw(source, target):
        built = _compress_source(source, target, started, on_progress=on_progress)
    else:
        built = _compress_built(source, target, started, scratch=scratch, on_progress=on_progress)
    if preset is None:
        return built
    return replace(built, preset=preset.name, warnings=[*checked.problems, *built.warnings], guest=checked.guest)


def _copies_raw(source: Source, target: Target) -> bool:
    """Whether the target is the source's raw bytes as they are, compressed."""
    return (
        target.kind is ImageFormat.RAW
        and target.grow_to is None
        and can_copy(source.disk, ImageFormat.RAW, options=target.options, compress=False)
    )


def _read_back(target: Target, on_progress: Progress | None) -> Checksums:
    """The checksums of the output as written, read back: the last fifth of the work."""
    return checksum_file(
        target.path, part_size=target.part_size, on_progress=stage(on_progress, "checksumming", 0.8, 1.0)
    )


def _compress_source(source: Source, target: Target, started: float, *, on_progress: Progress | None) -> BuildResult:
    """A raw disk that is already the bytes to write, compressed straight from the source."""
    assert target.compression is not None
    image = source.disk
    length = image.ref.size if image.ref.size is not None else os.stat(image.ref.path).st_size - image.ref.offset
    check_free_space(target.path, length)
    with atomic_output(target.path, sync=target.sync) as out:
        sums = compress_into(
            image.ref.path,
            out,
            to=target.compression,
            level=target.level,
            threads=codec_threads(target),
            offset=image.ref.offset,
            length=length,
            digester=_digester(target),
            on_progress=on_progress,
        )
    stream = STREAMS[CODEC_STREAMS[target.compression]]
    return _result(source, target, started, options={}, copied=True, compression=stream, checksum=sums)


def _compress_built(
    source: Source, target: Target, started: float, *, scratch: Path | None, on_progress: Progress | None
) -> BuildResult:
    """The target built uncompressed into a temporary in `scratch`, then compressed into place."""
    assert target.compression is not None
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
                    to=target.compression,
                    level=target.level,
                    threads=codec_threads(target),
                    digester=_digester(target),
                    on_progress=stage(on_progress, "compressing", 0.5, 1.0),
                )
        except ImagepackError as e:
            e.shown_as(inner.path, target.path)  # the user named the output, never the temporary
            raise
    return replace(
        _result(source, target, started, options=built.options, copied=built.copied, checksum=sums),
        metadata=built.metadata,
        disk_size=built.disk_size,
        warnings=built.warnings,
        sources=built.sources,
        compression=STREAMS[CODEC_STREAMS[target.compression]],
    )


def _digester(target: Target) -> Digester | None:
    return Digester(target.part_size) if target.checksum else None


def check_room_for_both(source: Source, target: Target, scratch: Path) -> None:
    """The uncompressed temporary and the compressed output exist together for a while; the output can need as
    much as the temporary (incompressible data), so both must fit, on one file system or on two."""
    needed = plan_disk(source.disk, disk_request(target, copy_if_unchanged=True)).needed
    if target.kind is ArchiveKind.OCI:
        needed += 1024**2  # the metadata member, headers and padding
    temp = scratch / target.path.name
    if os.stat(scratch).st_dev == os.stat(target.path.parent).st_dev:
        check_free_space(temp, 2 * needed)
    else:
        check_free_space(temp, needed)
        check_free_space(target.path, needed)


def _build_plain(source: Source, target: Target, started: float, *, on_progress: Progress | None = None) -> BuildResult:
    image = source.disk
    if target.kind is ArchiveKind.GCE:
        pack_gce_tarball(image, target.path, grow_to=target.grow_to, sync=target.sync, on_progress=on_progress)
        return _result(source, target, started, options={}, copied=False)
    if target.kind is ArchiveKind.OCI:
        return _pack_oci(source, target, started, on_progress=on_progress)
    written = write_disk(image, target.path, disk_request(target), sync=target.sync, on_progress=on_progress)
    built = _result(source, target, started, options=written.options, copied=written.copied)
    return replace(built, uncompressed_size=written.uncompressed_size)


def _pack_oci(source: Source, target: Target, started: float, *, on_progress: Progress | None) -> BuildResult:
    image = source.disk
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
        level=target.level,
        threads=target.threads,
        stream_writer=target.stream_writer,
        sync=target.sync,
        on_progress=on_progress,
    )
    built = _packed_result(source, target, started, packed, options=dict(target.options), copied=packed.copied)
    if packed.uncompressed_disk_size is None:
        return built
    return replace(built, uncompressed_size=built.size - packed.disk_size + packed.uncompressed_disk_size)


def _packed_result(
    source: Source,
    target: Target,
    started: float,
    packed: PackedArchive | None,
    *,
    options: dict[str, str],
    copied: bool,
    checksum: Checksums | None = None,
) -> BuildResult:
    """The result of a .oci packed (`packed`), or of a disk written (None)."""
    built = _result(source, target, started, options=options, copied=copied, checksum=checksum)
    if packed is None:
        return built
    return replace(
        built, metadata=packed.metadata, disk_size=packed.disk_size, warnings=packed.warnings, sources=packed.sources
    )


def _result(
    source: Source,
    target: Target,
    started: float,
    *,
    options: dict[str, str],
    copied: bool,
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
        compression=compression,
        checksum=checksum,
    )


def make(
    source: Path,
    target: Target,
    options: OpenOptions = OpenOptions(),
    *,
    preset: Preset | None = None,
    resize_up: bool = False,
) -> BuildResult:
    """Open `source` as `options` say and build `target` from it (`preset`: as `build`); `options.on_progress`
    follows the whole command. The target is checked first, so a refusal costs no reading; a disk that must be
    extracted, and the uncompressed temporary of a compressed target, go in `options.scratch` (beside the target
    by default). A compressed qcow2 packed into a .oci, and a compressed raw disk written as raw, need no
    temporary (onepass.py)."""
    started = time.monotonic()
    preflight(target, preset=preset, inputs=(source,))
    with opened_input(source) as opened:  # once: every reader below reads this open file, never the name again
        return _make_opened(opened, target, started, options, preset=preset, resize_up=resize_up)


def _make_opened(
    source: Path, target: Target, started: float, options: OpenOptions, *, preset: Preset | None, resize_up: bool
) -> BuildResult:
    claimed, policy, on_progress = options.claimed, options.policy, options.on_progress
    identity = identify(source, claimed=claimed)  # what the source is, asked once for both routes
    if options.disk is None and preset is None:  # a preset checks the source as opened: never in one pass
        with contextlib.suppress(NotOnePass):
            writing = stage(on_progress, "writing", 0.0, 0.8) if target.checksum else on_progress
            done = _make_in_one_pass(source, identity, target, claimed=claimed, policy=policy, on_progress=writing)
            if done is not None:
                opened, packed = done
                # The bytes went through Python, but holes were skipped: read them back.
                sums = _read_back(target, on_progress) if target.checksum else None
                return _packed_result(opened, target, started, packed, options={}, copied=True, checksum=sums)
    where = options.scratch or target.path.parent
    with open_in_stages(source, replace(options, scratch=where), identity=identity) as (opened, writing):
        built = build(opened, target, preset=preset, resize_up=resize_up, scratch=where, on_progress=writing)
    # The whole command's time: the decoding, and the scratch copy's removal, count as much as the writing.
    return replace(built, seconds=time.monotonic() - started)


def _make_in_one_pass(
    source: Path,
    identity: Identity,
    target: Target,
    *,
    claimed: ImageFormat | None,
    policy: SafetyPolicy,
    on_progress: Progress | None,
) -> tuple[Source, PackedArchive | None] | None:
    """The target written straight from a compressed source where it can be (None where it cannot): the source
    as opened (its disk now the target's bytes) and, for a .oci, the archive."""
    oci = target.kind is ArchiveKind.OCI
    plain = not target.options and not target.compress and target.compression is None and target.grow_to is None
    fmt = None if isinstance(target.kind, ArchiveKind) else target.kind
    plan = one_pass_for(source, identity, oci=oci, fmt=fmt, claimed=claimed, policy=policy, plain=plain)
    if plan is None:
        return None
    name = STREAMS[plan.kind]
    if oci:
        request = with_descriptor(target.metadata or MetadataRequest(), None)
        packed, image = pack_compressed(plan, target.path, request, sync=target.sync, on_progress=on_progress)
        return Source(source, SourceKind.COMPRESSED, image, compression=name), packed
    image = decompress_raw(plan, target.path, sync=target.sync, on_progress=on_progress)
    return Source(source, SourceKind.COMPRESSED, image, compression=name), None
