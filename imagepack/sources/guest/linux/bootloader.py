"""Which boot entries a Linux guest's boot loader offers, which one it boots by default, and whether that entry's
kernel command line sends the console to the first serial port (what OCI's serial console shows)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from imagepack.sources.guest.linux.bls import expand, read_bls, read_grubenv
from imagepack.sources.guest.linux.defaults import GrubDefaults, read_grub_defaults, read_kernel_cmdline
from imagepack.sources.guest.linux.entries import BootEntry, words
from imagepack.sources.guest.linux.grubcfg import GrubConfig, default_value, parse_grub_cfg
from imagepack.sources.guest.linux.reading import Evidence, GuestReader, join

GRUB_CFGS = ("/boot/grub2/grub.cfg", "/boot/grub/grub.cfg")
EFI = "/boot/efi/EFI"
CONFIGS_MOST = 16
SERIAL = re.compile(r"^console=ttyS0(?:,.*)?$")


@dataclass(frozen=True)
class SerialConsole:
    present: bool | None  # None: no command line was found to decide
    argument: str | None  # the console=ttyS0... word
    evidence: Evidence | None
    source: str  # what the command line came from


@dataclass
class BootLoader:
    configs: list[str] = field(default_factory=list)  # every grub.cfg read
    unreadable: list[str] = field(default_factory=list)  # grub.cfg files there but not read (too large, binary)
    menu: str | None = None  # the grub.cfg whose menu boots
    entries: list[BootEntry] = field(default_factory=list)
    default: BootEntry | None = None
    default_evidence: Evidence | None = None  # the line that chose it
    grub_defaults: GrubDefaults | None = None
    kernel_cmdline: Evidence | None = None
    serial_console: SerialConsole = SerialConsole(None, None, None, "none")


def read_boot_loader(reader: GuestReader) -> BootLoader:
    found = BootLoader(grub_defaults=read_grub_defaults(reader), kernel_cmdline=read_kernel_cmdline(reader))
    configs = _grub_configs(reader, found.unreadable)
    found.configs = [c.path for c in configs]
    menu = next((c for c in configs if c.has_menu), None)
    env = read_grubenv(reader)
    variables = {**(menu.variables if menu else {}), **env.values}
    bls = read_bls(reader, variables)
    if menu is not None:
        found.menu = menu.path
        grub = [replace(e, cmdline=expand(e.cmdline, variables)) if e.cmdline else e for e in menu.entries]
        found.entries = (bls if menu.blscfg else []) + grub
        found.default, found.default_evidence = _default(menu, found.entries, env.values)
    elif bls:
        found.entries = bls
        found.default, found.default_evidence = bls[0], bls[0].evidence
    found.unreadable += env.unreadable
    console = _serial(found)
    if found.unreadable and (console.present is not True or found.menu is None):  # what was not read decides
        console = SerialConsole(None, None, console.evidence, f"not decided: {found.unreadable[0]} could not be read")
    found.serial_console = console
    return found


def _grub_configs(reader: GuestReader, unreadable: list[str]) -> list[GrubConfig]:
    """Every grub.cfg: the usual places, each EFI vendor directory's, and those a `configfile` names."""
    queue = list(GRUB_CFGS)
    queue += [join(join(EFI, vendor), "grub.cfg") for vendor in reader.names(EFI)]
    seen: set[str] = set()
    configs: list[GrubConfig] = []
    while queue and len(configs) < CONFIGS_MOST:
        path = queue.pop(0)
        if path in seen:
            continue
        seen.add(path)
        config = parse_grub_cfg(reader, path)
        if config is not None:
            configs.append(config)
            queue += config.configfiles
        elif reader.exists(path):
            unreadable.append(path)
    return configs


def _default(
    menu: GrubConfig, entries: list[BootEntry], env: dict[str, tuple[str, Evidence]]
) -> tuple[BootEntry | None, Evidence | None]:
    if not entries:
        return None, None
    stated = default_value(menu)
    value, evidence = stated if stated else ("0", None)
    if "saved_entry" in value or value == "saved":
        saved = env.get("saved_entry")
        value, evidence = saved if saved else ("0", evidence)
    chosen = _match(value, entries, bls=menu.blscfg is not None)
    if chosen is None:
        return entries[0], evidence
    return chosen, evidence


def _match(value: str, entries: list[BootEntry], *, bls: bool) -> BootEntry | None:
    if re.fullmatch(r"\d+(>\d+)*", value):
        position = tuple(int(p) for p in value.split(">"))
        if bls and len(position) == 1:
            return entries[position[0]] if position[0] < len(entries) else None
        return next((e for e in entries if e.position == position), None)
    return next((e for e in entries if value in (e.entry_id, e.title)), None)


def _serial(found: BootLoader) -> SerialConsole:
    if found.default is not None:
        where = f"the default boot entry '{found.default.title}'"
        return _console(found.default.cmdline or "", found.default.evidence, where)
    if found.grub_defaults is not None and found.grub_defaults.cmdline is not None:
        evidence = found.grub_defaults.evidence.get("GRUB_CMDLINE_LINUX_DEFAULT") or found.grub_defaults.evidence.get(
            "GRUB_CMDLINE_LINUX"
        )
        return _console(found.grub_defaults.cmdline, evidence, "/etc/default/grub")
    if found.kernel_cmdline is not None:
        return _console(found.kernel_cmdline.text or "", found.kernel_cmdline, "/etc/kernel/cmdline")
    return SerialConsole(None, None, None, "none")


def _console(cmdline: str, evidence: Evidence | None, source: str) -> SerialConsole:
    argument = next((w for w in words(cmdline) if SERIAL.match(w)), None)
    return SerialConsole(argument is not None, argument, evidence, source)
