"""Reading a manifest's TOML and its values, each mistake naming the file, the entry, the key and its line
(tomllib gives no positions; `KeyLines` finds them by a scan of the text, good enough for a key's table). The
text is bounded before it is parsed: its size, and how deep its tables and arrays, and its dotted keys, go."""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from imagepack.core.errors import ImagepackError, InvalidValueError, MetadataError
from imagepack.core.problems import Remedy

E = TypeVar("E", bound=StrEnum)
T = TypeVar("T")

MAX_MANIFEST_BYTES = 4 * 1024**2  # thousands of outputs; a larger file is not a manifest
MAX_DEPTH = 8  # a manifest's deepest value: source.output.oci.launch_options = { ... }, inside an array or two
MAX_DOTS = 32  # dots on one line outside strings: dotted keys, whose cost to tomllib grows with their square


class KeyLines:
    """Line numbers of table headers and keys, by table: ("source", i) and ("source.output", i, j) for the i-th
    source and its j-th output, ("source.output.oci", i, j) for that output's subtable. A scan of the lines, not
    a TOML parser: keys inside inline tables or multi-line values fall back to their table's line."""

    _HEADER = re.compile(r"\s*(\[\[?)\s*([A-Za-z0-9_.\s\"'-]+?)\s*\]\]?\s*(#.*)?$")
    _KEY = re.compile(r"\s*([A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')\s*(?:\.[^=]*)?=")

    def __init__(self, text: str) -> None:
        self.lines: dict[tuple[object, ...], int] = {}
        table: tuple[object, ...] = ("",)
        source = output = -1
        for number, line in enumerate(text.splitlines(), 1):
            header = self._HEADER.match(line)
            if header:
                name = re.sub(r"\s+", "", header[2]).replace('"', "").replace("'", "")
                if name == "source" and header[1] == "[[":
                    source, output = source + 1, -1
                elif name == "source.output" and header[1] == "[[":
                    output += 1
                table = (name, source) if name == "source" else (name, source, output)
                self.lines.setdefault(table, number)
                continue
            key = self._KEY.match(line)
            if key:
                self.lines.setdefault((*table, key[1].strip("\"'")), number)

    def line(self, table: tuple[object, ...], key: str | None = None) -> int | None:
        """The line of `key` in `table` (or of its own header, for a subtable), else of the key naming the table
        in its parent, else of the table's header."""
        if key is not None and (*table, key) in self.lines:
            return self.lines[(*table, key)]
        if key is not None and (f"{table[0]}.{key}", *table[1:]) in self.lines:
            return self.lines[(f"{table[0]}.{key}", *table[1:])]  # the key is a subtable: its header
        name = str(table[0])
        if "." in name:
            parent, _, child = name.rpartition(".")
            parent_table = (parent, table[1]) if parent == "source" else (parent, *table[1:])
            if (*parent_table, child) in self.lines:
                return self.lines[(*parent_table, child)]
            return self.lines.get(table) or self.line(parent_table)
        return self.lines.get(table)


@dataclass(frozen=True)
class Where:
    """An entry of the manifest, to name in an error: the file, the entry, and the table its keys are in."""

    manifest: Path
    lines: KeyLines
    entry: str
    table: tuple[object, ...]

    def fail(
        self,
        key: str | None,
        message: str,
        *,
        code: str = "batch.manifest",
        remedy: Remedy | None = None,
        value: str | None = None,
    ) -> NoReturn:
        line = self.lines.line(self.table, key)
        at = f"{self.manifest}:{line}" if line else str(self.manifest)
        what = f"{self.entry}, key {key}" if key else self.entry
        raise InvalidValueError(f"{at}: {what}: {message}", code=code, remedy=remedy, value=value)

    def refusing(self, key: str, e: ImagepackError) -> NoReturn:
        """The library's refusal of a value, as the key's; its remedy goes along, for the front end to name."""
        code = e.code if e.code != MetadataError.code else InvalidValueError.code
        self.fail(key, e.message, code=code, remedy=e.remedy, value=e.value)

    def sub(self, name: str) -> Where:
        return dataclasses.replace(self, table=(f"{self.table[0]}.{name}", *self.table[1:]))


def path_value(table: Mapping[str, Any], key: str, root: Path, where: Where) -> Path:
    text = string(table, key, where)
    if not text:
        where.fail(key, "a path is required")
    if not text.isprintable() or "\\" in text:
        # A report and a SHA256SUMS list paths one a line, as sha256sum -c reads them: nothing to escape there.
        where.fail(key, f"{text[:60]!r}: a path with a line break, a control character or a backslash")
    return Path(os.path.normpath(root / os.path.expanduser(text)))


def name_of(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def string(table: Mapping[str, Any], key: str, where: Where) -> str | None:
    value = table.get(key)
    if value is not None and not isinstance(value, str):
        where.fail(key, f"must be a string, not {toml_type(value)}")
    return value


def parsed(table: Mapping[str, Any], key: str, parse: Callable[[str], T], where: Where) -> T | None:
    """A string value read by the library's own parser; its refusal names the key."""
    text = string(table, key, where)
    if text is None:
        return None
    try:
        return parse(text)
    except InvalidValueError as e:
        where.refusing(key, e)


def boolean(table: Mapping[str, Any], key: str, where: Where) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        where.fail(key, f"must be true or false, not {toml_type(value)}")
    return value


def integer(table: Mapping[str, Any], key: str, where: Where, *, low: int, high: int) -> int | None:
    """An integer key, within [low, high]: a number too large for what it counts is refused here, by name."""
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        where.fail(key, f"must be an integer, not {toml_type(value)}")
    if not low <= value <= high:
        shown = str(value) if len(str(value)) <= 24 else f"{str(value)[:12]}... ({len(str(value))} digits)"
        where.fail(key, f"{shown}: give {low} to {high}", code=InvalidValueError.code)
    return value


def choice(kind: type[E], value: str | None, key: str, where: Where) -> E | None:
    """A named value in any case, stored as OCI or qemu spells it, as the command line takes it."""
    if value is None:
        return None
    for member in kind:
        if member.value.casefold() == value.strip().casefold():
            return member
    where.fail(key, f"{value!r}: use one of {' | '.join(m.value for m in kind)}", code=InvalidValueError.code)


def toml_type(value: object) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }
    return next((name for kind, name in names.items() if isinstance(value, kind)), "a date")


def known_keys(table: Mapping[str, Any], allowed: tuple[str, ...], where: Where) -> None:
    for key in table:
        if key not in allowed:
            where.fail(key, f"unknown key; the keys here are {', '.join(allowed)}")


def read_toml(path: Path) -> tuple[str, dict[str, Any]]:
    """The manifest's text and its TOML document. Its size is bounded before it is read, and its nesting before
    it is parsed: tomllib recurses into nested arrays and tables, and slows with the square of a dotted key."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_MANIFEST_BYTES + 1)
    except OSError as e:
        raise InvalidValueError(f"{path}: cannot read the manifest: {e.strerror or e}", code="batch.manifest") from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise InvalidValueError(
            f"{path}: larger than {MAX_MANIFEST_BYTES // 1024**2} MiB; this is not a manifest", code="batch.manifest"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidValueError(f"{path}: the manifest is not UTF-8 text", code="batch.manifest") from None
    _check_nesting(path, text)
    try:
        return text, tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as e:  # ValueError: an integer of 4300+ digits
        reason = str(e) if isinstance(e, tomllib.TOMLDecodeError) else "a number of over 4300 digits"
        if isinstance(e, RecursionError):
            reason = "nested too deeply"
        raise InvalidValueError(f"{path}: not valid TOML: {reason}", code="batch.manifest") from None


_TOKEN = re.compile(r'"""(?:[^\\]|\\.)*?"""|\'\'\'.*?\'\'\'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*|[\[\]{}.\n]', re.S)


def _check_nesting(path: Path, text: str) -> None:
    """Refuse arrays and tables nested deeper than a manifest's, and long dotted keys, outside strings and
    comments. (A string left open is scanned as if it were not one: tomllib refuses the text anyway.)"""
    depth = dots = 0
    line = 1
    for match in _TOKEN.finditer(text):
        token = match[0]
        if token == "\n":
            line, dots = line + 1, 0
        elif token in "[{":
            depth += 1
        elif token in "]}":
            depth = max(depth - 1, 0)
        elif token == ".":
            dots += 1
        else:
            line += token.count("\n")
            continue
        if depth > MAX_DEPTH or dots > MAX_DOTS:
            what = f"arrays and tables nested over {MAX_DEPTH} deep" if depth > MAX_DEPTH else f"over {MAX_DOTS} dots"
            raise InvalidValueError(f"{path}:{line}: {what}; this is not a manifest", code="batch.manifest")
