"""A guest's file view (imagepack.sources.guest.guestfs.GuestFiles) over one NTFS volume, read with pyfsntfs: names
compared case-insensitively as NTFS compares them, reads bounded before any byte is read. NTFS links (symbolic
links and junctions) name Windows paths (C:\\...), which cannot be resolved without the guest's drive letters:
they are treated as missing, as the view does with a link that leaves the guest."""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import pyfsntfs

from imagepack.sources.guest.guestfs import Kind, TooLarge

MAX_NAMES = 100_000  # names listed (and compared) per directory


class NtfsGuest:
    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._volume: Any = pyfsntfs.volume()
        self._volume.open_file_object(file)

    @classmethod
    def open(cls, path: Path) -> NtfsGuest:
        return cls(path.open("rb"))

    def close(self) -> None:
        self._volume.close()
        self._file.close()

    def __enter__(self) -> NtfsGuest:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @staticmethod
    def _is_link(entry: Any) -> bool:
        try:
            return entry.get_symbolic_link_target() is not None
        except OSError:
            return False

    def _children(self, entry: Any) -> list[Any]:
        if not entry.has_directory_entries_index():
            return []
        count = min(entry.get_number_of_sub_file_entries(), MAX_NAMES)
        return [entry.get_sub_file_entry(index) for index in range(count)]

    def _entry(self, path: str) -> Any | None:
        """The entry at a guest path, following no link; None when a part is missing or is a link."""
        trail = [self._volume.get_root_directory()]
        for part in path.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if len(trail) > 1:
                    trail.pop()
                continue
            if self._is_link(trail[-1]):
                return None
            wanted = part.casefold()
            found = next((c for c in self._children(trail[-1]) if (c.get_name() or "").casefold() == wanted), None)
            if found is None:
                return None
            trail.append(found)
        return trail[-1]

    def _kind(self, entry: Any) -> Kind:
        if self._is_link(entry):
            return Kind.SYMLINK
        if entry.has_directory_entries_index():
            return Kind.DIRECTORY
        return Kind.FILE if entry.has_default_data_stream() else Kind.OTHER

    def kind(self, path: str) -> Kind | None:
        entry = self._entry(path)
        if entry is None or self._kind(entry) is Kind.SYMLINK:
            return None
        return self._kind(entry)

    def size(self, path: str) -> int | None:
        entry = self._entry(path)
        return int(entry.get_size()) if entry is not None and self._kind(entry) is Kind.FILE else None

    def read(self, path: str, limit: int) -> bytes | None:
        entry = self._entry(path)
        if entry is None or self._kind(entry) is not Kind.FILE:
            return None
        size = int(entry.get_size())
        if size > limit:
            raise TooLarge(path, size, limit)
        data = bytes(entry.read_buffer_at_offset(size, 0)) if size else b""
        if len(data) != size:
            raise OSError(f"{path}: read {len(data)} of {size} bytes")
        return data

    def list(self, path: str) -> list[str] | None:
        entry = self._entry(path)
        if entry is None or self._kind(entry) is not Kind.DIRECTORY:
            return None
        return sorted(name for c in self._children(entry) if (name := c.get_name()) not in (None, ".", ".."))

    def readlink(self, path: str) -> str | None:
        entry = self._entry(path.rstrip("/"))
        if entry is None or not self._is_link(entry):
            return None
        return str(entry.get_symbolic_link_target())
