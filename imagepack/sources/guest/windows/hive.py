"""One registry hive of the guest, read whole through the guest's file view (with a size cap) and parsed by
regipy from memory. Only the keys asked for are visited, one path component at a time, so a walk reads what it
needs and never the whole hive; anything regipy raises on a damaged hive becomes one finding."""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from typing import Any, TypeVar

from regipy.registry import Cell, NKRecord

from imagepack.core.problems import Problem, Severity
from imagepack.sources.guest.guestfs import GuestFiles, Kind, TooLarge
from imagepack.sources.guest.windows.report import Evidence, HiveState, RegData

T = TypeVar("T")

# A SOFTWARE hive of a long-lived server reaches 100-200 MiB; SYSTEM stays far below.
HIVE_LIMIT = 256 * 1024**2
BASE_BLOCK = 4096
# More than any real key holds; a key claiming more is damaged, and is not walked value by value.
MAX_VALUES = 65_536
MAX_SUBKEYS = 1_000_000
LOG_SUFFIXES = (".LOG", ".LOG1", ".LOG2")

# regipy logs what it skips in a damaged hive; the finding says it once, so its log lines stay out of stderr.
logging.getLogger("regipy").addHandler(logging.NullHandler())
logging.getLogger("regipy").propagate = False


class HiveProblem(Exception):
    """A hive that cannot be read (missing, too large, not a hive, damaged): its finding."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def _unreadable(path: str, why: object) -> HiveProblem:
    why = " ".join(str(why).split())  # a parser's message may span lines; a finding is one
    if len(why) > 200:
        why = why[:197] + "..."
    return HiveProblem(
        Problem(
            "windows.hive-unreadable",
            f"{path}: not a readable registry hive ({why}); what it states is not known",
            severity=Severity.WARNING,
        )
    )


@dataclass(frozen=True)
class Value:
    type: str
    data: RegData


class Hive:
    """A parsed hive. Key paths are relative to the hive's root ('Select', r'ControlSet001\\Services'); key and
    value names compare case-insensitively, as Windows compares them."""

    def __init__(self, path: str, data: bytes, logs: tuple[str, ...] = ()) -> None:
        self.path = path
        if len(data) < BASE_BLOCK or data[:4] != b"regf":
            raise _unreadable(path, "no regf base block")
        primary, secondary = struct.unpack_from("<II", data, 4)
        self.state = HiveState(path, primary, secondary, logs)
        (root_offset,) = struct.unpack_from("<I", data, 0x24)
        if data[BASE_BLOCK + root_offset + 4 : BASE_BLOCK + root_offset + 6] != b"nk":
            raise _unreadable(path, f"its root key offset {root_offset:#x} names no key")
        self._stream = BytesIO(data)
        cell = Cell(offset=BASE_BLOCK + root_offset + 6, cell_type="nk", size=0)
        self._root: Any = self._guard(lambda: NKRecord(cell, self._stream))  # type: ignore[no-untyped-call]

    def _guard(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except HiveProblem:
            raise
        except Exception as error:  # regipy and construct raise many kinds on a damaged hive
            raise _unreadable(self.path, f"{type(error).__name__}: {error}") from error

    def key(self, key_path: str) -> Any | None:
        """The key at `key_path`, or None when it is not there."""
        return self._guard(lambda: self._walk(key_path))

    def _walk(self, key_path: str) -> Any | None:
        key = self._root
        for part in filter(None, key_path.split("\\")):
            if key.subkey_count > MAX_SUBKEYS:
                raise _unreadable(self.path, f"a key claims {key.subkey_count} subkeys")
            key = key.get_subkey(part, raise_on_missing=False) if key.subkey_count else None
            if key is None:
                return None
        return key

    def value(self, key_path: str, name: str) -> Value | None:
        """The value `name` of the key at `key_path`, or None when the key or the value is not there."""
        return self._guard(lambda: self._value(key_path, name))

    def _value(self, key_path: str, name: str) -> Value | None:
        key = self._walk(key_path)
        if key is None or not key.values_count:
            return None
        if key.values_count > MAX_VALUES:
            raise _unreadable(self.path, f"key {key_path} claims {key.values_count} values")
        wanted = name.casefold()
        for value in key.iter_values(trim_values=False):
            if str(value.name).casefold() == wanted:
                data = value.value
                if not isinstance(data, int | str | bytes | list | type(None)):
                    data = str(data)
                return Value(str(value.value_type), data)
        return None

    def evidence(self, key_path: str, name: str) -> Evidence:
        """The value as evidence: its type and data, or None for both when it is not there."""
        found = self.value(key_path, name)
        return Evidence(self.path, key_path, name, found.type if found else None, found.data if found else None)


def open_hive(files: GuestFiles, path: str) -> Hive:
    """Read and parse the hive at `path`. Raises HiveProblem with the finding when it cannot."""
    try:
        data = files.read(path, HIVE_LIMIT)
    except TooLarge as error:
        raise HiveProblem(
            Problem(
                "windows.hive-too-large",
                f"{path}: {error.size} bytes, above the {HIVE_LIMIT // 1024**2} MiB read for a hive; "
                "what it states is not known",
                severity=Severity.WARNING,
            )
        ) from error
    if data is None:
        raise HiveProblem(
            Problem("windows.hive-missing", f"{path}: no such hive in the guest", severity=Severity.WARNING)
        )
    logs = tuple(path + suffix for suffix in LOG_SUFFIXES if files.kind(path + suffix) is Kind.FILE)
    return Hive(path, data, logs)
