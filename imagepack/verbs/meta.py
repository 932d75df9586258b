"""Changing the metadata of an existing archive. Where the JSON fits in the room our layout leaves, its
header and data are rewritten in one write and the disk member is not touched; otherwise the archive is
rewritten into our layout (the disk copied in the kernel) and renamed over the old one."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from imagepack.core.errors import ArchiveError, InvalidValueError, MetadataError, OutputError
from imagepack.core.openfile import opened_input, require_regular_file
from imagepack.core.problems import Problem, Remedy, Severity
from imagepack.files.atomic import atomic_output, check_free_space
from imagepack.files.checksums import OBJECT_PUT_PART_SIZE, Checksums, checksum_file
from imagepack.files.reproducible import output_time
from imagepack.files.sparse import copy_file_range_from
from imagepack.oci.archive import (
    BLOCK,
    OciLayout,
    disk_data_offset,
    metadata_region,
    read_layout,
    write_archive,
)
from imagepack.oci.metadata import ImageMetadata, OsName, ShapeCompatibility, check_metadata, dump_metadata
from imagepack.sources.identify import identify
from imagepack.sources.oci import read_metadata
from imagepack.sources.open import OpenOptions, archive_tar
from imagepack.tar.members import extract_member


@dataclass(frozen=True)
class EditResult:
    archive: Path
    metadata: ImageMetadata
    in_place: bool
    how: str  # what was rewritten, and why, in words for the user
    warnings: list[Problem]  # and notes
    seconds: float
    checksum: Checksums | None = None  # of the archive as changed, when asked for

    def to_json(self) -> dict[str, Any]:
        return {
            "target": str(self.archive),  # the archive changed, as `target` names what any verb wrote
            "format": "oci",
            "in_place": self.in_place,
            "how": self.how,
            "metadata": self.metadata.to_json(),
            "problems": [problem.to_json() for problem in self.warnings],  # as BuildResult names them
            "seconds": round(self.seconds, 3),
            "checksum": self.checksum.to_json() if self.checksum else None,
        }


def add_shapes(meta: ImageMetadata, shapes: Sequence[ShapeCompatibility]) -> ImageMetadata:
    """`meta` with `shapes` added; one of the same name as a shape already listed replaces it."""
    names = {shape.name for shape in shapes}
    meta.shapes = [shape for shape in meta.shapes if shape.name not in names] + list(shapes)
    return meta


def remove_shapes(meta: ImageMetadata, names: Iterable[str]) -> ImageMetadata:
    """`meta` without the shapes named; naming one it does not list is a usage error."""
    wanted = set(names)
    missing = wanted - {shape.name for shape in meta.shapes}
    if missing:
        raise InvalidValueError(f"no shape named {', '.join(sorted(missing))} in the metadata")
    meta.shapes = [shape for shape in meta.shapes if shape.name not in wanted]
    return meta


def show_metadata(archive: Path, *, scratch: Path | None = None) -> ImageMetadata:
    """The metadata of a .oci archive, plain or compressed (a zstd, xz or bzip2 one is decompressed into
    `scratch` first, the system's temporary directory by default)."""
    with opened_input(archive) as opened, archive_tar(opened, identify(opened), OpenOptions(scratch=scratch)) as tar:
        return read_metadata(read_layout(tar))


def edit_metadata(
    archive: Path,
    change: Callable[[ImageMetadata], ImageMetadata],
    *,
    strict: bool = False,
    os_name: OsName = OsName.REPORTED,
    checksum: bool = False,
    part_size: int = OBJECT_PUT_PART_SIZE,
) -> EditResult:
    """`os_name` says how an operating system one typo from a listed one is taken (given: refused). With
    `checksum`, the archive is read back once changed, still under the lock, for the checksums of an upload: an
    edit in place writes a few KiB, so the checksums of the whole file can only come from a read."""
    started = time.monotonic()
    require_regular_file(archive)
    # Edit the file itself, not a symlink to it: the rewrite path must not replace the link with a copy.
    real = Path(os.path.realpath(archive))
    with _exclusive(real):
        done = _edit_locked(archive, real, change, strict=strict, os_name=os_name, started=started)
        if checksum:
            done = replace(done, checksum=checksum_file(real, part_size=part_size))
        return done


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """An advisory lock, so that two edits of one archive cannot interleave their reads and writes."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(
                f"{path}: another imagepack is changing this archive; try again when it is done"
            ) from None
        yield
    finally:
        os.close(fd)


def _edit_locked(
    archive: Path,
    real: Path,
    change: Callable[[ImageMetadata], ImageMetadata],
    *,
    strict: bool,
    os_name: OsName,
    started: float,
) -> EditResult:
    layout = read_layout(real)
    updated = change(read_metadata(layout))
    problems = check_metadata(updated, strict=strict, os_name=os_name, fix=Remedy.SET_OS)
    if problems and problems[0].severity is Severity.ERROR:  # errors come first
        raise MetadataError.from_problem(problems[0], subject=archive)
    data = dump_metadata(updated)
    mtime = output_time()  # as a new archive's: SOURCE_DATE_EPOCH or the fixed time
    why_not = _why_not_in_place(layout, data)
    if why_not is None:
        _rewrite_metadata_in_place(layout, data, mtime)
        how = "in place; the disk member was not touched"
    else:
        _rewrite_archive(layout, data, mtime)
        how = f"by rewriting the archive as a plain tar ({why_not})"
    return EditResult(archive, updated, why_not is None, how, problems, time.monotonic() - started)


def _why_not_in_place(layout: OciLayout, data: bytes) -> str | None:
    """None when the new JSON can replace the old in its own room; else the reason it cannot."""
    meta = layout.metadata
    if layout.compressed:
        return "it was gzip-wrapped"
    if not layout.metadata_first or meta.header_offset != 0 or meta.data_offset != BLOCK or meta.sparse:
        return "its metadata was not a plain first member"
    if len(data) + 1 > meta.size:
        return "the new metadata outgrew its room"
    return None


def _rewrite_metadata_in_place(layout: OciLayout, data: bytes, mtime: int) -> None:
    """One pwrite of the metadata header and data, padded to the member's old size so that no offset moves."""
    region = metadata_region(data, layout.metadata.size + 2 * BLOCK, mtime)
    assert len(region) == BLOCK + layout.metadata.size
    fd = os.open(layout.path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        written = os.pwrite(fd, region, 0)
        if written != len(region):
            raise MetadataError(f"{layout.path}: short write while updating the metadata")
        os.fsync(fd)
    finally:
        os.close(fd)


def _keep_ownership(original: Path, fd: int) -> None:
    """The rewritten archive keeps the old one's mode and, where we may, its owner."""
    st = os.stat(original)
    os.fchmod(fd, st.st_mode & 0o7777)
    with contextlib.suppress(PermissionError):
        os.fchown(fd, st.st_uid, st.st_gid)


def _rewrite_archive(layout: OciLayout, data: bytes, mtime: int) -> None:
    check_free_space(layout.path, disk_data_offset(len(data)) + layout.disk.size)
    with atomic_output(layout.path) as temp:
        fd = os.open(temp, os.O_RDWR | os.O_CLOEXEC)
        try:

            def write_disk(data_offset: int) -> None:
                if layout.disk_in_place:
                    copy_file_range_from(layout.path, fd, layout.disk.data_offset, data_offset, layout.disk.size)
                    return
                size = extract_member(layout, layout.disk, fd, data_offset, limit=layout.disk.size)
                if size != layout.disk.size:
                    raise ArchiveError(f"{layout.path}: the disk member holds {size} bytes, not {layout.disk.size}")

            _keep_ownership(layout.path, fd)
            write_archive(fd, data, mtime=mtime, write_disk=write_disk)
        finally:
            os.close(fd)
