"""/etc/crypttab: the encrypted volumes a Linux guest unlocks at boot (a cloud import cannot unlock them)."""

from __future__ import annotations

from dataclasses import dataclass

from imagepack.sources.guest.linux.fstab import SpecKind, spec_kind, unescape
from imagepack.sources.guest.linux.reading import Evidence, GuestReader

CRYPTTAB = "/etc/crypttab"


@dataclass(frozen=True)
class CrypttabEntry:
    name: str  # the /dev/mapper name it opens as
    device: str
    kind: SpecKind
    options: tuple[str, ...]
    evidence: Evidence


def read_crypttab(reader: GuestReader) -> list[CrypttabEntry]:
    entries = []
    for number, line in reader.lines(CRYPTTAB) or []:
        fields = line.split()
        if len(fields) < 2 or fields[0].startswith("#"):
            continue
        device = unescape(fields[1])
        options = tuple(fields[3].split(",")) if len(fields) > 3 else ()
        entries.append(
            CrypttabEntry(
                unescape(fields[0]), device, spec_kind(device)[0], options, Evidence(CRYPTTAB, number, line.strip())
            )
        )
    return entries
