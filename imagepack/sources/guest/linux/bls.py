"""Boot Loader Specification entries (/boot/loader/entries/*.conf, Oracle Linux and RHEL 8 and later) and the
GRUB environment block (grubenv) whose `kernelopts` and `saved_entry` they depend on."""

from __future__ import annotations

import re
from dataclasses import dataclass

from imagepack.sources.guest.linux.entries import BootEntry, version_key, version_of
from imagepack.sources.guest.linux.reading import Evidence, GuestReader, join

ENTRIES = "/boot/loader/entries"
GRUBENV = ("/boot/grub2/grubenv", "/boot/grub/grubenv")
GRUBENV_LIMIT = 64 * 1024  # the block is 1 KiB
EXPANDED_MOST = 64 * 1024  # characters of one expanded line
VARIABLE = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True)
class GrubEnv:
    """The variables a GRUB environment block sets (GRUB expands a variable it has no value for to nothing)."""

    values: dict[str, tuple[str, Evidence]]
    unreadable: list[str]


def read_grubenv(reader: GuestReader) -> GrubEnv:
    for path in GRUBENV:
        lines = reader.lines(path, GRUBENV_LIMIT)
        if lines is None:
            if reader.exists(path):
                return GrubEnv({}, [path])
            continue
        values: dict[str, tuple[str, Evidence]] = {}
        for number, line in lines:
            if line.startswith("#") or "=" not in line:
                continue
            name, value = line.split("=", 1)
            values[name] = (value, Evidence(path, number, line))
        return GrubEnv(values, [])
    return GrubEnv({}, [])


def expand(cmdline: str, variables: dict[str, tuple[str, Evidence]], most: int = EXPANDED_MOST) -> str:
    """Variables in a command line replaced by the values known for them (unknown ones stay as written), in
    one pass, the result cut at `most` characters: a line naming a long value many times stays bounded."""
    pieces: list[str] = []
    size = 0
    at = 0
    for found in VARIABLE.finditer(cmdline):
        name = found.group("braced") or found.group("bare")
        for piece in (cmdline[at : found.start()], variables[name][0] if name in variables else found.group(0)):
            pieces.append(piece[: most - size])
            size += len(pieces[-1])
        at = found.end()
        if size >= most:
            return "".join(pieces)
    pieces.append(cmdline[at:][: most - size])
    return "".join(pieces)


def read_bls(reader: GuestReader, variables: dict[str, tuple[str, Evidence]]) -> list[BootEntry]:
    """The BLS entries, newest version first (the order GRUB's blscfg shows them in)."""
    entries = []
    for name in reader.names(ENTRIES):
        if not name.endswith(".conf"):
            continue
        path = join(ENTRIES, name)
        lines = reader.lines(path)
        if lines is None:
            continue
        keys: dict[str, tuple[str, Evidence]] = {}
        for number, line in lines:
            parts = line.strip().split(None, 1)
            if parts and not parts[0].startswith("#"):
                keys.setdefault(parts[0], (parts[1] if len(parts) > 1 else "", Evidence(path, number, line.strip())))
        kernel = keys.get("linux", ("", Evidence(path)))[0] or None
        options, evidence = keys.get("options", ("", Evidence(path)))
        version = keys.get("version", ("", Evidence(path)))[0] or version_of(kernel)
        title = keys.get("title", (name.removesuffix(".conf"), Evidence(path)))[0]
        entries.append(
            BootEntry(title, kernel, version, expand(options, variables), evidence, "bls", name.removesuffix(".conf"))
        )
    entries.sort(key=lambda e: version_key(e.version or ""), reverse=True)
    return entries
