"""Reading an ISO 9660 image back with pycdlib, for `info`: its label, its files under the names each reader
sees (Rock Ridge, Joliet, plain ISO 9660) and their sizes, and whether cloud-init would take it as a seed."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pycdlib
from pycdlib.dr import DirectoryRecord
from pycdlib.pycdlibexception import PyCdlibException

from imagepack.core.errors import InputError
from imagepack.core.problems import Problem, Severity

# pycdlib's own refusals, and what its parsing of hostile bytes can raise before it gets to one.
READ_ERRORS = (PyCdlibException, struct.error, ValueError, IndexError, KeyError, OverflowError, RecursionError)
MAX_ENTRIES = 10_000  # an installer ISO has a few thousand files; a listing is cut short beyond this
MAX_RECORDS = 10 * MAX_ENTRIES  # folders included
MAX_DEPTH = 64  # ISO 9660 itself allows 8 levels; Rock Ridge relocation allows more, none that deep
SEED_LABELS = ("cidata", "CIDATA")  # what cloud-init's NoCloud source looks for
REQUIRED = ("user-data", "meta-data")


@dataclass(frozen=True)
class IsoFile:
    path: str  # from the root, as most readers show it: Rock Ridge's name, else Joliet's, else the plain one
    size: int
    iso_name: str
    rock_ridge_name: str | None
    joliet_name: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.path,
            "size": self.size,
            "iso_name": self.iso_name,
            "rock_ridge_name": self.rock_ridge_name,
            "joliet_name": self.joliet_name,
        }


@dataclass
class IsoInfo:
    path: Path
    file_size: int
    label: str
    joliet_label: str | None
    rock_ridge: bool
    joliet: bool
    files: list[IsoFile]
    truncated: bool = False
    problems: list[Problem] = field(default_factory=list)  # why cloud-init would not take it as a seed

    @property
    def nocloud_seed(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": "iso9660",
            "file_size": self.file_size,
            "label": self.label,
            "joliet_label": self.joliet_label,
            "rock_ridge": self.rock_ridge,
            "joliet": self.joliet,
            "files": [f.to_json() for f in self.files],
            "truncated": self.truncated,
            "nocloud_seed": self.nocloud_seed,
            "problems": [p.to_json() for p in self.problems],
        }


def read_iso(path: Path) -> IsoInfo:
    iso = pycdlib.PyCdlib()
    try:
        iso.open(str(path))
    except READ_ERRORS as e:
        raise InputError(f"{path}: not a readable ISO 9660 image ({e})", code="input.iso-unreadable") from None
    try:
        label = _text(iso.pvd.volume_identifier)
        joliet_vd = iso.joliet_vd if iso.has_joliet() else None
        joliet_label = _text(joliet_vd.volume_identifier, "utf-16-be") if joliet_vd is not None else None
        joliet, joliet_cut = _joliet_names(iso, path) if iso.has_joliet() else ({}, False)
        files, truncated = _files(iso, joliet, path)
    except READ_ERRORS as e:
        raise InputError(f"{path}: not a readable ISO 9660 image ({e})", code="input.iso-unreadable") from None
    finally:
        iso.close()
    info = IsoInfo(
        path=path,
        file_size=os.stat(path).st_size,
        label=label,
        joliet_label=joliet_label,
        rock_ridge=any(f.rock_ridge_name is not None for f in files),
        joliet=joliet_label is not None,
        files=files,
        truncated=truncated or joliet_cut,
    )
    info.problems = seed_problems(info)
    return info


def seed_problems(info: IsoInfo) -> list[Problem]:
    """What would stop cloud-init's NoCloud source from reading this volume as its seed."""
    problems = []
    if info.label not in SEED_LABELS and info.joliet_label not in SEED_LABELS:
        problems.append(
            Problem("seed.label", f"the volume label is {info.label!r}, not cidata", severity=Severity.NOTE)
        )
    names = {f.path for f in info.files}
    for required in REQUIRED:
        if required not in names:
            problems.append(
                Problem(
                    "seed.missing-file",
                    f"no {required} file (by its Rock Ridge or Joliet name)",
                    severity=Severity.NOTE,
                )
            )
    return problems


def _text(raw: bytes, encoding: str = "ascii") -> str:
    return raw.decode(encoding, errors="replace").rstrip(" \x00")


def _joliet_names(iso: pycdlib.PyCdlib, path: Path) -> tuple[dict[tuple[int, int], str], bool]:
    """Joliet path by (extent, size): the Joliet tree is a second set of records for the same data."""
    assert iso.joliet_vd is not None
    entries, truncated = _walk(iso.joliet_vd.root_directory_record(), _joliet_name, path, "Joliet")
    return {(r.extent_location(), r.data_length): f"{parent}/{name}" for parent, name, r in entries}, truncated


def _joliet_name(record: DirectoryRecord) -> str:
    return record.file_identifier().decode("utf-16-be", errors="replace").removesuffix(";1")


def _shown_name(record: DirectoryRecord) -> str:
    """What a reader shows: the Rock Ridge name, else the plain one (a file's without its ';1' and bare dot)."""
    rr_name = _rr_name(record)
    if rr_name:
        return rr_name
    iso_name = record.file_identifier().decode("ascii", errors="replace")
    return iso_name if record.is_dir() else iso_name.removesuffix(";1").removesuffix(".")


def _rr_name(record: DirectoryRecord) -> str | None:
    return record.rock_ridge.name().decode("utf-8", errors="replace") or None if record.rock_ridge else None


def _walk(
    root: DirectoryRecord, name_of: Callable[[DirectoryRecord], str], path: Path, tree: str
) -> tuple[list[tuple[str, str, DirectoryRecord]], bool]:
    """Every file under `root` as (its folder's path, its name, its record), and whether the walk was cut short
    (MAX_ENTRIES files, MAX_RECORDS records, or folders deeper than MAX_DEPTH). The records are walked, never
    looked up by a path built from their names, and each directory extent is entered once, so no name ('/.',
    '../..') and no directory pointing back up can make the walk go round; a name that is not one path
    component is refused."""
    found: list[tuple[str, str, DirectoryRecord]] = []
    seen = {root.extent_location()}
    pending: list[tuple[str, DirectoryRecord, int]] = [("", root, 0)]
    count = 0
    while pending:
        folder, record, depth = pending.pop()
        last = b""
        for child in record.children:
            identifier = child.file_identifier()
            if child.is_dot() or child.is_dotdot() or identifier == last:
                continue  # a file of several extents has one record per extent, all with its name
            last = identifier
            count += 1
            if count > MAX_RECORDS or len(found) >= MAX_ENTRIES:
                return found, True
            name = name_of(child)
            if name in ("", ".", "..") or "/" in name or "\0" in name:
                raise InputError(
                    f"{path}: its {tree} tree has an entry named {name[:60]!r}, which is not a file name; "
                    "refusing a crafted ISO",
                    code="input.iso-unreadable",
                )
            if not child.is_dir():
                found.append((folder, name, child))
                continue
            if child.extent_location() in seen:
                raise InputError(
                    f"{path}: its {tree} tree reaches the directory {folder}/{name} a second time "
                    "(the tree forms a loop); refusing a crafted ISO",
                    code="input.iso-unreadable",
                )
            seen.add(child.extent_location())
            if depth + 1 >= MAX_DEPTH:
                return found, True
            pending.append((f"{folder}/{name}", child, depth + 1))
    return found, False


def _files(iso: pycdlib.PyCdlib, joliet: dict[tuple[int, int], str], path: Path) -> tuple[list[IsoFile], bool]:
    entries, truncated = _walk(iso.pvd.root_directory_record(), _shown_name, path, "ISO 9660")
    found: list[IsoFile] = []
    for folder, shown, record in entries:
        rr_name = _rr_name(record)
        iso_name = record.file_identifier().decode("ascii", errors="replace")
        # Empty files share extent 0: match those by name instead.
        key = (record.extent_location(), record.data_length)
        joliet_path = joliet.get(key) if record.data_length else None
        if joliet_path is None and record.data_length == 0:
            wanted = f"{folder}/{shown}"
            joliet_path = wanted if wanted in joliet.values() else None
        joliet_name = joliet_path.rsplit("/", 1)[1] if joliet_path else None
        name = rr_name or joliet_name or shown
        found.append(IsoFile(f"{folder}/{name}".lstrip("/"), record.data_length, iso_name, rr_name, joliet_name))
    found.sort(key=lambda f: f.path)
    return found, truncated
