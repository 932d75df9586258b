"""Writing a .oci archive in one pass over the data: the metadata from what was asked and what the disk says,
then the disk member converted (or, from a qcow2, copied in the kernel) straight into its place inside the
output, its tar header filled in afterwards."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from imagepack.core.errors import MetadataError, QemuImgError
from imagepack.core.problems import Problem, Remedy, Severity
from imagepack.core.progress import Progress
from imagepack.files.atomic import atomic_output, check_free_space
from imagepack.files.leftovers import scratch_directory
from imagepack.files.reproducible import output_time
from imagepack.files.sparse import copy_file_range_from
from imagepack.formats import ImageFormat
from imagepack.formats.create_options import create_options
from imagepack.formats.partitions import Firmware
from imagepack.oci.archive import disk_data_offset, write_archive
from imagepack.oci.metadata import (
    ImageMetadata,
    LaunchMode,
    OsName,
    ShapeCompatibility,
    build_metadata,
    check_metadata,
    dump_metadata,
    load_metadata,
)
from imagepack.sources.disk import SourceImage
from imagepack.sources.ova.descriptor import Descriptor
from imagepack.tools import qemu_img as qemu
from imagepack.writers.disk import StreamWriter, can_copy, check_disk_level, own_compressed_qcow2
from imagepack.writers.oci.choose import GUEST, Asked, Origin, choose
from imagepack.writers.oci.guest import DERIVED_ROOM, GuestSays, read_guest
from imagepack.writers.qcow2 import write_compressed_qcow2


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
    os_unlisted: bool = False  # the system's name is right as typed, though one letter from a listed one
    # What the input's own description (an OVA's OVF descriptor) says, used where neither the options nor a base
    # metadata do. Its firmware wins over the partition table's guess: it is what the VM was run with.
    stated_firmware: Firmware | None = None
    stated_os: str | None = None
    stated_os_version: str | None = None
    inspect_guest: bool = True  # read the guest for what is not given, and check what is against it
    guest_mismatch_ok: bool = False  # a value given that the guest contradicts is kept (never a Windows release)


def read_from_guest(request: MetadataRequest) -> list[str]:
    """What of the metadata a build will read from the guest, as far as the request tells before any input is
    read (an OVF descriptor or a .oci repacked may still state some): what neither it nor its base file gives."""
    if not request.inspect_guest or request.base is not None:
        return []
    wanted = (
        ("system", request.operating_system),
        ("version", request.operating_system_version),
        ("firmware", request.firmware),
    )
    return [what for what, given in wanted if given is None]


def with_descriptor(request: MetadataRequest, descriptor: Descriptor | None) -> MetadataRequest:
    """`request` with an OVF descriptor's firmware and guest OS as its defaults."""
    if descriptor is None:
        return request
    return replace(
        request,
        stated_firmware=Firmware(descriptor.firmware) if descriptor.firmware else None,
        stated_os=descriptor.operating_system,
        stated_os_version=descriptor.os_version,
    )


@dataclass(frozen=True)
class PackedArchive:
    target: Path
    disk_size: int
    metadata: ImageMetadata
    copied: bool  # the qcow2 was copied as it is rather than converted
    warnings: list[Problem]  # and notes
    uncompressed_disk_size: int | None = None  # a compressed disk: what qemu-img measures it at uncompressed
    sources: dict[str, Origin] = field(default_factory=dict)  # where each metadata value came from


def make_metadata(
    request: MetadataRequest, image: SourceImage | None, *, inherited: ImageMetadata | None = None
) -> tuple[ImageMetadata, list[Problem], dict[str, Origin]]:
    """The metadata for `image` (None: a disk not yet written, whose firmware must then be stated): each value
    given, else from a base metadata, the guest on the disk (read through the image already opened), an OVF
    descriptor, the partition table (choose.py). `inherited` is the metadata of a .oci being repacked; a
    --metadata file wins over it. Returns the warnings and notes, and where each value came from."""
    base, base_origin = inherited, Origin("archive", "from the archive repacked") if inherited else None
    if request.base is not None:
        if request.base.stat().st_size > 1024 * 1024:
            raise MetadataError(f"{request.base}: larger than 1 MiB; this is not image metadata")
        base = load_metadata(request.base.read_bytes(), label=str(request.base))
        base_origin = Origin("metadata-file", f"from {request.base}")
    guest = read_guest(image) if image is not None and request.inspect_guest else GuestSays()
    asked = Asked(
        operating_system=request.operating_system,
        operating_system_version=request.operating_system_version,
        firmware=request.firmware,
        base=base,
        base_origin=base_origin,
        stated_os=request.stated_os,
        stated_os_version=request.stated_os_version,
        stated_firmware=request.stated_firmware,
        mismatch_ok=request.guest_mismatch_ok,
    )
    chosen = choose(asked, image, guest)
    os_name, os_version, firmware = chosen.operating_system, chosen.operating_system_version, chosen.firmware
    if not os_name or not os_version:
        raise MetadataError(
            "the archive needs an operating system and its version", code="metadata.no-os", remedy=Remedy.STATE_OS
        )
    assert firmware is not None
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
    # A name the guest states is its own, not a typo of a listed one ('Kubuntu').
    from_guest = chosen.sources["operatingSystem"].kind == GUEST
    typo = OsName.AS_TYPED if request.os_unlisted or from_guest else OsName.GIVEN
    problems = check_metadata(metadata, strict=request.strict, os_name=typo)
    if problems and problems[0].severity is Severity.ERROR:  # errors come first
        first = problems[0]
        raise MetadataError.from_problem(first)
    return metadata, [*chosen.problems, *problems], chosen.sources


def archive_mtime() -> int:
    """The time a new archive's tar headers carry: SOURCE_DATE_EPOCH, else a fixed one (see reproducible.py)."""
    return output_time()


def metadata_room(request: MetadataRequest, *, inherited: ImageMetadata | None = None) -> int:
    """The longest image_metadata.json `request` can give whatever the disk's partition table says: where a disk
    written before its metadata can start. Refuses a request that no disk could satisfy (no OS) at once, unless
    the system is to be read from the guest: then room for the longest name and version a guest may give."""
    try:
        return _room(request, inherited)
    except MetadataError as e:
        if e.code != "metadata.no-os" or not request.inspect_guest:
            raise
    stand_in = replace(
        request,
        operating_system=request.operating_system or "Oracle Linux",
        operating_system_version=request.operating_system_version or "9",
    )
    return _room(stand_in, inherited) + DERIVED_ROOM


def _room(request: MetadataRequest, inherited: ImageMetadata | None) -> int:
    return max(
        len(dump_metadata(make_metadata(replace(request, firmware=firmware), None, inherited=inherited)[0]))
        for firmware in ([request.firmware] if request.firmware else list(Firmware))
    )


def pack_disk(
    image: SourceImage,
    target: Path,
    metadata: ImageMetadata,
    warnings: list[Problem],
    *,
    sources: dict[str, Origin] | None = None,
    options: Mapping[str, str] = {},
    compress: bool = False,
    level: int | None = None,
    threads: int | None = None,
    stream_writer: StreamWriter = StreamWriter.IMAGEPACK,
    sync: bool = False,
    on_progress: Progress | None = None,
) -> PackedArchive:
    """Write the archive in one pass: the disk goes straight into its member's place, copied in the kernel when
    it is a qcow2 that need not change, compressed there by imagepack's own writer when asked (unless
    `stream_writer` asks for qemu-img's; its clusters at `level`, the codec's default when None), else
    converted there by qemu-img."""
    qcow2_options = create_options(ImageFormat.QCOW2, options, compress=compress) if options else {}
    checked = create_options(ImageFormat.QCOW2, options, compress=compress)
    check_disk_level(ImageFormat.QCOW2, checked, compress=compress, stream_writer=stream_writer, level=level)
    metadata_bytes = dump_metadata(metadata)
    copy = can_copy(image, ImageFormat.QCOW2, options=qcow2_options, compress=compress)
    own = None
    if not copy:
        own = own_compressed_qcow2(ImageFormat.QCOW2, checked, compress=compress, stream_writer=stream_writer)
    source_length = image.ref.size if image.ref.size is not None else os.stat(image.ref.path).st_size
    measured = None if copy else qemu.measure(image.ref, ImageFormat.QCOW2, qcow2_options)
    estimate = source_length if copy else measured or image.virtual_size
    needed = disk_data_offset(len(metadata_bytes)) + estimate
    check_free_space(target, needed)

    mtime = archive_mtime()
    with atomic_output(target, sync=sync, needed=needed) as temp:
        fd = os.open(temp, os.O_RDWR | os.O_CLOEXEC)
        try:

            def write_disk(data_offset: int) -> None:
                if copy:
                    copy_file_range_from(image.ref.path, fd, image.ref.offset, data_offset, source_length, on_progress)
                    return
                if own is not None:
                    write_compressed_qcow2(
                        image.ref,
                        fd,
                        base=data_offset,
                        virtual_size=image.virtual_size,
                        compression=own,
                        level=level,
                        threads=threads,
                        on_progress=on_progress,
                    )
                    return
                try:
                    _convert_in_place(image, temp, fd, data_offset, qcow2_options, compress, threads, on_progress)
                except QemuImgError as e:
                    e.about(target)  # qemu-img wrote through an offset into our temporary
                    raise

            disk_size = write_archive(fd, metadata_bytes, mtime=mtime, write_disk=write_disk)
        finally:
            os.close(fd)
        image.require_unchanged()  # before the rename: an archive of a source changed meanwhile never appears
    return PackedArchive(target, disk_size, metadata, copy, warnings, measured if compress else None, sources or {})


def _convert_in_place(
    image: SourceImage,
    archive: Path,
    fd: int,
    data_offset: int,
    options: Mapping[str, str],
    compress: bool,
    threads: int | None,
    on_progress: Progress | None,
) -> None:
    """Place an empty qcow2 at the member's offset, then let qemu-img convert into it through the raw driver."""
    # The template is a few hundred KiB whatever the disk's size. qemu-img create flushes it (fdatasync), and
    # on ext4 that flush waits for every dirty page in the file system's journal: make it in memory if we can.
    scratch = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    with scratch_directory(scratch) as tmp:
        empty = Path(tmp, "empty.qcow2")
        qemu.create(empty, ImageFormat.QCOW2, image.virtual_size, {"compat": "1.1", **options})
        copy_file_range_from(empty, fd, 0, data_offset, empty.stat().st_size)
    target = qemu.ImageRef(archive, ImageFormat.QCOW2, offset=data_offset)
    qemu.convert_into(
        image.ref,
        target,
        virtual_size=image.virtual_size,
        compress=compress,
        threads=threads,
        on_progress=on_progress,
    )
