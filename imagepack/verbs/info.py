"""Describing one disk image: its format and header facts, sizes, partition table and firmware guess.

A refused image is still described as far as its header can be read without qemu-img, with the reasons. A
compressed one is described from the first few MiB of its content, never decompressed whole."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from imagepack.compression import STREAMS, declared_size, decompressed, inner_name, peek, problems_before_the_end
from imagepack.core.errors import InputError, InvalidValueError
from imagepack.core.openfile import opened_input
from imagepack.core.problems import Problem, Remedy
from imagepack.formats import (
    Container,
    ImageFormat,
    SafetyPolicy,
    detect,
    disk_size_limit,
    format_claimed_by_name,
    inspect_source,
    not_a_disk,
    require_whole_sectors,
)
from imagepack.formats.base import Inspection, MemorySource
from imagepack.formats.partitions import HEAD_BYTES, PartitionLayout, read_partition_layout
from imagepack.oci.archive import OciLayout
from imagepack.oci.metadata import ImageMetadata
from imagepack.sources.disk import SourceImage, inspect_file, open_image, partition_layout
from imagepack.sources.identify import Identity, SourceKind, identify, peek_kind
from imagepack.sources.oci import OpenedArchive, open_archive
from imagepack.sources.open import OpenOptions, open_source
from imagepack.sources.ova.archive import OvaLayout, read_ova_layout, verify_manifest
from imagepack.sources.ova.reader import open_ova
from imagepack.verbs.seed import IsoInfo, read_iso


@dataclass
class ImageInfo:
    path: Path
    format: ImageFormat
    virtual_size: int
    file_size: int
    subformat: str | None = None
    allocated: int | None = None
    cluster_size: int | None = None
    layout: PartitionLayout | None = None
    details: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)  # why it would be refused

    def to_json(self) -> dict[str, Any]:
        layout = self.layout
        guess = layout.firmware_guess if layout else None
        return {
            "path": str(self.path),
            "format": self.format.value,
            "subformat": self.subformat,
            "virtual_size": self.virtual_size,
            "file_size": self.file_size,
            "allocated": self.allocated,
            "cluster_size": self.cluster_size,
            "partition_table": layout.table.value if layout else None,
            "partitions": layout.partitions if layout else None,
            "efi_system_partition": layout.has_esp if layout else None,
            "firmware_guess": guess.value if guess else None,
            "details": self.details,
            "safe": not self.problems,
            "problems": [problem.to_json() for problem in self.problems],
        }


def _name_disagrees(path: Path, inspection: Inspection) -> str | None:
    claim = format_claimed_by_name(path)
    if claim is not None and claim is not inspection.format:
        return f"the name says {claim.value} but the content is {inspection.format.value}"
    return None


def describe_image(
    path: Path, identity: Identity, *, claimed: ImageFormat | None = None, policy: SafetyPolicy = SafetyPolicy()
) -> ImageInfo:
    """A disk image, compressed or not, as `identity` says `path` is."""
    if identity.stream is not None:
        return describe_compressed(path, identity.stream, claimed=claimed, policy=policy)
    found = identity.detection
    content = found.content
    if claimed is None and content is None:
        raise not_a_disk(found, path)
    if claimed is None and content is ImageFormat.RAW:  # as every verb that reads it would refuse it
        require_whole_sectors(os.stat(path).st_size, path, stated=False)
    # Describe by content even when the name disagrees; the disagreement is itself a refusal, below.
    inspection = inspect_file(path, claimed=claimed or content, policy=policy)
    st = os.stat(path)
    result = ImageInfo(
        path=path,
        format=inspection.format,
        virtual_size=inspection.virtual_size,
        file_size=st.st_size,
        subformat=inspection.subformat,
        allocated=st.st_blocks * 512,
        cluster_size=inspection.cluster_size,
        details=dict(inspection.details),
        problems=list(inspection.problems),
    )
    mismatch = None if claimed else _name_disagrees(path, inspection)
    if mismatch:
        result.problems.append(
            Problem("input.name-disagrees", mismatch, Remedy.STATE_FORMAT, value=inspection.format.value)
        )
    if result.problems:
        return result  # qemu-img is not run on an image we would refuse
    try:
        image = open_image(path, claimed=inspection.format, policy=policy, inspection=inspection)
    except InputError as e:
        result.problems.append(Problem(e.code, e.said_of(path), e.remedy, value=e.value))
        return result
    add_qemu_facts(result, image)
    return result


INFO_BYTES = 4 * 1024**2  # a disk format's header, and a raw disk's partition table, lie well inside


def describe_compressed(
    path: Path, compression: Container, *, claimed: ImageFormat | None = None, policy: SafetyPolicy = SafetyPolicy()
) -> ImageInfo:
    """Both layers of a compressed disk: the stream, then what the header of the disk inside says, from the first
    INFO_BYTES of its content (`read_bytes` says how much was decompressed). qemu-img is not run: it would need
    the whole disk, so a raw disk's size is what the stream declares, or the least its partition table needs."""
    head = peek(path, compression, INFO_BYTES + 1)  # one byte more tells whether the content ends here
    whole = len(head) <= INFO_BYTES
    declared = declared_size(path, compression)
    with MemorySource(path, head[:INFO_BYTES]) as src:
        if claimed is None and detect(src).archive is Container.TAR:
            raise InputError(
                f"{path}: this is a .oci archive (or another tar) compressed with {STREAMS[compression]}; "
                f"info describes it decompressed (imagepack decompress {path.name})",
                code="input.compressed-archive",
            )
        inspection = inspect_source(src, claimed=claimed, name=path, policy=policy, whole=whole)
    details: dict[str, Any] = {"compression": STREAMS[compression], "read_bytes": len(head), "content_size": declared}
    layout = None
    virtual_size = inspection.virtual_size
    if inspection.format is ImageFormat.RAW:
        layout = read_partition_layout(head[:HEAD_BYTES])
        if declared is not None or whole:
            virtual_size = declared if declared is not None else len(head)
        else:
            # Only a lower bound: the stream does not say how long it is.
            virtual_size = max(layout.table_end or 0, len(head))
            details["size_known"] = False
    details.update(inspection.details)
    result = ImageInfo(
        path=path,
        format=inspection.format,
        virtual_size=virtual_size,
        file_size=os.stat(path).st_size,
        subformat=inspection.subformat,
        cluster_size=inspection.cluster_size,
        layout=layout,
        details=details,
        problems=list(inspection.problems if whole else problems_before_the_end(inspection)),
    )
    mismatch = None if claimed else _name_disagrees(Path(inner_name(path)), inspection)
    if mismatch:
        result.problems.append(
            Problem("input.name-disagrees", mismatch, Remedy.STATE_FORMAT, value=inspection.format.value)
        )
    return result


def add_qemu_facts(result: ImageInfo, image: SourceImage) -> None:
    """What only qemu-img can tell (after both layers of checks passed): exact size, partition table."""
    result.virtual_size = image.virtual_size
    result.cluster_size = image.qemu_info.get("cluster-size", result.cluster_size)
    result.details["dirty"] = image.qemu_info.get("dirty-flag", False)
    result.layout = partition_layout(image)


def info_from_source(image: SourceImage, path: Path, file_size: int) -> ImageInfo:
    """Describe an image that already passed both layers of checks (e.g. the disk inside an archive)."""
    inspection = image.inspection
    result = ImageInfo(
        path=path,
        format=inspection.format,
        virtual_size=inspection.virtual_size,
        file_size=file_size,
        subformat=inspection.subformat,
        allocated=image.allocated,
        cluster_size=inspection.cluster_size,
        details=dict(inspection.details),
    )
    add_qemu_facts(result, image)
    return result


@dataclass
class ArchiveInfo:
    path: Path
    layout: OciLayout
    metadata: ImageMetadata
    disk: ImageInfo
    compression: str | None = None  # the stream the whole archive came in: "zstd", "xz", "bzip2"

    def to_json(self) -> dict[str, Any]:
        members = [self.layout.metadata, self.layout.disk]
        if not self.layout.metadata_first:
            members.reverse()
        return {
            "path": str(self.path),
            "format": "oci",
            "virtual_size": self.disk.virtual_size,  # the archive's as much as its disk's, as for a plain image
            "compressed": self.layout.compressed,
            "compression": self.compression or ("gzip" if self.layout.compressed else None),
            "disk_in_place": self.layout.disk_in_place,
            "members": [
                {"name": m.name, "size": m.size, "header_offset": m.header_offset, "data_offset": m.data_offset}
                for m in members
            ],
            "metadata": self.metadata.to_json(),
            "disk": self.disk.to_json(),
        }


def describe_archive(opened: OpenedArchive, path: Path) -> ArchiveInfo:
    """`path`: the archive as the user named it (the layout may be of its decompressed copy)."""
    disk = info_from_source(opened.disk, Path(f"{path}:{opened.layout.disk.name}"), opened.layout.disk.size)
    return ArchiveInfo(path, opened.layout, opened.metadata, disk)


@dataclass
class OvaInfo:
    path: Path
    layout: OvaLayout
    verified: list[str]  # members whose manifest digest matched
    disk: ImageInfo | None  # the chosen disk; None when several and none was chosen
    index: int | None
    compression: str | None = None  # the stream the whole OVA came in: "zstd", "xz", "bzip2"

    def to_json(self) -> dict[str, Any]:
        descriptor = self.layout.descriptor
        return {
            "path": str(self.path),
            "format": "ova",
            "virtual_size": self.disk.virtual_size if self.disk else None,
            "compressed": self.layout.compressed,
            "compression": self.compression or ("gzip" if self.layout.compressed else None),
            "disks": [
                {"index": n, "file": d.file, "capacity": d.capacity, "controller": d.controller}
                for n, d in enumerate(descriptor.disks, 1)
            ],
            "chosen_disk": self.index,
            "manifest": {"verified": self.verified} if self.layout.manifest else None,
            "firmware": descriptor.firmware,
            "os_type": descriptor.os_type,
            "operating_system": descriptor.operating_system,
            "os_version": descriptor.os_version,
            "disk": self.disk.to_json() if self.disk else None,
        }


def describe_ova(
    path: Path, *, disk: int | None, policy: SafetyPolicy, scratch: Path | None = None, shown: Path | None = None
) -> OvaInfo:
    """An OVA's disks and manifest; the chosen disk (the only one, or --disk N) described through every check.
    `shown`: the OVA as the user named it, when `path` is its decompressed copy."""
    shown = shown or path
    layout = read_ova_layout(path, max_disk_size=disk_size_limit(policy.max_size))
    if disk is None and len(layout.descriptor.disks) > 1:
        return OvaInfo(shown, layout, verify_manifest(layout), None, None)
    with open_ova(path, disk=disk, policy=policy, scratch=scratch) as opened:
        member = layout.files[opened.chosen.file]
        described = info_from_source(opened.disk, Path(f"{shown}:{member.name}"), member.size)
        return OvaInfo(shown, opened.layout, opened.verified, described, opened.index)


def describe_compressed_tar(
    path: Path, kind: Container, content_is: SourceKind, options: OpenOptions
) -> ArchiveInfo | OvaInfo:
    """A .oci archive or an OVA (`content_is`) in a zstd, xz or bzip2 stream: decompressed (bounded, into
    `options.scratch`), then described as the plain one is, with the stream it came in."""
    found: ArchiveInfo | OvaInfo
    policy, scratch, disk = options.policy, options.scratch, options.disk
    with decompressed(path, kind, policy=policy, scratch=scratch, on_progress=options.on_progress) as content:
        if content_is is SourceKind.OVA:
            found = describe_ova(content.path, disk=disk, policy=policy, scratch=scratch, shown=path)
        else:
            if disk is not None:
                raise InvalidValueError(
                    f"{path} is not an OVA: a disk number picks one of an OVA's disks, and this is a .oci archive",
                    code="ova.not-an-ova",
                )
            with open_archive(content.path, policy=policy, scratch=scratch) as opened:
                found = describe_archive(opened, path)
    found.compression = STREAMS[kind]
    return found


def describe(path: Path, options: OpenOptions = OpenOptions()) -> ImageInfo | ArchiveInfo | OvaInfo | IsoInfo:
    """What `path` is: a .oci archive and its disk, an OVA and its disks, an ISO 9660 image and its files (a
    cloud-init seed), or a disk image (described even when it would be refused). `path` is opened once, and every
    reader reads that open file."""
    with opened_input(path) as opened:
        return _describe(opened, identify(opened, claimed=options.claimed), options)


def _describe(path: Path, identity: Identity, options: OpenOptions) -> ImageInfo | ArchiveInfo | OvaInfo | IsoInfo:
    claimed, policy, scratch = options.claimed, options.policy, options.scratch
    if identity.kind is SourceKind.OVA:
        return describe_ova(path, disk=options.disk, policy=policy, scratch=scratch)
    content_is = peek_kind(path, identity) if claimed is None else identity.kind
    if content_is in (SourceKind.OCI, SourceKind.OVA) and identity.kind is SourceKind.COMPRESSED:
        assert identity.stream is not None
        return describe_compressed_tar(path, identity.stream, content_is, options)
    unclaimed, known = replace(options, claimed=None), identity if claimed is None else None
    if options.disk is not None:
        with open_source(path, unclaimed, identity=known):
            pass  # refuses --disk for what is not an OVA
    if content_is in (SourceKind.GCE, SourceKind.OCI):
        with open_source(path, unclaimed, identity=known) as source:
            if source.kind is SourceKind.GCE:
                described = info_from_source(source.disk, Path(source.disk.label), os.stat(path).st_size)
                # The layers outside in, before the disk's own details: the stream, then the tarball.
                layers: dict[str, Any] = {"compression": source.compression} if source.compression else {}
                layers["container"] = "gce-tarball" + (f" ({source.compression})" if source.compression else "")
                described.details = {**layers, **described.details}
                return described
            assert source.archive is not None
            return describe_archive(source.archive, path)
    if claimed is None and identity.stream is None and identity.detection.iso:
        return read_iso(path)  # described, but every other verb still refuses it as a disk
    return describe_image(path, identity, claimed=claimed, policy=policy)
