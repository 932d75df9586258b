"""A boot entry as a boot loader states it: its title, kernel and command line, and where it was read."""

from __future__ import annotations

import re
from dataclasses import dataclass

from imagepack.sources.guest.linux.reading import Evidence

PIECE = re.compile(r"""(\s+)|'([^']*)'?|"((?:\\.|[^"\\])*)"?|\\(.)|([^\s'"\\]+)""", re.DOTALL)
DOUBLE_ESCAPE = re.compile(r'\\([\\"$`])')
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
    """A shell-like line split into words with its quotes removed, as GRUB and sh split them (a quote left open
    runs to the end of the line). One regular-expression pass: linear in the line's length."""
    found: list[str] = []
    word: list[str] | None = None
    for piece in PIECE.finditer(line):
        space, single, double, escaped, plain = piece.groups()
        if space is not None:
            if word is not None:
                found.append("".join(word))
            word = None
            continue
        word = word if word is not None else []
        if single is not None:
            word.append(single)
        elif double is not None:
            word.append(DOUBLE_ESCAPE.sub(r"\1", double))
        else:
            word.append(escaped if escaped is not None else plain)
    if word is not None:
        found.append("".join(word))
    return found


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Orders kernel versions the way a person would: 5.10.0-26 after 5.10.0-9, 6.1 after 5.15."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.findall(r"\d+|[A-Za-z]+", version))
