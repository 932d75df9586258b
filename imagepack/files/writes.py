"""Writes that are checked: a short write is finished or fails, and a full file system is one clear error.

os.pwrite and os.write may write fewer bytes than asked (a file system that fills up mid-write does exactly
that, and the next write would have raised ENOSPC); every writer of ours goes through these, which loop
until all is written and turn a write that makes no progress into ENOSPC."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from imagepack.core.errors import OutputError

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    """Write all of `data` at `offset`, however many calls it takes; raises OSError when none makes progress."""
    view = memoryview(data).cast("B")
    done = 0
    while done < len(view):
        n = os.pwrite(fd, view[done:], offset + done)
        if n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        done += n


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """os.write until all of `data` is written (a pipe, a socket, a file at its current offset)."""
    view = memoryview(data).cast("B")
    done = 0
    while done < len(view):
        n = os.write(fd, view[done:])
        if n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        done += n


def is_full(e: BaseException) -> bool:
    """Whether `e` says the file system (or the user's quota, or the file size limit) has no room."""
    return isinstance(e, OSError) and e.errno in FULL_ERRNOS


class NoSpaceError(OutputError):
    """A file system (or the user's quota) had no room: its message says what is free once our temporaries are
    gone (atomic_outputs calls `measure` again after removing them), and what was needed where known."""

    def __init__(self, where: Path, *, needed: int | None, quota: bool) -> None:
        self.where = where
        self.needed = needed
        self.quota = quota
        self.free: int | None = None
        super().__init__("no space left")
        self.measure()

    def measure(self) -> None:
        """What is free at `where` now (None when it cannot be told)."""
        try:
            self.free = shutil.disk_usage(self.where).free
        except OSError:
            self.free = None

    @property
    def reason(self) -> str:
        free = f"free {_mib(self.free)}" if self.free is not None else "free unknown"
        wanted = f", needed {_mib(self.needed)}" if self.needed is not None else ""
        quota = " (disk quota exceeded)" if self.quota else ""
        return (
            f"no space left on {self.where}{quota}: {free}{wanted}; nothing was written; "
            "free some space or write elsewhere"
        )


def write_failed(e: OSError, where: Path, *, needed: int | None = None, file: Path | None = None) -> OutputError:
    """The one line for a write into the directory `where` (of the output `file`, if one) that failed: for a full
    file system, what is free there and what was needed (where known); otherwise the system's own words."""
    if e.errno in FULL_ERRNOS and e.errno != errno.EFBIG:
        return NoSpaceError(where, needed=needed, quota=e.errno == errno.EDQUOT)
    if e.errno == errno.EFBIG:
        return OutputError(
            f"{file or where}: the file grew past the largest file allowed here (the file system's limit, or "
            "'ulimit -f'); nothing was written; write elsewhere"
        )
    return OutputError(f"{file or where}: writing failed: {e.strerror or e}; nothing was written")


def _mib(n: int) -> str:
    return f"{n / 1024**2:,.1f} MiB"
