"""Every file a batch writes, known before it starts: each output, the record beside it, the SHA256SUMS of each
directory holding outputs, the report. Two of them that are one file, or one of them that is an input (a source,
the manifest, a metadata file), would have one replace the other: such a manifest or command line is refused
before any work, naming both uses.

Two paths are one file when they resolve to one: `..`, symlinked directories and a symlink at the end resolved;
an existing file by its inode (hard links); a new one by its directory and its name in any case, since on a
case-insensitive file system `A.raw` and `a.raw` are one file."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from imagepack.core.errors import InvalidValueError
from imagepack.verbs.batch.entries import KeyLines, Where
from imagepack.verbs.batch.record import record_path
from imagepack.verbs.batch.report import SUMS_NAME

if TYPE_CHECKING:
    from imagepack.verbs.batch.manifest import Manifest, SourceEntry

# SHA256SUMS, or a shard's SHA256SUMS.shard-I-of-N: any shard count, so that every shard refuses the same names.
_SUMS = re.compile(rf"{SUMS_NAME}(\.shard-[0-9]+-of-[0-9]+)?", re.IGNORECASE)


class Kind(Enum):
    INPUT = "input"
    OUTPUT = "output"
    RECORD = "record"


@dataclass(frozen=True)
class Use:
    """A file a batch reads or writes, and how a message names that use."""

    path: Path
    what: str  # "source 1 (a.raw), output 2 (out/b.raw)", "the record of ...", "the source a.raw"
    kind: Kind
    output: tuple[int, int] | None = None  # the source and output indexes of the entry it belongs to


@dataclass(frozen=True)
class _Key:
    folder: str  # the resolved directory, casefolded
    folder_id: tuple[int, int] | None  # its device and inode, when it exists
    name: str  # casefolded
    inode: tuple[int, int] | None  # of an existing file


def file_key(path: Path) -> _Key:
    real = os.path.realpath(path)
    parent, name = os.path.split(real)
    return _Key(parent.casefold(), _identity(parent), name.casefold(), _identity(real))


def _identity(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)


def same_file(a: _Key, b: _Key) -> bool:
    if a.inode is not None and a.inode == b.inode:
        return True
    same_folder = a.folder == b.folder or (a.folder_id is not None and a.folder_id == b.folder_id)
    return same_folder and a.name == b.name


def is_sums_name(path: Path) -> bool:
    """Whether a batch may write a checksum list of this name (in a directory holding outputs)."""
    return _SUMS.fullmatch(os.path.basename(os.path.realpath(path))) is not None


def manifest_uses(manifest: Path, sources: tuple[SourceEntry, ...]) -> Iterator[Use]:
    """The inputs first, then every output, then each output's record: each checked against those before it."""
    yield Use(manifest, "the manifest", kind=Kind.INPUT)
    for source in sources:
        yield Use(source.path, f"the source {source.name}", kind=Kind.INPUT)
        for output in source.outputs:
            metadata = output.target.metadata
            if metadata is not None and metadata.base is not None:
                yield Use(metadata.base, f"the metadata file of {output.name}", kind=Kind.INPUT)
    for i, source in enumerate(sources):
        for j, output in enumerate(source.outputs):
            entry = f"source {i + 1} ({source.name}), output {j + 1} ({output.name})"
            yield Use(output.target.path, entry, Kind.OUTPUT, output=(i, j))
    for i, source in enumerate(sources):
        for j, output in enumerate(source.outputs):
            entry = f"source {i + 1} ({source.name}), output {j + 1} ({output.name})"
            record = record_path(output.target.path)
            yield Use(record, f"the record {record.name} of {entry}", Kind.RECORD, output=(i, j))


def check_manifest_writes(manifest: Path, sources: tuple[SourceEntry, ...], lines: KeyLines) -> None:
    """Refuse a manifest two of whose files are one, naming the entry whose path makes it so, and the other use."""
    seen: list[tuple[_Key, Use]] = []
    for use in manifest_uses(manifest, sources):
        key = file_key(use.path)
        clash = next((earlier for earlier_key, earlier in seen if same_file(key, earlier_key)), None)
        if use.output is not None and (clash is not None or (use.kind is Kind.OUTPUT and is_sums_name(use.path))):
            i, j = use.output
            entry = f"source {i + 1} ({sources[i].name}), output {j + 1} ({sources[i].outputs[j].name})"
            where = Where(manifest, lines, entry, ("source.output", i, j))
            where.fail("path", _clash_message(use, clash))
        seen.append((key, use))


def _clash_message(use: Use, clash: Use | None) -> str:
    if clash is None:
        return (
            f"is the name of the checksum list the batch writes beside its outputs ({SUMS_NAME}, or a shard's "
            f"{SUMS_NAME}.shard-I-of-N); give the output another name"
        )
    itself = "is" if use.kind is Kind.OUTPUT else f"its record ({use.path.name}, written beside it) is"
    if clash.kind is Kind.INPUT:
        return f"{itself} {clash.what}; an output must not overwrite an input"
    return f"{itself} also the path of {clash.what}; give every output its own path"


def check_report_path(report: Path, manifest: Manifest, *, named: str) -> None:
    """Refuse a report path that is one of the batch's inputs or of the files it writes; `named` is how the front
    end names the report (the command line: its option)."""
    subject = f"{named} {report}"
    key = file_key(report)
    for use in manifest_uses(manifest.path, manifest.sources):
        if same_file(key, file_key(use.path)):
            advice = "an input must not be overwritten" if use.kind is Kind.INPUT else "give the report its own path"
            raise InvalidValueError(f"is also {use.what}; {advice}", subject=subject, code="batch.collision")
    beside_outputs = (file_key(output.target.path.parent / report.name) for _, output in manifest.outputs)
    if is_sums_name(report) and any(same_file(key, sums) for sums in beside_outputs):
        raise InvalidValueError(
            "is also the checksum list the batch writes in that directory; give the report its own path",
            subject=subject,
            code="batch.collision",
        )
