"""The one view of a guest's files that every reader of guest configuration uses: paths as the guest sees them
once its file systems are mounted where its fstab says, symlinks resolved inside the guest (never on the host),
and every read bounded by the caller's limit."""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol


class Kind(StrEnum):
    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    OTHER = "other"  # a device node, FIFO or socket: never read


class TooLarge(Exception):
    """A guest file is larger than the limit its reader set: reported as a finding, never read whole."""

    def __init__(self, path: str, size: int, limit: int) -> None:
        super().__init__(f"{path}: {size} bytes, above the {limit}-byte limit for it")
        self.path, self.size, self.limit = path, size, limit


class GuestFiles(Protocol):
    """A guest's file tree. Paths are absolute guest paths ('/etc/os-release'). Symlinks on the way and at the
    end are followed inside the guest, with a bounded number of hops; a path that leaves the guest or loops is
    treated as missing. Names are compared as the file system stores them (NTFS and FAT: case-insensitively)."""

    def kind(self, path: str) -> Kind | None:
        """What `path` is (after following symlinks), or None when it does not exist."""
        ...

    def read(self, path: str, limit: int) -> bytes | None:
        """The whole content of a regular file, or None when it does not exist or is not a regular file.
        Raises TooLarge, without reading, when the file is larger than `limit` bytes."""
        ...

    def size(self, path: str) -> int | None:
        """The size in bytes of a regular file, without reading it; None when it does not exist or is not one."""
        ...

    def list(self, path: str) -> list[str] | None:
        """The names in a directory (no '.' or '..'), sorted, or None when it is not a directory. At most a
        bounded number of names (the implementation's cap) are returned."""
        ...

    def readlink(self, path: str) -> str | None:
        """The target a symlink states (not followed), or None when `path` is not a symlink."""
        ...
