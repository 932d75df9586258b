"""Reading an ISO 9660 image back with pycdlib, for `info`: its label, its files under the names each reader
sees (Rock Ridge, Joliet, plain ISO 9660) and their sizes, and whether cloud-init would take it as a seed."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pycdlib
from pycdlib.pycdlibexception import PyCdlibException

from imagepack.errors import InputError
from imagepack.problems import Problem, Severity

# pycdlib's own refusals, and what its parsing of hostile bytes can raise before it gets to one.
READ_ERRORS = (PyCdlibException, struct.error, ValueError, IndexError, KeyError, OverflowError, RecursionError)
MAX_ENTRIES = 10_000  # an installer ISO has a few thousand files; a listing is cut short beyond this
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
        joliet = _joliet_names(iso) if iso.has_joliet() else {}
        files, truncated = _files(iso, joliet)
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
        truncated=truncated,
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


def _joliet_names(iso: pycdlib.PyCdlib) -> dict[tuple[int, int], str]:
    """Joliet path by (extent, size): the Joliet tree is a second set of records for the same data."""
    names: dict[tuple[int, int], str] = {}
    pending = ["/"]
    while pending and len(names) < MAX_ENTRIES:
        folder = pending.pop()
        for record in iso.list_children(joliet_path=folder):
            if record.is_dot() or record.is_dotdot():
                continue
            name = record.file_identifier().decode("utf-16-be", errors="replace").removesuffix(";1")
            full = folder.rstrip("/") + "/" + name
            if record.is_dir():
                pending.append(full)
            else:
                names[(record.extent_location(), record.data_length)] = full
    return names


def _files(iso: pycdlib.PyCdlib, joliet: dict[tuple[int, int], str]) -> tuple[list[IsoFile], bool]:
    found: list[IsoFile] = []
    pending = [("/", "/")]  # (plain ISO path, the path shown)
    while pending:
        plain, shown = pending.pop()
        for record in iso.list_children(iso_path=plain):
            if record.is_dot() or record.is_dotdot():
                continue
            if len(found) >= MAX_ENTRIES:
                return found, True
            iso_name = record.file_identifier().decode("ascii", errors="replace")
            rr_name = record.rock_ridge.name().decode("utf-8", errors="replace") if record.rock_ridge else None
            rr_name = rr_name or None
            if record.is_dir():
                name = rr_name or iso_name
                pending.append((plain.rstrip("/") + "/" + iso_name, shown.rstrip("/") + "/" + name))
                continue
            # Empty files share extent 0: match those by name instead.
            key = (record.extent_location(), record.data_length)
            joliet_path = joliet.get(key) if record.data_length else None
            if joliet_path is None and record.data_length == 0:
                wanted = shown.rstrip("/") + "/" + (rr_name or iso_name.removesuffix(";1"))
                joliet_path = wanted if wanted in joliet.values() else None
            joliet_name = joliet_path.rsplit("/", 1)[1] if joliet_path else None
            name = rr_name or joliet_name or iso_name.removesuffix(";1").removesuffix(".")
            found.append(
                IsoFile(
                    (shown.rstrip("/") + "/" + name).lstrip("/"), record.data_length, iso_name, rr_name, joliet_name
                )
            )
    found.sort(key=lambda f: f.path)
    return found, False
