"""Taking a .oci archive apart: its metadata and its disk, as the qcow2 it holds or converted to another format."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from imagepack import qemu
from imagepack.atomic import atomic_outputs, check_free_space, check_target
from imagepack.errors import OutputError
from imagepack.formats import ImageFormat, SafetyPolicy
from imagepack.oci.archive import DISK_NAME, METADATA_NAME
from imagepack.oci.reader import open_archive
from imagepack.options import create_options
from imagepack.progress import Progress
from imagepack.sparse import copy_range


@dataclass(frozen=True)
class UnpackResult:
    archive: Path
    disk: Path
    disk_format: ImageFormat
    metadata: Path
    virtual_size: int
    seconds: float


def unpack_archive(
    archive: Path,
    directory: Path,
    *,
    to: ImageFormat | None = None,
    options: Mapping[str, str] = {},
    force: bool = False,
    sync: bool = False,
    policy: SafetyPolicy = SafetyPolicy(),
    on_progress: Progress | None = None,
) -> UnpackResult:
    started = time.monotonic()
    fmt = to or ImageFormat.QCOW2
    checked_options = create_options(fmt, options)
    created = not directory.is_dir()
    if created:
        try:
            directory.mkdir()
        except OSError as e:
            raise OutputError(f"{directory}: cannot create the directory: {e.strerror}") from None
    try:
        return _unpack_into(
            archive, directory, fmt, options, checked_options, force, sync, policy, on_progress, started
        )
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                directory.rmdir()  # only when empty: we made it, and nothing of ours is in it
        raise


def _unpack_into(
    archive: Path,
    directory: Path,
    fmt: ImageFormat,
    options: Mapping[str, str],
    checked_options: Mapping[str, str],
    force: bool,
    sync: bool,
    policy: SafetyPolicy,
    on_progress: Progress | None,
    started: float,
) -> UnpackResult:
    disk_target = directory / (DISK_NAME if fmt is ImageFormat.QCOW2 else f"output.{fmt.value}")
    metadata_target = directory / METADATA_NAME
    for target in (disk_target, metadata_target):
        check_target(target, force=force, inputs=(archive,))

    with open_archive(archive, policy=policy, scratch=directory) as opened:
        disk = opened.disk
        copy = fmt is ImageFormat.QCOW2 and not options
        needed = disk.ref.size or os.stat(disk.ref.path).st_size
        check_free_space(disk_target, needed if copy else needed + disk.virtual_size // 100)
        with atomic_outputs([disk_target, metadata_target], sync=sync) as (disk_temp, metadata_temp):
            if copy:
                src_fd = os.open(disk.ref.path, os.O_RDONLY | os.O_CLOEXEC)
                dst_fd = os.open(disk_temp, os.O_WRONLY | os.O_CLOEXEC)
                try:
                    copy_range(src_fd, dst_fd, disk.ref.offset, 0, needed, on_progress)
                finally:
                    os.close(src_fd)
                    os.close(dst_fd)
            else:
                qemu.convert(
                    disk.ref,
                    disk_temp,
                    fmt,
                    virtual_size=disk.virtual_size,
                    options=checked_options,
                    on_progress=on_progress,
                )
            # As archived, byte for byte (our own archives' whitespace padding included): what was signed or
            # checksummed as a member still matches once extracted, as with any tar tool.
            metadata_temp.write_bytes(opened.metadata_bytes)
    return UnpackResult(archive, disk_target, fmt, metadata_target, disk.virtual_size, time.monotonic() - started)
