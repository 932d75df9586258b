"""Writing a .oci archive in one pass over the data: the disk member is converted (or, from a qcow2, copied
in the kernel) straight into its place inside the output, and its tar header is filled in afterwards."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from imagepack import qemu
from imagepack.atomic import atomic_output, check_free_space, check_target
from imagepack.convert import is_archive
from imagepack.errors import MetadataError, QemuImgError
from imagepack.formats import ImageFormat, SafetyPolicy
from imagepack.oci.archive import (
    BLOCK,
    DISK_NAME,
    copy_range,
    disk_data_offset,
    member_header,
    metadata_region,
    trailer,
)
from imagepack.oci.metadata import (
    ImageMetadata,
    LaunchMode,
    ShapeCompatibility,
    build_metadata,
    check_metadata,
    dump_metadata,
    load_metadata,
)
from imagepack.oci.reader import open_archive
from imagepack.options import create_options
from imagepack.partitions import Firmware
from imagepack.source import SourceImage, open_image, partition_layout


@dataclass(frozen=True)
class MetadataRequest:
    """What the user asked the archive's image_metadata.json to say; unset fields come from `base` or defaults."""

    operating_system: str | None = None
    operating_system_version: str | None = None
    launch_mode: LaunchMode | None = None
    firmware: Firmware | None = None
    overrides: Mapping[str, str] = field(default_factory=dict)
    shapes: Sequence[ShapeCompatibility] = ()
    base: Path | None = None  # a metadata file to start from (--metadata)
    strict: bool = False


@dataclass(frozen=True)
class PackResult:
    source: Path
    source_format: ImageFormat
    target: Path
    virtual_size: int
    disk_size: int
    archive_size: int
    metadata: ImageMetadata
    copied: bool  # the qcow2 was copied as it is rather than converted
    warnings: list[str]
    seconds: float


def make_metadata(
    request: MetadataRequest, image: SourceImage, *, inherited: ImageMetadata | None = None
) -> tuple[ImageMetadata, list[str]]:
    """The metadata for `image`: firmware from the request, else from the disk's partition table. `inherited`
    is the metadata of a .oci being repacked; a --metadata file wins over it."""
    base = inherited
    if request.base is not None:
        if request.base.stat().st_size > 1024 * 1024:
            raise MetadataError(f"{request.base}: larger than 1 MiB; this is not image metadata")
        base = load_metadata(request.base.read_bytes(), label=str(request.base))
    firmware = request.firmware or (base.launch.firmware if base else None)
    if firmware is None:
        firmware = partition_layout(image).firmware_guess
        if firmware is None:
            raise MetadataError(
                f"{image.label}: no partition table at the start of the disk, so its firmware is unknown; "
                "pass --firmware BIOS or --firmware UEFI_64"
            )
    os_name = request.operating_system or (base.operating_system if base else None)
    os_version = request.operating_system_version or (base.operating_system_version if base else None)
    if not os_name or not os_version:
        raise MetadataError("the archive needs an operating system: pass --os NAME and --os-version VERSION")
    mode = request.launch_mode or (base.launch_mode if base else LaunchMode.PARAVIRTUALIZED)
    metadata = build_metadata(
        operating_system=os_name,
        operating_system_version=os_version,
        firmware=firmware,
        launch_mode=mode,
        overrides=request.overrides,
        shapes=request.shapes,
        base=base,
    )
    errors, warnings = check_metadata(metadata, strict=request.strict)
    if errors:
        raise MetadataError(errors[0])
    return metadata, warnings


def _can_copy(image: SourceImage, compress: bool, options: Mapping[str, str]) -> bool:
    """A qcow2 goes in as it is, unless it must change: compressed, new options, or a backing chain to flatten."""
    return (
        image.format is ImageFormat.QCOW2
        and not compress
        and not options
        and not image.qemu_info.get("backing-filename")
    )


def pack_archive(
    source: Path,
    target: Path,
    request: MetadataRequest,
    *,
    from_format: ImageFormat | None = None,
    options: Mapping[str, str] = {},
    compress: bool = False,
    force: bool = False,
    sync: bool = False,
    policy: SafetyPolicy = SafetyPolicy(),
    on_progress: qemu.Progress | None = None,
) -> PackResult:
    started = time.monotonic()
    check_target(target, force=force, inputs=(source,))
    qcow2_options = create_options(ImageFormat.QCOW2, options, compress=compress) if options else {}
    if from_format is None and is_archive(source):
        # Repacking a .oci (another tool's layout, gzip-wrapped, or to change it): its metadata is the base.
        with open_archive(source, policy=policy, scratch=target.parent) as opened:
            return _pack(
                source,
                opened.disk,
                target,
                request,
                opened.metadata,
                qcow2_options,
                compress,
                sync,
                on_progress,
                started,
            )
    image = open_image(source, claimed=from_format, policy=policy)
    return _pack(source, image, target, request, None, qcow2_options, compress, sync, on_progress, started)


def _pack(
    source: Path,
    image: SourceImage,
    target: Path,
    request: MetadataRequest,
    inherited: ImageMetadata | None,
    qcow2_options: Mapping[str, str],
    compress: bool,
    sync: bool,
    on_progress: qemu.Progress | None,
    started: float,
) -> PackResult:
    metadata, warnings = make_metadata(request, image, inherited=inherited)
    metadata_bytes = dump_metadata(metadata)
    data_offset = disk_data_offset(len(metadata_bytes))
    copy = _can_copy(image, compress, qcow2_options)
    source_length = image.ref.size if image.ref.size is not None else os.stat(image.ref.path).st_size
    if copy:
        estimate = source_length
    else:
        estimate = qemu.measure(image.ref, ImageFormat.QCOW2, qcow2_options) or image.virtual_size
    check_free_space(target, data_offset + estimate)

    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))  # reproducible builds may pin it
    with atomic_output(target, sync=sync) as temp:
        fd = os.open(temp, os.O_RDWR | os.O_CLOEXEC)
        try:
            os.pwrite(fd, metadata_region(metadata_bytes, data_offset, mtime), 0)
            if copy:
                src_fd = os.open(image.ref.path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    copy_range(src_fd, fd, image.ref.offset, data_offset, source_length, on_progress)
                finally:
                    os.close(src_fd)
            else:
                try:
                    _convert_in_place(image, temp, fd, data_offset, qcow2_options, compress, on_progress)
                except QemuImgError as e:
                    e.message = f"{target}: {e.message}"  # qemu-img wrote through an offset into our temporary
                    raise
            disk_size = os.fstat(fd).st_size - data_offset
            os.pwrite(fd, member_header(DISK_NAME, disk_size, mtime), data_offset - BLOCK)
            os.pwrite(fd, trailer(data_offset + disk_size), data_offset + disk_size)
        finally:
            os.close(fd)
    return PackResult(
        source=source,
        source_format=image.format,
        target=target,
        virtual_size=image.virtual_size,
        disk_size=disk_size,
        archive_size=os.stat(target).st_size,
        metadata=metadata,
        copied=copy,
        warnings=warnings,
        seconds=time.monotonic() - started,
    )


def _convert_in_place(
    image: SourceImage,
    archive: Path,
    fd: int,
    data_offset: int,
    options: Mapping[str, str],
    compress: bool,
    on_progress: qemu.Progress | None,
) -> None:
    """Place an empty qcow2 at the member's offset, then let qemu-img convert into it through the raw driver."""
    # The template is a few hundred KiB whatever the disk's size. qemu-img create flushes it (fdatasync), and
    # on ext4 that flush waits for every dirty page in the file system's journal: make it in memory if we can.
    scratch = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix=".imagepack-", dir=scratch) as tmp:
        empty = Path(tmp, "empty.qcow2")
        qemu.create(empty, ImageFormat.QCOW2, image.virtual_size, {"compat": "1.1", **options})
        src_fd = os.open(empty, os.O_RDONLY | os.O_CLOEXEC)
        try:
            copy_range(src_fd, fd, 0, data_offset, os.fstat(src_fd).st_size)
        finally:
            os.close(src_fd)
    target = qemu.ImageRef(archive, ImageFormat.QCOW2, offset=data_offset)
    qemu.convert_into(image.ref, target, virtual_size=image.virtual_size, compress=compress, on_progress=on_progress)
