"""Reading a Linux guest's configuration through the guest file view: every read capped, every directory
listing cut to a bound, and every file that could not be read kept as a note rather than a failure."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any

from imagepack.sources.guest.guestfs import GuestFiles, Kind, TooLarge

CONFIG_LIMIT = 1024 * 1024  # a configuration file: far above any real one
NAMES_LIMIT = 1024  # names taken from one configuration directory
READ_BUDGET = 64 * 1024 * 1024  # configuration bytes read in one analysis, all files together


@dataclass(frozen=True)
class Evidence:
    """Where a finding was read: a guest path and, for a line-based file, the 1-based line and its text."""

    path: str
    line: int | None = None
    text: str | None = None


@dataclass(frozen=True)
class Note:
    """A guest file that was there but could not be used (too large, not text, malformed), and why."""

    path: str
    why: str


class GuestReader:
    """The guest's files with the caps every configuration reader shares, and the notes they leave."""

    def __init__(self, files: GuestFiles, budget: int = READ_BUDGET) -> None:
        self.files = files
        self.notes: list[Note] = []
        self.budget = budget  # bytes of configuration still to be read in this analysis

    def note(self, path: str, why: str) -> None:
        self.notes.append(Note(path, why))

    def exists(self, path: str) -> bool:
        return self.files.kind(path) is not None

    def is_file(self, path: str) -> bool:
        return self.files.kind(path) is Kind.FILE

    def data(self, path: str, limit: int = CONFIG_LIMIT, *, counted: bool = True) -> bytes | None:
        """The bytes of a guest file, or None when it is missing or above `limit` (then noted). A `counted`
        read also comes out of the budget all configuration files share."""
        most = min(limit, self.budget) if counted else limit
        try:
            data = self.files.read(path, most)
        except TooLarge as e:
            if most < limit:
                self.note(path, f"not read: the {READ_BUDGET // 1024**2} MiB read for configuration files is spent")
            else:
                self.note(path, f"not read: {e.size} bytes, above the {e.limit}-byte limit for it")
            return None
        if data is not None and counted:
            self.budget -= len(data)
        return data

    def text(self, path: str, limit: int = CONFIG_LIMIT) -> str | None:
        data = self.data(path, limit)
        if data is None:
            return None
        if b"\0" in data:
            self.note(path, "not read: binary content where a text file was expected")
            return None
        return data.decode("utf-8", errors="replace")

    def lines(self, path: str, limit: int = CONFIG_LIMIT) -> list[tuple[int, str]] | None:
        """(1-based line number, line) of a text file, or None when it cannot be read."""
        text = self.text(path, limit)
        return None if text is None else list(enumerate(text.splitlines(), start=1))

    def names(self, path: str, limit: int = NAMES_LIMIT) -> list[str]:
        """The names in a guest directory (sorted), at most `limit` of them; [] when it is not a directory."""
        names = self.files.list(path) or []
        if len(names) > limit:
            self.note(path, f"only the first {limit} of {len(names)} names were read")
            names = names[:limit]
        return names


def join(directory: str, name: str) -> str:
    return directory.rstrip("/") + "/" + name


def jsonable(value: Any) -> Any:
    """A report dataclass as JSON values: dataclasses as objects, enums as their values, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value
