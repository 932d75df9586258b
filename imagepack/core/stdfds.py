"""Standard descriptors a caller closed (`<&-`, `>&-`, `2>&-`, a daemon's habit) are opened on /dev/null before
anything else opens a file: otherwise the first file we open takes descriptor 0, 1 or 2, where a print or a child
would read or write it, and Python's sys.stdout/sys.stderr are None, on which every message fails."""

from __future__ import annotations

import os
import sys

CLOSED: set[int] = set()  # the standard descriptors the caller had closed, now on /dev/null


def ensure_standard_fds() -> None:
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            CLOSED.add(fd)
            opened = os.open(os.devnull, os.O_RDWR)  # the lowest free descriptor: `fd`, since those below are open
            if opened != fd:
                os.dup2(opened, fd)
                os.close(opened)
            os.set_inheritable(fd, True)
    if sys.stdin is None:
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - stays open for the life of the process
    if sys.stdout is None:
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
