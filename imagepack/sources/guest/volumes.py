"""One file system opened by its libyal reader (pyfsext, pyfsxfs, pyfsntfs, pyfsfat) on a bounded window of the
disk. Paths here are lists of names from the file system's own root; nothing is followed: the guest tree
(tree.py) walks symlinks and mount points itself, inside the guest."""

from __future__ import annotations

import contextlib
import stat
from typing import Any

import pyfsext  # type: ignore[import-not-found]
import pyfsfat  # type: ignore[import-not-found]
import pyfsntfs  # type: ignore[import-not-found]
import pyfsxfs  # type: ignore[import-not-found]

from imagepack.sources.guest.blockio import Window
from imagepack.sources.guest.guestfs import Kind

_MODULES: dict[str, Any] = {"ext2": pyfsext, "ext3": pyfsext, "ext4": pyfsext, "xfs": pyfsxfs}
_MODULES |= {"ntfs": pyfsntfs, "vfat": pyfsfat}
_ATTR_DIRECTORY, _ATTR_VOLUME_LABEL, _ATTR_REPARSE = 0x10, 0x08, 0x400
MAX_CACHED = 4096


class VolumeError(Exception):
    """The reader refused the file system: damaged, or a variant it does not know."""


class Volume:
    """A file system of type `fstype` in `window`."""

    def __init__(self, fstype: str, window: Window) -> None:
        self.fstype = fstype
        self._window = window  # the reader keeps reading it: it lives as long as the volume
        self.case_insensitive = fstype in ("ntfs", "vfat")
        self._posix = fstype not in ("ntfs", "vfat")
        self._sep = "/" if self._posix else "\\"
        self._volume = _MODULES[fstype].volume()
        try:
            self._volume.open_file_object(window)
        except (OSError, MemoryError) as e:
            raise VolumeError(_short(e)) from None
        self._entries: dict[tuple[str, ...], Any] = {}

    @property
    def label(self) -> str | None:
        try:
            value = self._volume.name if self.fstype == "ntfs" else self._volume.label
        except OSError:
            return None
        return str(value) if value else None

    def entry(self, parts: tuple[str, ...]) -> Any | None:
        """The entry at `parts`, or None. A name holding a separator of this file system names nothing."""
        key = tuple(p.casefold() for p in parts) if self.case_insensitive else parts
        if key in self._entries:
            return self._entries[key]
        if any(self._sep in p or "\0" in p for p in parts):
            return None
        try:
            found = self._volume.get_file_entry_by_path(self._sep + self._sep.join(parts))
        except OSError:
            found = None
        if len(self._entries) >= MAX_CACHED:
            self._entries.clear()
        self._entries[key] = found
        return found

    def kind(self, entry: Any, is_root: bool = False) -> Kind:
        if is_root:
            return Kind.DIRECTORY
        if self._posix:
            mode = entry.file_mode or 0
            if stat.S_ISLNK(mode):
                return Kind.SYMLINK
            if stat.S_ISDIR(mode):
                return Kind.DIRECTORY
            return Kind.FILE if stat.S_ISREG(mode) else Kind.OTHER
        flags = entry.file_attribute_flags or 0
        if flags & (_ATTR_REPARSE | _ATTR_VOLUME_LABEL):
            return Kind.OTHER  # a Windows link or junction names a drive letter: nothing to follow offline
        if self.fstype == "ntfs":  # NTFS marks a folder by its index, not by the attribute bit FAT uses
            return Kind.DIRECTORY if entry.has_directory_entries_index() else Kind.FILE
        return Kind.DIRECTORY if flags & _ATTR_DIRECTORY else Kind.FILE

    def target(self, entry: Any) -> str | None:
        if not self._posix:
            return None
        try:
            value = entry.symbolic_link_target
        except OSError:
            return None
        return str(value) if value else None

    def size(self, entry: Any) -> int:
        return int(entry.size or 0)

    def read(self, entry: Any, size: int) -> bytes:
        try:
            data: bytes = entry.read_buffer_at_offset(size, 0) if size else b""
        except OSError as e:
            raise VolumeError(_short(e)) from None
        return data

    def names(self, entry: Any, cap: int) -> list[str]:
        found: list[str] = []
        try:
            count = min(entry.number_of_sub_file_entries, cap)
            for i in range(count):
                name = entry.get_sub_file_entry(i).name
                if name and name not in (".", ".."):
                    found.append(str(name))
        except OSError:
            pass  # what was read so far: a damaged directory lists what it can
        return found

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._volume.close()


def _short(e: BaseException) -> str:
    text = str(e).split(". ", 1)[0]
    return text.split(": ", 1)[-1][:200] or type(e).__name__
