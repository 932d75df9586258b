"""Writing a GCE image tarball as Google's import wants it: the disk as `disk.raw`, alone in a GNU tar of the
old GNU format with its holes stored as a sparse member. Python's tarfile cannot write sparse members, so GNU tar
writes it; gzip is applied afterwards, like any compressed output."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from imagepack.core.errors import ImagepackError, OutputError
from imagepack.core.process import Limits, run
from imagepack.core.progress import Progress
from imagepack.files.atomic import atomic_output, check_free_space
from imagepack.files.leftovers import scratch_directory
from imagepack.files.reproducible import output_time
from imagepack.formats import ImageFormat
from imagepack.sources.disk import SourceImage
from imagepack.tools.programs import Program, find_program, version_of
from imagepack.writers.disk import DiskRequest, plan_disk, write_planned

GNU_TAR = Program(("gtar", "tar"))
DISK_MEMBER = "disk.raw"  # the one name Google's import reads


@functools.cache
def find_gnu_tar() -> str:
    """GNU tar (`gtar` where the system tar is bsdtar, as on macOS and the BSDs): only it writes sparse members."""
    return find_program(GNU_TAR, _missing, accept=lambda path: "GNU tar" in version_of(path).stdout)


def _missing(_where: str) -> ImagepackError:
    return ImagepackError(
        "GNU tar is needed to write a GCE image tarball (sparse, old GNU format) and was not found; "
        "install it with 'apt-get install tar' (Debian/Ubuntu) or 'brew install gnu-tar' (macOS)",
        code="gce.no-gnu-tar",
    )


def pack_gce_tarball(
    image: SourceImage,
    target: Path,
    *,
    grow_to: int | None = None,
    sync: bool = False,
    on_progress: Progress | None = None,
) -> None:
    """Write `image` as a raw disk (grown to `grow_to` bytes, its GPT moved) and put it in the tar `target`,
    whole or not at all. The raw disk is a sparse temporary beside the target, removed whatever happens."""
    tar = find_gnu_tar()
    plan = plan_disk(image, DiskRequest(ImageFormat.RAW, grow_to=grow_to))
    check_free_space(target, 2 * plan.needed)  # the raw disk's data, then the tar's copy of it
    with (
        scratch_directory(target.parent) as tmp,
        atomic_output(target, sync=sync) as out,
    ):
        disk = Path(tmp, DISK_MEMBER)
        os.close(os.open(disk, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
        write_planned(image, plan, disk, shown=target, on_progress=on_progress)
        done = run(
            [
                tar,
                "--create",
                "--format=oldgnu",  # what Google's import documents; its sparse headers are GNU's own
                "--sparse",  # holes stay holes: a 10 GiB disk with 1 GiB of data stores 1 GiB
                "--owner=0",
                "--group=0",
                "--numeric-owner",  # no user or group names of this machine in the archive
                "--mode=0644",
                f"--mtime=@{output_time()}",  # reproducible: SOURCE_DATE_EPOCH or the fixed time, not the temporary's
                f"--file={out}",
                f"--directory={tmp}",
                DISK_MEMBER,
            ],
            limits=Limits(wall_seconds=600.0 + 10.0 * plan.needed / 1024**3),
        )
        if done.returncode != 0:
            raise OutputError(f"{target}: GNU tar failed: {done.stderr.strip()[-500:] or done.returncode}")
