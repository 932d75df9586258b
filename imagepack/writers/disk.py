"""Writing one disk image in another format: checked options, free space, and a whole output or none."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from imagepack.core.errors import InvalidValueError
from imagepack.core.problems import Remedy
from imagepack.core.progress import Progress
from imagepack.files.atomic import atomic_output, check_free_space
from imagepack.files.sparse import copy_file_range_from
from imagepack.formats import ImageFormat, format_claimed_by_name, format_for_output_name, spec
from imagepack.formats.create_options import create_options
from imagepack.sources.disk import SourceImage
from imagepack.tools import qemu_img as qemu
from imagepack.writers.gpt import move_gpt_to_end
from imagepack.writers.qcow2 import CompressionType, write_compressed_qcow2_file
from imagepack.writers.qcow2.codecs import check_level as check_cluster_level
from imagepack.writers.qcow2.options import own_compression
from imagepack.writers.vmdkstream import write_stream_vmdk
from imagepack.writers.vmdkstream.grains import grain_codec


class StreamWriter(StrEnum):
    """Who writes a stream-optimized vmdk or a compressed qcow2: imagepack's own parallel writers, or qemu-img."""

    IMAGEPACK = "imagepack"
    QEMU = "qemu"


@dataclass(frozen=True)
class WrittenDisk:
    target: Path
    format: ImageFormat
    options: dict[str, str]
    copied: bool  # the source's bytes as they are, not a conversion
    uncompressed_size: int | None = None  # a compressed qcow2: what qemu-img measures it at uncompressed


def output_format(target: Path, to: ImageFormat | None) -> ImageFormat:
    """The format to write: `--to`, else the name's suffix. Both given and different is refused: a qcow2 named
    .vmdk is a file that every tool, imagepack included, would then read as something it is not. '.img' names
    no format when `--to` is given (vendors ship qcow2 under it), and raw when it is not."""
    claimed = format_claimed_by_name(target)
    if to is not None and claimed is not None and to is not claimed:
        raise InvalidValueError(
            f"{target}: the format asked for, {to.value}, contradicts the name, which says {claimed.value}; "
            f"name the output {target.with_suffix(spec(to).suffix).name} or ask for {claimed.value}",
            code="target.name-disagrees",
        )
    fmt = to or format_for_output_name(target)
    if fmt is None:
        raise InvalidValueError(
            f"{target}: cannot tell the output format from the name",
            code="target.format-unknown",
            remedy=Remedy.STATE_TARGET_FORMAT,
        )
    return fmt


def estimate_output_size(image: SourceImage, fmt: ImageFormat, options: Mapping[str, str]) -> int:
    """Bytes the output will need: qemu-img's own measure for qcow2, else the data plus 1% of metadata.
    qemu-img measures only qcow2 (and raw, as if fully allocated): a qcow2 with clusters of the unit the output
    allocates in measures the source's data rounded up as the output will round it."""
    entry = spec(fmt)
    if entry.allocates_whole_disk(options):
        return image.virtual_size + image.virtual_size // 100 + entry.overhead
    if fmt is ImageFormat.QCOW2:
        return qemu.measure(image.ref, fmt, options) or 0
    data = qemu.measure(image.ref, ImageFormat.QCOW2, {"cluster_size": entry.allocation_unit}) or 0
    return data + data // 100 + entry.overhead


def can_copy(image: SourceImage, fmt: ImageFormat, options: Mapping[str, str], compress: bool) -> bool:
    """Whether `image` can go out as the bytes it is: already `fmt`, nothing asked to change, no backing file to
    flatten into it."""
    return image.format is fmt and not options and not compress and not image.qemu_info.get("backing-filename")


@dataclass(frozen=True)
class DiskPlan:
    """How a disk will be written, decided before anything is: checked options, copy or convert, bytes needed."""

    format: ImageFormat
    options: dict[str, str]
    compress: bool
    copy: bool  # the source's bytes as they are, not a conversion
    needed: int
    grow_to: int | None = None  # the output's virtual size, when larger than the source's
    own_stream: bool = False  # a stream-optimized vmdk that imagepack writes itself
    own_qcow2: CompressionType | None = None  # a compressed qcow2 that imagepack writes itself, with this codec
    threads: int | None = None  # compressing threads (one per core when None)
    level: int | None = None  # a stream vmdk's grains' or a compressed qcow2's clusters' level (its default when None)


def is_stream_vmdk(fmt: ImageFormat, options: Mapping[str, str]) -> bool:
    return fmt is ImageFormat.VMDK and options.get("subformat") == "streamOptimized"


def uses_threads(fmt: ImageFormat, options: Mapping[str, str], *, compress: bool) -> bool:
    """Whether writing this disk compresses on several threads: a compressed qcow2 or a stream vmdk (imagepack's
    writers; qemu-img's compressed qcow2 gets -m, its stream vmdk runs on one)."""
    return (compress and fmt is ImageFormat.QCOW2) or is_stream_vmdk(fmt, options)


@dataclass(frozen=True)
class DiskRequest:
    """The disk asked for: its format and options, and how to write it (see plan_disk)."""

    format: ImageFormat
    options: Mapping[str, str] = field(default_factory=dict)
    compress: bool = False
    copy_if_unchanged: bool = False  # a source already in the format, no option changing it: copied as it is
    grow_to: int | None = None  # the output's virtual size, when larger than the source's
    threads: int | None = None  # compressing threads (one per core when None)
    stream_writer: StreamWriter = StreamWriter.IMAGEPACK
    level: int | None = None  # a stream vmdk's grains' or a compressed qcow2's clusters' level (check_disk_level)


def plan_disk(image: SourceImage, request: DiskRequest) -> DiskPlan:
    """With `copy_if_unchanged`, a source already in the format that no option changes is copied in the kernel
    (holes kept) instead of rewritten by qemu-img. With `grow_to`, the output's virtual size is that (never less
    than the source's); only a flat output (raw, a fixed VHD) can be grown, since its GPT is then moved in place.
    A stream-optimized vmdk is written by imagepack's own writer unless `stream_writer` asks for qemu-img's."""
    fmt, compress, level = request.format, request.compress, request.level
    checked = create_options(fmt, request.options, compress=compress)
    if request.threads is not None and request.threads < 1:
        raise InvalidValueError(f"threads {request.threads}: give at least one")
    check_disk_level(fmt, checked, compress=compress, stream_writer=request.stream_writer, level=level)
    grow_to = request.grow_to if request.grow_to is not None and request.grow_to > image.virtual_size else None
    if grow_to is not None and not (fmt is ImageFormat.RAW or checked.get("subformat") in spec(fmt).flat_subformats):
        raise InvalidValueError(
            f"growing the disk works for raw and fixed VHD outputs, not {fmt.value}; "
            "grow a raw copy ('qemu-img resize -f raw COPY SIZE', then 'sgdisk -e COPY') and convert that"
        )
    copy = grow_to is None and request.copy_if_unchanged and can_copy(image, fmt, request.options, compress)
    needed = _source_length(image) if copy else estimate_output_size(image, fmt, checked)
    if grow_to is not None and spec(fmt).allocates_whole_disk(checked):
        needed += grow_to - image.virtual_size
    own_stream = not copy and request.stream_writer is StreamWriter.IMAGEPACK and is_stream_vmdk(fmt, checked)
    own_qcow2 = own_compressed_qcow2(fmt, checked, compress=compress, stream_writer=request.stream_writer)
    return DiskPlan(fmt, checked, compress, copy, needed, grow_to, own_stream, own_qcow2, request.threads, level)


def own_compressed_qcow2(
    fmt: ImageFormat, options: Mapping[str, str], *, compress: bool, stream_writer: StreamWriter
) -> CompressionType | None:
    """The cluster codec when imagepack writes this compressed qcow2 itself; None when qemu-img does (asked
    for, or a layout imagepack's writer does not make)."""
    if not compress or fmt is not ImageFormat.QCOW2 or stream_writer is not StreamWriter.IMAGEPACK:
        return None
    return own_compression(options)


def check_disk_level(
    fmt: ImageFormat, options: Mapping[str, str], *, compress: bool, stream_writer: StreamWriter, level: int | None
) -> None:
    """Refuse a level the disk's own compression has not, before anything is written: a level sets the grains of a
    stream vmdk and the clusters of a compressed qcow2 that imagepack writes (`options` checked), nothing else."""
    if level is None:
        return
    if stream_writer is StreamWriter.IMAGEPACK and is_stream_vmdk(fmt, options):
        grain_codec(level)
        return
    clusters = own_compressed_qcow2(fmt, options, compress=compress, stream_writer=stream_writer)
    if clusters is None:
        raise InvalidValueError(
            f"level {level}: a level applies only to a compressed target (name it .zst, .xz or .gz), a "
            "stream-optimized vmdk or a compressed qcow2 that imagepack writes"
        )
    check_cluster_level(clusters, level)


def _source_length(image: SourceImage) -> int:
    return image.ref.size if image.ref.size is not None else os.stat(image.ref.path).st_size


def write_planned(
    image: SourceImage,
    plan: DiskPlan,
    temp: Path,
    *,
    shown: Path | None = None,
    on_progress: Progress | None = None,
) -> None:
    """Write the disk into `temp`, a new empty file that an atomic output will give its name (`shown`: the name
    errors give). A source that changed while it was read is refused (and the output then never appears)."""
    _write_planned(image, plan, temp, shown=shown, on_progress=on_progress)
    image.require_unchanged()


def _write_planned(
    image: SourceImage, plan: DiskPlan, temp: Path, *, shown: Path | None, on_progress: Progress | None
) -> None:
    if plan.copy:
        fd = os.open(temp, os.O_WRONLY | os.O_CLOEXEC)
        try:
            copy_file_range_from(image.ref.path, fd, image.ref.offset, 0, _source_length(image), on_progress)
        finally:
            os.close(fd)
        return
    if plan.grow_to is not None:
        # Created at the grown size, then written into: one pass, the input untouched, the new end all zeroes.
        qemu.create(temp, plan.format, plan.grow_to, plan.options)
        qemu.convert_into(
            image.ref, qemu.ImageRef(temp, plan.format), virtual_size=plan.grow_to, on_progress=on_progress
        )
        move_gpt_to_end(temp, old_size=image.virtual_size, new_size=plan.grow_to, shown=shown)
        return
    if plan.own_stream:
        write_stream_vmdk(
            image.ref,
            temp,
            virtual_size=image.virtual_size,
            options=plan.options,
            threads=plan.threads,
            level=plan.level,
            on_progress=on_progress,
        )
        return
    if plan.own_qcow2 is not None:
        write_compressed_qcow2_file(
            image.ref,
            temp,
            virtual_size=image.virtual_size,
            compression=plan.own_qcow2,
            level=plan.level,
            threads=plan.threads,
            on_progress=on_progress,
        )
        return
    qemu.convert(
        image.ref,
        temp,
        plan.format,
        virtual_size=image.virtual_size,
        options=plan.options,
        compress=plan.compress,
        threads=plan.threads,
        on_progress=on_progress,
    )


def write_disk(
    image: SourceImage, target: Path, request: DiskRequest, *, sync: bool = False, on_progress: Progress | None = None
) -> WrittenDisk:
    """Write `image` to `target` as `request` asks, whole or not at all (grown to `grow_to` bytes, see plan_disk)."""
    plan = plan_disk(image, request)
    check_free_space(target, plan.needed)
    with atomic_output(target, sync=sync, needed=plan.needed) as temp:
        write_planned(image, plan, temp, shown=target, on_progress=on_progress)
    measured = plan.needed if plan.compress and plan.format is ImageFormat.QCOW2 else None
    return WrittenDisk(target, plan.format, plan.options, plan.copy, measured or None)
