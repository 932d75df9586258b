"""An input opened once: every later reader (our header readers, the archive and stream readers, qemu-img,
qemu-nbd) reads that same open file, never the name again, so that a file renamed over the input after the checks
is never what gets read; and what the file was when opened is compared with what it is after a read, so that a
source changed while it was read is refused instead of written out half old, half new."""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import weakref
from collections.abc import Iterator
from pathlib import Path, PosixPath
from typing import NamedTuple

from imagepack.core.errors import InputError
from imagepack.core.process import share_with_children, stop_sharing

# Where a process finds its own descriptors by number: opening /proc/self/fd/N opens the file descriptor N refers
# to, whatever its name now is (a child that inherited N opens it the same way).
FD_DIR = "/proc/self/fd"


class FileState(NamedTuple):
    """What changes when a file is written, truncated, extended, punched or renamed over (its ctime moves then)."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileState:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class OpenedPath(PosixPath):
    """The name of an input that is already open. `str()` is the name the user gave (for messages);
    `os.fspath()` is /proc/self/fd/N, so that whatever opens it (open(), os.open(), os.stat(), a child process)
    reaches the file opened first. Paths derived from it (its parent, another suffix) are ordinary paths."""

    fd: int | None = None
    state: FileState | None = None

    def __fspath__(self) -> str:
        if self.fd is None:  # closed (the command is done with it), or a path derived from it: the name
            return super().__fspath__()
        return f"{FD_DIR}/{self.fd}"

    def require_unchanged(self) -> None:
        """Refuse the input when the open file is no longer what it was when opened."""
        if self.fd is None or self.state is None:
            return
        now = FileState.of(os.fstat(self.fd))
        if now == self.state:
            return
        was = self.state
        if now.size != was.size:
            how = f"its size went from {was.size} to {now.size} bytes"
        elif now.mtime_ns != was.mtime_ns:
            how = "it was written to"
        else:
            how = "it was renamed, replaced or its attributes changed"
        raise InputError(
            f"{self}: the file changed while imagepack read it ({how}); nothing was written. "
            "Convert a copy that nothing else writes to, or wait until the program writing it is done",
            code="input.changed",
        )

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            _close(fd)


# Children inherit a shared descriptor at its own number, and some numbers are spoken for there: a socket-activated
# qemu-nbd takes its listening socket at 3. An input moved to 10 or above never sits where a child expects another.
_FIRST_SHARED_FD = 10


def _above_standard_slots(fd: int) -> int:
    if fd >= _FIRST_SHARED_FD:
        return fd
    try:
        moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _FIRST_SHARED_FD)
    except OSError:  # fewer descriptors allowed than that (ulimit -n): stay where it is
        return fd
    os.close(fd)
    return moved


def _close(fd: int) -> None:
    stop_sharing(fd)
    os.close(fd)


def open_input(path: Path) -> OpenedPath:
    """Open `path` read-only, once, and check that it is a regular file: by the open descriptor, so that what is
    checked is what is read. Closed by close(), or when nothing refers to it any more."""
    if isinstance(path, OpenedPath) and path.fd is not None:
        return path
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)  # a FIFO must not block us
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory; imagepack reads only regular files") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise InputError(f"{path}: is {kind}; imagepack reads only regular files")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    fd = _above_standard_slots(fd)
    opened = OpenedPath(path)
    opened.fd, opened.state = fd, FileState.of(st)
    share_with_children(fd)
    weakref.finalize(opened, _close_if_open, opened.__dict__)
    return opened


@contextlib.contextmanager
def opened_input(path: Path) -> Iterator[OpenedPath]:
    """`path` opened once for the block (or as it is, when it already is an opened input the caller holds)."""
    opened = open_input(path)
    try:
        yield opened
    finally:
        if opened is not path:
            opened.close()


def _close_if_open(attributes: dict[str, object]) -> None:
    fd = attributes.get("fd")
    if isinstance(fd, int):
        attributes["fd"] = None
        _close(fd)


def descriptor_of(path: Path) -> int | None:
    """The open descriptor behind `path`, if it names an opened input."""
    return path.fd if isinstance(path, OpenedPath) else None


def require_unchanged(path: Path) -> None:
    """Refuse `path` when it names an opened input that changed since it was opened (a plain path: nothing to
    compare)."""
    if isinstance(path, OpenedPath):
        path.require_unchanged()


def require_regular_file(path: Path) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise InputError(f"{path}: is {kind}; imagepack reads only regular files")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied")
