"""A boot entry as a boot loader states it: its title, kernel and command line, and where it was read."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from imagepack.inspect.linux.reading import Evidence

KERNEL_NAME = re.compile(r"(?:^|/)vmlinu[xz]-(?P<version>[^/\s]+)$")


@dataclass(frozen=True)
class BootEntry:
    title: str
    kernel: str | None  # the kernel path as the entry names it
    version: str | None  # the kernel version that path names
    cmdline: str | None
    evidence: Evidence  # the entry's kernel line (GRUB) or its options line (BLS)
    source: str  # "grub" or "bls"
    entry_id: str | None = None  # GRUB's --id, or the BLS file name without .conf
    position: tuple[int, ...] = ()  # GRUB's menu position: (submenu, entry) for "1>2"


def version_of(kernel: str | None) -> str | None:
    if not kernel:
        return None
    found = KERNEL_NAME.search(kernel.strip())
    return found.group("version") if found else None


def words(line: str) -> list[str]:
    """A shell-like line split into words, quotes removed; split on white space when its quotes do not close."""
    try:
        return shlex.split(line, comments=False, posix=True)
    except ValueError:
        return line.split()


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Orders kernel versions the way a person would: 5.10.0-26 after 5.10.0-9, 6.1 after 5.15."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.findall(r"\d+|[A-Za-z]+", version))
