"""Taking a .oci archive apart: its metadata and its disk, as the qcow2 it holds or converted to another format."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from imagepack.core.errors import InvalidValueError, OutputError
from imagepack.core.openfile import opened_input
from imagepack.core.progress import Progress, stage
from imagepack.files.atomic import atomic_outputs, check_free_space, check_target
from imagepack.files.checksums import OBJECT_PUT_PART_SIZE, Checksums, checksum_file
from imagepack.formats import Container, ImageFormat, SafetyPolicy, spec
from imagepack.formats.create_options import create_options
from imagepack.sources.identify import identify
from imagepack.sources.oci import OpenedArchive
from imagepack.sources.open import OpenOptions, open_oci
from imagepack.writers.disk import DiskRequest, StreamWriter, plan_disk, write_planned


@dataclass(frozen=True)
class UnpackResult:
    archive: Path
    disk: Path
    disk_format: ImageFormat
    metadata: Path
    virtual_size: int
    copied: bool
    seconds: float
    checksum: Checksums | None = None  # of the disk written, when asked for

    def to_json(self) -> dict[str, Any]:
        return {
            "source": str(self.archive),
            "source_format": "oci",
            "target": str(self.disk),
            "format": self.disk_format.value,
            "metadata": str(self.metadata),
            "virtual_size": self.virtual_size,
            "copied": self.copied,
            "seconds": round(self.seconds, 3),
            "checksum": self.checksum.to_json() if self.checksum else None,
        }


def output_names(archive: Path, fmt: ImageFormat, name: str | None = None) -> tuple[str, str]:
    """The disk's and the metadata's file names: NAME.qcow2 (or the format's suffix) and NAME.json, NAME being
    the archive's own name without .oci (and its compression suffix) unless given, so that two archives unpack
    into one directory."""
    if name is None:
        name = archive.name
        for suffix in (".zst", ".zstd", ".xz", ".bz2", ".gz", ".tgz", ".oci", ".tar"):
            name = name.removesuffix(suffix) if name.lower().endswith(suffix) else name
    if not name or "/" in name or name in (".", ".."):
        raise InvalidValueError(f"'{name}' cannot name the outputs; give a plain file name without its suffix")
    return name + spec(fmt).suffix, name + ".json"


@contextlib.contextmanager
def _opened(archive: Path, options: OpenOptions) -> Iterator[tuple[OpenedArchive, bool]]:
    """The archive opened once, and whether it is in a zstd, xz or bzip2 stream: then its decompression is the
    first half of the work (`options.on_progress`), else no part of it."""
    with opened_input(archive) as source:  # what is identified is what is read
        identity = identify(source)
        compressed = identity.stream not in (None, Container.GZIP)
        decoding = stage(options.on_progress, "decompressing", 0.0, 0.5) if compressed else None
        with open_oci(source, replace(options, on_progress=decoding), identity=identity) as opened:
            yield opened, compressed


def unpack_archive(
    archive: Path,
    directory: Path,
    *,
    to: ImageFormat | None = None,
    name: str | None = None,
    options: Mapping[str, str] = {},
    threads: int | None = None,
    stream_writer: StreamWriter = StreamWriter.IMAGEPACK,
    force: bool = False,
    sync: bool = False,
    policy: SafetyPolicy = SafetyPolicy(),
    scratch: Path | None = None,
    checksum: bool = False,
    part_size: int = OBJECT_PUT_PART_SIZE,
    on_progress: Progress | None = None,
) -> UnpackResult:
    """Write the archive's disk (as the qcow2 it holds, or converted to `to`) and its metadata, byte for byte as
    archived, into `directory` (created if missing). Both appear together or neither does. A compressed archive
    is decompressed, and a disk that cannot be read in place extracted, into `scratch` (`directory` by default).
    With `checksum`, the disk is read back once written (qemu-img or the kernel wrote it) for the checksums of an
    upload."""
    started = time.monotonic()
    fmt = to or ImageFormat.QCOW2
    create_options(fmt, options)  # a bad option fails before the directory is made or the archive read
    disk_name, metadata_name = output_names(archive, fmt, name)
    disk_target, metadata_target = directory / disk_name, directory / metadata_name
    created = not directory.is_dir()
    if created:
        try:
            directory.mkdir()
        except OSError as e:
            raise OutputError(f"{directory}: cannot create the directory: {e.strerror}") from None
    try:
        for target in (disk_target, metadata_target):
            check_target(target, force=force, inputs=(archive,))
        with _opened(archive, OpenOptions(policy=policy, scratch=scratch or directory, on_progress=on_progress)) as (
            opened,
            compressed,
        ):
            disk = opened.disk
            asked = DiskRequest(
                fmt, options=options, copy_if_unchanged=True, threads=threads, stream_writer=stream_writer
            )
            plan = plan_disk(disk, asked)
            check_free_space(disk_target, plan.needed + len(opened.metadata_bytes))
            with atomic_outputs([disk_target, metadata_target], sync=sync) as (disk_temp, metadata_temp):
                # A compressed archive's decompression is the first half of the work, the checksum the last fifth.
                start = 0.5 if compressed else 0.0
                writing = stage(on_progress, "writing", start, 0.8 if checksum else 1.0)
                write_planned(disk, plan, disk_temp, on_progress=writing)
                # As archived, byte for byte (our own archives' whitespace padding included): what was signed or
                # checksummed as a member still matches once extracted, as with any tar tool.
                metadata_temp.write_bytes(opened.metadata_bytes)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                directory.rmdir()  # only when empty: we made it, and nothing of ours is in it
        raise
    sums = None
    if checksum:
        sums = checksum_file(disk_target, part_size=part_size, on_progress=stage(on_progress, "checksumming", 0.8, 1.0))
    return UnpackResult(
        archive, disk_target, fmt, metadata_target, disk.virtual_size, plan.copy, time.monotonic() - started, sums
    )
