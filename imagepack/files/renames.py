"""A rename that never replaces: the last step of an output that must not overwrite a file another writer put
at its name meanwhile (two runs to one new output: one wins, the other is refused)."""

from __future__ import annotations

import ctypes
import errno
import functools
import os
from collections.abc import Callable
from pathlib import Path

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_NOT_SUPPORTED = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP})


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function: Callable[..., int] = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]  # type: ignore[attr-defined]
    function.restype = ctypes.c_int  # type: ignore[attr-defined]
    return function


def rename_noreplace(source: Path, target: Path) -> None:
    """Rename `source` to `target` in one step, or raise FileExistsError if anything is at `target` (a symlink,
    even a dangling one, included). Linux's renameat2(RENAME_NOREPLACE) where the file system takes it; else a
    hard link, which refuses an existing name as atomically, and the unlink of the old name."""
    renameat2 = _renameat2()
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code not in _NOT_SUPPORTED:
            raise OSError(code, os.strerror(code), str(target))
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError as e:
        if e.errno == errno.EEXIST or e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        # No hard links here (a FAT or some network file system): check, then rename; a small window remains.
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target)) from None
        os.rename(source, target)
        return
    os.unlink(source)
