"""GRUB 2's grub.cfg: its menu entries (and submenus) with their `linux` lines, the `set default` it boots,
whether it reads BLS entries, and the `configfile` it hands over to (an EFI-side grub.cfg often only finds the
real one and loads it)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from imagepack.sources.guest.linux.entries import BootEntry, version_of, words
from imagepack.sources.guest.linux.reading import Evidence, GuestReader

LINUX_COMMANDS = ("linux", "linuxefi", "linux16", "kernel")
DEPTH_MOST = 64
ENTRIES_MOST = 1024
SET = re.compile(r"^set\s+(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$")


@dataclass
class GrubConfig:
    path: str
    entries: list[BootEntry] = field(default_factory=list)
    defaults: list[Evidence] = field(default_factory=list)  # `set default=` lines, in order
    blscfg: Evidence | None = None
    configfiles: list[str] = field(default_factory=list)  # guest paths it hands over to
    variables: dict[str, tuple[str, Evidence]] = field(default_factory=dict)  # `set NAME=value`, last one kept

    @property
    def has_menu(self) -> bool:
        return bool(self.entries) or self.blscfg is not None


@dataclass
class _Open:
    kind: str  # "menuentry", "submenu" or "block"
    title: str = ""
    entry_id: str | None = None
    position: tuple[int, ...] = ()
    children: int = 0
    kernel: tuple[str, str, Evidence] | None = None  # (path, arguments, line)


def parse_grub_cfg(reader: GuestReader, path: str) -> GrubConfig | None:
    lines = reader.lines(path)
    if lines is None:
        return None
    config = GrubConfig(path)
    stack: list[_Open] = []
    top = [0]
    for number, raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        evidence = Evidence(path, number, line)
        head = line.split(None, 1)[0]
        if head in ("menuentry", "submenu"):
            _open_menu(stack, top, line, head)
        elif line == "}" or line.startswith("}"):
            _close(config, stack)
        elif line.endswith("{"):
            stack.append(_Open("block"))
        elif head in LINUX_COMMANDS and stack and stack[-1].kind == "menuentry":
            parts = line.split(None, 2)
            if len(parts) >= 2:
                stack[-1].kernel = (parts[1], parts[2] if len(parts) > 2 else "", evidence)
        else:
            _statement(config, line, head, evidence)
        if len(stack) > DEPTH_MOST or len(config.entries) > ENTRIES_MOST:
            reader.note(path, f"more than {DEPTH_MOST} nested blocks or {ENTRIES_MOST} entries: read no further")
            break
    return config


def _open_menu(stack: list[_Open], top: list[int], line: str, head: str) -> None:
    tokens = words(line.rstrip("{").strip())
    title = tokens[1] if len(tokens) > 1 else ""
    entry_id = None
    for i, token in enumerate(tokens):
        if token in ("--id", "$menuentry_id_option", "${menuentry_id_option}") and i + 1 < len(tokens):
            entry_id = tokens[i + 1]
    parent = next((o for o in reversed(stack) if o.kind == "submenu"), None)
    if parent is None:
        position: tuple[int, ...] = (top[0],)
        top[0] += 1
    else:
        position = (*parent.position, parent.children)
        parent.children += 1
    stack.append(_Open(head, title, entry_id, position))


def _close(config: GrubConfig, stack: list[_Open]) -> None:
    if not stack:
        return
    closed = stack.pop()
    if closed.kind == "menuentry":
        kernel, args, evidence = closed.kernel if closed.kernel else (None, None, Evidence(config.path))
        titles = [o.title for o in stack if o.kind == "submenu"] + [closed.title]
        config.entries.append(
            BootEntry(
                ">".join(titles), kernel, version_of(kernel), args, evidence, "grub", closed.entry_id, closed.position
            )
        )


def _statement(config: GrubConfig, line: str, head: str, evidence: Evidence) -> None:
    if head == "blscfg":
        config.blscfg = evidence
    elif head == "configfile":
        tokens = words(line)
        if len(tokens) > 1:
            config.configfiles.append(_guest_path(tokens[1], config))
    elif head == "set":
        found = SET.match(line)
        if found:
            value = " ".join(words(found.group("value"))) if found.group("value") else ""
            config.variables[found.group("name")] = (value, evidence)
            if found.group("name") == "default" and value not in ("${next_entry}", "$next_entry"):
                config.defaults.append(evidence)


def _guest_path(argument: str, config: GrubConfig) -> str:
    """A GRUB path with its device part and $prefix removed: the file as the guest's own tree holds it."""
    prefix = config.variables.get("prefix", ("/boot/grub", Evidence(config.path)))[0]
    for name in ("${prefix}", "$prefix"):
        argument = argument.replace(name, prefix)
    return re.sub(r"^\([^)]*\)", "", argument.strip("'\""))


def default_value(config: GrubConfig) -> tuple[str, Evidence] | None:
    """The value of the last `set default=` (other than the one-shot ${next_entry}), with its line."""
    if not config.defaults:
        return None
    evidence = config.defaults[-1]
    found = SET.match(evidence.text or "")
    value = " ".join(words(found.group("value"))) if found else ""
    return value, evidence
