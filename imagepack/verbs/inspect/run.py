"""`inspect` on what the user named: the input opened as every verb opens it, then its guest read (reader.py), with
what a .oci's metadata says beside it; and the readiness rules on a guest read once, as `verify` and
`convert --for` report them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagepack.core.errors import ImagepackError
from imagepack.core.problems import Problem, Severity
from imagepack.sources.guest.reader import inspect_image
from imagepack.sources.open import OpenOptions, Source, open_source
from imagepack.verbs.inspect.rules import Target, Wanted, check


def inspect_path(path: Path, options: OpenOptions = OpenOptions()) -> dict[str, Any]:
    """The report on the guest in `path` (any input imagepack reads), opened as `options` say."""
    with open_source(path, options) as source:
        return inspect_source(source, str(path))


def inspect_source(source: Source, shown: str) -> dict[str, Any]:
    """The report on the guest in an input already opened (verify reads the guest of the file it checks)."""
    report = inspect_image(source.disk, shown)
    metadata = None
    if source.archive is not None:
        meta = source.archive.metadata
        metadata = {
            "launch_mode": meta.launch_mode.value,
            "firmware": meta.launch.firmware.value,
            "operating_system": meta.operating_system,
            "operating_system_version": meta.operating_system_version,
        }
    return {
        "path": shown,
        "input": source.format,
        "format": source.disk.format.value,
        "virtual_size": source.virtual_size,
        "metadata": metadata,
        **report,
    }


@dataclass(frozen=True)
class Readiness:
    """The readiness rules on a guest: each finding as a problem (a rule's id its code), and what the result says
    of the guest (its `guest` key: whether it was checked, its system and firmware, the rules' findings)."""

    problems: list[Problem]
    guest: dict[str, Any]

    @property
    def errors(self) -> list[Problem]:
        return [problem for problem in self.problems if problem.severity is Severity.ERROR]


def readiness(source: Source, shown: str, wanted: Wanted) -> Readiness:
    """The guest in `source` (read once, through the file already opened) against the rules of `wanted`. A guest
    that cannot be read (its reader stopped, or no qemu-nbd to export it) is a warning that it was not checked,
    never a refusal; an input that changed while read is raised, as pack's reading of the guest does."""
    try:
        inspected = inspect_source(source, shown)
    except ImagepackError as e:
        if e.code == "input.changed":
            raise
        unread = Problem("guest.not-checked", f"the guest was not checked: {e.message}", severity=Severity.WARNING)
        return Readiness([unread], {"checked": False, "why": e.message})
    findings = check(inspected, wanted)
    system = inspected["os"]
    guest = {
        "checked": not any(f.id == "guest.not-checked" for f in findings),
        "for": wanted.target.value,
        "os": {key: system.get(key) for key in ("family", "id", "version", "pretty_name")},
        "firmware": inspected["boot"]["firmware"],
        "launch_mode": (wanted.launch_mode or "PARAVIRTUALIZED") if wanted.target is Target.OCI else None,
        "rules": [f.to_json() for f in findings],
    }
    return Readiness([f.problem() for f in findings], guest)
