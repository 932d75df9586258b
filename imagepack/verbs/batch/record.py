"""Idempotence: beside each output a small record of what it was made from (the source's identity, the settings,
the imagepack and qemu-img versions) and what was written (size, mtime, checksum). A rerun whose inputs match the
record, and whose output is still the file recorded, skips the output."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import imagepack
from imagepack.files.atomic import atomic_output

if TYPE_CHECKING:
    from imagepack.verbs.batch.manifest import OutputEntry, SourceEntry

RECORD_SUFFIX = ".imagepack.json"


@dataclass(frozen=True)
class Written:
    """The output file as it was made."""

    size: int
    mtime_ns: int
    sha256: str | None


def record_path(target: Path) -> Path:
    """Hidden, beside the output, so it travels with it and is not taken for an artifact."""
    return target.parent / f".{target.name}{RECORD_SUFFIX}"


def inputs_of(source: SourceEntry, output: OutputEntry, *, qemu_img: str) -> dict[str, Any]:
    """Everything that decides the bytes of `output`. The source is known by its size, mtime and inode: a copy,
    an edit or a `touch` makes it another source, without reading it whole."""
    stat = os.stat(source.path)
    return {
        "source": {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino},
        "source_settings": source.settings,
        "output": output.settings,
        "imagepack": imagepack.__version__,
        "qemu_img": qemu_img,
    }


def recorded(target: Path, inputs: dict[str, Any]) -> Written | None:
    """What the record says was written, when it was made from `inputs` and the output is still that file."""
    try:
        data = json.loads(record_path(target).read_text(encoding="utf-8"))
        written = Written(int(data["written"]["size"]), int(data["written"]["mtime_ns"]), data["written"]["sha256"])
        stat = os.stat(target)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no record, one we cannot read, or no output: build it
    if data.get("inputs") != inputs or (stat.st_size, stat.st_mtime_ns) != (written.size, written.mtime_ns):
        return None
    return written


def has_record(target: Path) -> bool:
    """Whether a batch made this output (so a rebuild may replace it)."""
    return os.path.lexists(record_path(target))


def write_record(target: Path, inputs: dict[str, Any], written: Written) -> None:
    data = {
        "inputs": inputs,
        "written": {"size": written.size, "mtime_ns": written.mtime_ns, "sha256": written.sha256},
    }
    with atomic_output(record_path(target)) as temp:
        temp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
