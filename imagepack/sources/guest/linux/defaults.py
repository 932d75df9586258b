"""The command line a guest's boot loader configuration would give a kernel it generates entries for:
/etc/default/grub and /etc/default/grub.d/*.cfg (GRUB_CMDLINE_LINUX, GRUB_CMDLINE_LINUX_DEFAULT, GRUB_DEFAULT),
and /etc/kernel/cmdline (kernel-install, systemd-boot)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from imagepack.sources.guest.linux.bls import expand
from imagepack.sources.guest.linux.entries import words
from imagepack.sources.guest.linux.reading import Evidence, GuestReader, join

ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$")
VALUE_MOST = 64 * 1024
WANTED = ("GRUB_CMDLINE_LINUX", "GRUB_CMDLINE_LINUX_DEFAULT", "GRUB_DEFAULT", "GRUB_TERMINAL", "GRUB_SERIAL_COMMAND")


@dataclass
class GrubDefaults:
    """The GRUB_* settings that decide generated entries, each with the line that set it last."""

    values: dict[str, str] = field(default_factory=dict)
    evidence: dict[str, Evidence] = field(default_factory=dict)

    @property
    def cmdline(self) -> str | None:
        parts = [self.values.get("GRUB_CMDLINE_LINUX"), self.values.get("GRUB_CMDLINE_LINUX_DEFAULT")]
        found = [p for p in parts if p]
        return " ".join(found) if any(p is not None for p in parts) else None


def read_grub_defaults(reader: GuestReader) -> GrubDefaults | None:
    files = ["/etc/default/grub"]
    files += [join("/etc/default/grub.d", n) for n in reader.names("/etc/default/grub.d") if n.endswith(".cfg")]
    found = GrubDefaults()
    known: dict[str, tuple[str, Evidence]] = {}
    any_read = False
    for path in files:
        lines = reader.lines(path)
        if lines is None:
            continue
        any_read = True
        for number, line in lines:
            match = ASSIGNMENT.match(line)
            if not match or line.lstrip().startswith("#"):
                continue
            evidence = Evidence(path, number, line.strip())
            expanded = expand(match.group("value"), known, VALUE_MOST + 1)
            if len(expanded) > VALUE_MOST:  # a value that names itself again and again: a shell expansion bomb
                reader.note(path, f"line {number}: {match.group('name')} grows past {VALUE_MOST} characters")
            value = " ".join(words(expanded[:VALUE_MOST]))
            known[match.group("name")] = (value, evidence)
            if match.group("name") in WANTED:
                found.values[match.group("name")] = value
                found.evidence[match.group("name")] = evidence
    return found if any_read else None


def read_kernel_cmdline(reader: GuestReader) -> Evidence | None:
    """/etc/kernel/cmdline: one command line, comments allowed."""
    lines = reader.lines("/etc/kernel/cmdline")
    if lines is None:
        return None
    for number, line in lines:
        if line.strip() and not line.lstrip().startswith("#"):
            return Evidence("/etc/kernel/cmdline", number, line.strip())
    return None
