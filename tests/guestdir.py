"""The guest file view (imagepack.sources.guest.guestfs.GuestFiles) over a directory tree on the host standing in for
a guest's root: for the readers of guest configuration, which see only that interface. It keeps the contract
to the letter: symlinks resolved inside the tree (absolute targets from its root), a bounded number of hops, a
path that loops or climbs out of the tree is missing, reads refused with TooLarge before reading."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from imagepack.sources.guest.guestfs import Kind, TooLarge

HOPS_MOST = 40  # the kernel's limit on symlinks followed in one lookup
NAMES_MOST = 10_000


class GuestDir:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _resolve(self, path: str, *, follow_last: bool = True) -> list[str] | None:
        """The guest path's components with every symlink resolved inside the tree, or None (missing, loop, out)."""
        pending = [p for p in path.split("/") if p]
        done: list[str] = []
        hops = 0
        while pending:
            name = pending.pop(0)
            if name == ".":
                continue
            if name == "..":
                if not done:
                    return None  # climbs out of the guest
                done.pop()
                continue
            host = self.root.joinpath(*done, name)
            try:
                info = os.lstat(host)
            except OSError:
                return None
            if stat.S_ISLNK(info.st_mode) and (pending or follow_last):
                hops += 1
                if hops > HOPS_MOST:
                    return None
                target = os.readlink(host)
                if target.startswith("/"):
                    done = []
                pending = [p for p in target.split("/") if p] + pending
                continue
            if pending and not stat.S_ISDIR(info.st_mode):
                return None
            done.append(name)
        return done

    def _stat(self, path: str, *, follow_last: bool = True) -> tuple[Path, os.stat_result] | None:
        parts = self._resolve(path, follow_last=follow_last)
        if parts is None:
            return None
        host = self.root.joinpath(*parts)
        try:
            return host, os.lstat(host)
        except OSError:
            return None

    def kind(self, path: str) -> Kind | None:
        found = self._stat(path)
        if found is None:
            return None
        mode = found[1].st_mode
        if stat.S_ISREG(mode):
            return Kind.FILE
        if stat.S_ISDIR(mode):
            return Kind.DIRECTORY
        return Kind.OTHER

    def read(self, path: str, limit: int) -> bytes | None:
        found = self._stat(path)
        if found is None or not stat.S_ISREG(found[1].st_mode):
            return None
        host, info = found
        if info.st_size > limit:
            raise TooLarge(path, info.st_size, limit)
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            data = os.read(fd, limit + 1)
        finally:
            os.close(fd)
        if len(data) > limit:
            raise TooLarge(path, len(data), limit)
        return data

    def size(self, path: str) -> int | None:
        found = self._stat(path)
        return found[1].st_size if found is not None and stat.S_ISREG(found[1].st_mode) else None

    def list(self, path: str) -> list[str] | None:
        found = self._stat(path)
        if found is None or not stat.S_ISDIR(found[1].st_mode):
            return None
        return sorted(os.listdir(found[0]))[:NAMES_MOST]

    def readlink(self, path: str) -> str | None:
        found = self._stat(path, follow_last=False)
        if found is None or not stat.S_ISLNK(found[1].st_mode):
            return None
        return os.readlink(found[0])
