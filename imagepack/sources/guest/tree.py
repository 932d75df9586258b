"""A guest's file tree as the guest sees it: file systems mounted at their mount points, paths resolved one name
at a time, symlinks followed inside the guest (an absolute target starts again at the guest's root, '..' stops at
it, a bounded number of hops, a loop reads as missing), and every read bounded. Nothing is ever looked up on the
host: the names only ever reach the file system readers."""

from __future__ import annotations

from typing import Any

from imagepack.sources.guest.guestfs import GuestFiles, Kind, TooLarge
from imagepack.sources.guest.volumes import Volume, VolumeError

MAX_HOPS = 40  # as Linux's path walk
MAX_NAMES = 10_000  # names one list() returns
MAX_DEPTH = 256  # components of a path being resolved


def split(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


class GuestTree(GuestFiles):
    """Volumes mounted at guest paths ('/' first). Implements GuestFiles."""

    def __init__(self, root: Volume) -> None:
        self._mounts: dict[tuple[str, ...], Volume] = {(): root}

    def mount(self, path: str, volume: Volume) -> None:
        self._mounts[tuple(split(path))] = volume

    @property
    def mounts(self) -> dict[str, Volume]:
        return {"/" + "/".join(point): volume for point, volume in self._mounts.items()}

    def _locate(self, parts: tuple[str, ...]) -> tuple[Volume, tuple[str, ...]]:
        """The volume mounted at the longest prefix of `parts`, and the rest of the path inside it."""
        for cut in range(len(parts), -1, -1):
            volume = self._mounts.get(parts[:cut])
            if volume is not None:
                return volume, parts[cut:]
        raise AssertionError("the root is always mounted")

    def _resolve(self, path: str, follow_last: bool = True) -> tuple[Volume, tuple[str, ...], Any] | None:
        """The volume, its inner path and entry that `path` names in the guest, or None when it does not exist,
        leaves through a non-directory, or its symlinks loop or go too deep."""
        pending = split(path)
        resolved: list[str] = []
        hops = 0
        volume, inner = self._locate(())
        entry = volume.entry(())
        while pending:
            name = pending.pop(0)
            if name == "..":
                if resolved:
                    resolved.pop()
                volume, inner = self._locate(tuple(resolved))
                entry = volume.entry(inner)
                continue
            candidate = (*resolved, name)
            volume, inner = self._locate(candidate)
            entry = volume.entry(inner)
            if entry is None:
                return None
            kind = volume.kind(entry, is_root=not inner)
            if kind is Kind.SYMLINK and (pending or follow_last):
                hops += 1
                target = volume.target(entry)
                if hops > MAX_HOPS or not target:
                    return None
                if target.startswith("/"):
                    resolved = []
                pending = split(target) + pending
                if len(pending) > MAX_DEPTH:
                    return None
                volume, inner = self._locate(tuple(resolved))
                entry = volume.entry(inner)
                continue
            if pending and kind is not Kind.DIRECTORY:
                return None
            resolved = list(candidate)
        return (volume, inner, entry) if entry is not None else None

    def kind(self, path: str) -> Kind | None:
        found = self._resolve(path)
        return None if found is None else found[0].kind(found[2], is_root=not found[1])

    def _of_kind(self, path: str, kind: Kind) -> tuple[Volume, Any] | None:
        """The volume and entry `path` names, when it is an entry of `kind` (symlinks followed)."""
        found = self._resolve(path)
        if found is None:
            return None
        volume, inner, entry = found
        return (volume, entry) if volume.kind(entry, is_root=not inner) is kind else None

    def read(self, path: str, limit: int) -> bytes | None:
        found = self._of_kind(path, Kind.FILE)
        if found is None:
            return None
        volume, entry = found
        size = volume.size(entry)
        if size > limit:
            raise TooLarge(path, size, limit)
        try:
            return volume.read(entry, size)
        except VolumeError:
            return None

    def size(self, path: str) -> int | None:
        found = self._of_kind(path, Kind.FILE)
        return None if found is None else found[0].size(found[1])

    def list(self, path: str) -> list[str] | None:
        found = self._of_kind(path, Kind.DIRECTORY)
        return None if found is None else sorted(found[0].names(found[1], MAX_NAMES))

    def readlink(self, path: str) -> str | None:
        found = self._resolve(path, follow_last=False)
        if found is None:
            return None
        volume, inner, entry = found
        if not inner or volume.kind(entry) is not Kind.SYMLINK:
            return None
        return volume.target(entry)
