"""What a batch did, per output (built, skipped, failed or cancelled; size, sha256, seconds, the error), as JSON,
and the checksums as SHA256SUMS files that `sha256sum -c` reads; shard reports merged into one."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from imagepack.core.errors import ImagepackError
from imagepack.files.atomic import atomic_output

SUMS_NAME = "SHA256SUMS"


class Status(StrEnum):
    BUILT = "built"
    SKIPPED = "skipped"  # its record says nothing changed
    FAILED = "failed"
    CANCELLED = "cancelled"  # not started: the batch stopped after a failure, without keep-going


@dataclass(frozen=True)
class OutputReport:
    name: str  # the output's path, relative to the manifest's directory
    source: str  # likewise
    status: Status
    estimate: int  # bytes the plan expected it to need
    size: int | None = None
    sha256: str | None = None
    seconds: float | None = None
    error: dict[str, Any] | None = None  # code, message, remedy
    problems: list[dict[str, Any]] = field(default_factory=list)  # warnings and notes of the build

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.name,
            "source": self.source,
            "status": self.status.value,
            "estimate": self.estimate,
            "size": self.size,
            "sha256": self.sha256,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
            "error": self.error,
            "problems": self.problems,
        }


def error_json(e: ImagepackError) -> dict[str, Any]:
    return {"code": e.code, "message": e.message, "remedy": e.remedy.value if e.remedy else None, "value": e.value}


@dataclass(frozen=True)
class BatchReport:
    manifest: str  # the manifest's file name
    manifest_sha256: str  # of its text: shards of one plan name the same
    shard: str | None  # "I/N", or None for the whole manifest
    outputs: list[OutputReport]
    seconds: float
    planned: int  # the outputs of the whole plan, every shard's
    missing_shards: tuple[int, ...] = ()  # a merge told to allow a part: the shards it had no report of

    @property
    def failed(self) -> bool:
        return any(output.status is Status.FAILED for output in self.outputs)

    def to_json(self) -> dict[str, Any]:
        counts = {status.value: 0 for status in Status}
        for output in self.outputs:
            counts[output.status.value] += 1
        return {
            "manifest": self.manifest,
            "manifest_sha256": self.manifest_sha256,
            "shard": self.shard,
            "planned": self.planned,
            "missing_shards": list(self.missing_shards),
            "summary": counts,
            "seconds": round(self.seconds, 3),
            # By path, so reports of the same manifest compare equal however the work was split.
            "outputs": [output.to_json() for output in sorted(self.outputs, key=lambda o: o.name)],
        }


def write_report(path: Path, report: BatchReport) -> None:
    with atomic_output(path) as temp:
        temp.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")


def sums_text(lines: list[tuple[str, str]]) -> str:
    """`sha256sum` output: the digest, two spaces (text mode, as sha256sum writes by default), the name."""
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(lines))


def sums_name(shard: str | None) -> str:
    """SHA256SUMS, or for a shard SHA256SUMS.shard-I-of-N: shards writing into one directory (a shared volume, or
    artifacts downloaded together) must not replace each other's list."""
    if shard is None:
        return SUMS_NAME
    index, _, count = shard.partition("/")
    return f"{SUMS_NAME}.shard-{index}-of-{count}"


def write_sums_beside_outputs(report: BatchReport, root: Path) -> list[Path]:
    """A SHA256SUMS in each directory that holds outputs, naming them as seen from there, so that
    `sha256sum -c SHA256SUMS` run in that directory checks them. Returns the files written."""
    by_folder: dict[Path, list[tuple[str, str]]] = defaultdict(list)
    for output in report.outputs:
        if output.sha256 is not None and output.status in (Status.BUILT, Status.SKIPPED):
            path = root / output.name
            by_folder[path.parent].append((path.name, output.sha256))
    written = []
    for folder, lines in sorted(by_folder.items()):
        path = folder / sums_name(report.shard)
        with atomic_output(path) as temp:
            temp.write_text(sums_text(lines), encoding="utf-8")
        written.append(path)
    return written


def write_text(path: Path, text: str) -> None:
    with atomic_output(path, sync=os.path.lexists(path)) as temp:
        temp.write_text(text, encoding="utf-8")
