"""Reading a batch report back, for merge-reports, as untrusted input: its size bounded before it is read, its
JSON's nesting and numbers before they are used, and every field it carries checked for what it may be (a path
from the manifest's directory that stays in it, a SHA-256 in hex, a count a report can hold), so that nothing a
forged report says reaches the merged report or a SHA256SUMS line unchecked."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from imagepack.core.errors import InputError
from imagepack.core.problems import Remedy, Severity
from imagepack.verbs.batch.plan import MAX_SHARDS
from imagepack.verbs.batch.report import BatchReport, OutputReport, Status

E = TypeVar("E", Status, Severity, Remedy)
T = TypeVar("T")

MAX_REPORT_BYTES = 64 * 1024**2  # a report of 100,000 outputs is well under it
MAX_OUTPUTS = 1_000_000
MAX_PROBLEMS = 1000  # per output
MAX_BYTES = 2**63 - 1  # a size or an estimate: what a file can hold
MAX_SECONDS = 10**9  # thirty years
MAX_TEXT = 4096  # a message, a path
MAX_NAME = 255  # a path's component, a code
_HEX = re.compile(r"[0-9a-f]{64}")
_CODE = re.compile(r"[a-z0-9][a-z0-9._-]*")
_SHARD = re.compile(r"([0-9]{1,9})/([0-9]{1,9})")
TOP_KEYS = {"manifest", "manifest_sha256", "shard", "planned", "missing_shards", "summary", "seconds", "outputs"}
OUTPUT_KEYS = {"path", "source", "status", "estimate", "size", "sha256", "seconds", "error", "problems"}


class _Refused(Exception):
    """A field that is not what it may be: its place in the report, and what is wrong with it."""


def _fail(where: str, message: str) -> NoReturn:
    raise _Refused(f"{where}: {message}")


def read_report(path: Path) -> BatchReport:
    """The report at `path`, every field checked; an InputError (code batch.report) names the field."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_REPORT_BYTES + 1)
    except OSError as e:
        raise InputError(f"{path}: cannot read the report: {e.strerror or e}", code="batch.report") from None
    try:
        if len(data) > MAX_REPORT_BYTES:
            _fail("the file", f"larger than {MAX_REPORT_BYTES // 1024**2} MiB; this is not a batch report")
        return _report(_parse(data))
    except _Refused as e:
        raise InputError(f"{path}: not a batch report this imagepack wrote: {e}", code="batch.report") from None


def _parse(data: bytes) -> Any:
    def number(text: str) -> int | float:
        if len(text) > 24:
            _fail("a number", f"{text[:12]}... has {len(text)} digits; no field of a report holds one so long")
        value = float(text) if any(c in text for c in ".eE") else int(text)
        if isinstance(value, float) and not math.isfinite(value):
            _fail("a number", f"{text}: out of range")
        return value

    def constant(text: str) -> NoReturn:
        _fail("a number", f"{text} is not a number JSON allows")

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        if len(set(keys)) != len(keys):
            _fail("an object", f"the key {_shown(next(k for k in keys if keys.count(k) > 1))} is given twice")
        return dict(pairs)

    try:
        return json.loads(
            data.decode("utf-8"),
            parse_int=number,
            parse_float=number,
            parse_constant=constant,
            object_pairs_hook=unique,
        )
    except UnicodeDecodeError:
        _fail("the file", "not UTF-8 text")
    except RecursionError:
        _fail("the file", "JSON nested too deeply")
    except ValueError as e:
        _fail("the file", f"not JSON ({str(e)[:100]})")


def _report(data: Any) -> BatchReport:
    top = _object(data, "the report", TOP_KEYS, required=TOP_KEYS - {"summary"})
    manifest = _text(top["manifest"], "manifest", limit=MAX_NAME)
    if "/" in manifest or manifest in (".", ".."):
        _fail("manifest", f"{_shown(manifest)} is not a file name")
    digest = _text(top["manifest_sha256"], "manifest_sha256", limit=64)
    if not _HEX.fullmatch(digest):
        _fail("manifest_sha256", f"{_shown(digest)} is not a SHA-256 in lowercase hex")
    shard = None if top["shard"] is None else _shard(_text(top["shard"], "shard", limit=20))
    planned = _count(top["planned"], "planned", MAX_OUTPUTS)
    missing = _list(top["missing_shards"], "missing_shards", 0 if shard else MAX_OUTPUTS)
    raw_outputs = _list(top["outputs"], "outputs", MAX_OUTPUTS)
    outputs = [_output(item, f"outputs[{k}]") for k, item in enumerate(raw_outputs)]
    if len(outputs) > planned:
        _fail("outputs", f"{len(outputs)} outputs, more than the plan's {planned}")
    return BatchReport(
        manifest=manifest,
        manifest_sha256=digest,
        shard=shard,
        outputs=outputs,
        seconds=_seconds(top["seconds"], "seconds"),
        planned=planned,
        missing_shards=tuple(_count(m, "missing_shards", MAX_OUTPUTS) for m in missing),
    )


def _shard(text: str) -> str:
    match = _SHARD.fullmatch(text)
    if match is None or not 0 <= int(match[1]) < int(match[2]) <= MAX_SHARDS:
        _fail("shard", f"{_shown(text)} is not a shard I/N, counted from 0, of at most {MAX_SHARDS}")
    return text


def _output(data: Any, where: str) -> OutputReport:
    item = _object(data, where, OUTPUT_KEYS, required=OUTPUT_KEYS)
    name = output_path(item["path"], f"{where}.path")
    status = _choice(item["status"], f"{where}.status", Status)
    size = _optional(item["size"], lambda v: _count(v, f"{where}.size", MAX_BYTES))
    sha256 = _optional(item["sha256"], lambda v: _text(v, f"{where}.sha256", limit=64))
    if sha256 is not None and not _HEX.fullmatch(sha256):
        _fail(f"{where}.sha256", f"{_shown(sha256)} is not a SHA-256 in lowercase hex")
    error = _optional(item["error"], lambda v: _problem(v, f"{where}.error", severity=False))
    report = OutputReport(
        name=name,
        source=_text(item["source"], f"{where}.source", limit=MAX_TEXT),
        status=status,
        estimate=_count(item["estimate"], f"{where}.estimate", MAX_BYTES),
        size=size,
        sha256=sha256,
        seconds=_optional(item["seconds"], lambda v: _seconds(v, f"{where}.seconds")),
        error=error,
        problems=[
            _problem(p, f"{where}.problems[{k}]") for k, p in enumerate(_list(item["problems"], where, MAX_PROBLEMS))
        ],
    )
    done = status in (Status.BUILT, Status.SKIPPED)
    if done and size is None:
        _fail(where, f"{status.value} without a size")
    if not done and (size is not None or sha256 is not None):
        _fail(where, f"{status.value}, yet with a size or a SHA-256")
    if (status is Status.FAILED) != (error is not None):
        _fail(where, f"{status.value} {'without' if error is None else 'with'} an error")
    return report


def _problem(data: Any, where: str, *, severity: bool = True) -> dict[str, Any]:
    keys = {"code", "message", "remedy", "value"} | ({"severity"} if severity else set())
    item = _object(data, where, keys, required={"code", "message"})
    code = _text(item["code"], f"{where}.code", limit=MAX_NAME)
    if not _CODE.fullmatch(code):
        _fail(f"{where}.code", f"{_shown(code)} is not an error code")
    checked: dict[str, Any] = {"code": code}
    if severity:
        checked["severity"] = _choice(item.get("severity"), f"{where}.severity", Severity).value
    checked["message"] = _text(item["message"], f"{where}.message", limit=MAX_TEXT)
    remedy = item.get("remedy")
    checked["remedy"] = None if remedy is None else _choice(remedy, f"{where}.remedy", Remedy).value
    checked["value"] = _optional(item.get("value"), lambda v: _text(v, f"{where}.value", limit=MAX_TEXT))
    return checked


def output_path(data: Any, where: str) -> str:
    """An output's path as a report names it: relative to the manifest's directory and inside it, in plain
    components, with nothing a SHA256SUMS line would have to escape (a backslash, a line break)."""
    name = _text(data, where, limit=MAX_TEXT)
    parts = name.split("/")
    if name.startswith("/") or any(part in ("", ".", "..") for part in parts):
        _fail(where, f"{_shown(name)} is not a path inside the manifest's directory")
    if "\\" in name or any(len(part.encode()) > MAX_NAME for part in parts):
        _fail(where, f"{_shown(name)} holds a backslash or a component over {MAX_NAME} bytes")
    return name


def _object(data: Any, where: str, allowed: set[str], *, required: set[str]) -> dict[str, Any]:
    if not isinstance(data, dict):
        _fail(where, f"must be an object, not {_kind(data)}")
    if unknown := sorted(set(data) - allowed):
        _fail(where, f"unknown field {_shown(unknown[0])}")
    if missing := sorted(required - set(data)):
        _fail(where, f"has no {missing[0]}")
    return data


def _text(data: Any, where: str, *, limit: int) -> str:
    if not isinstance(data, str):
        _fail(where, f"must be a string, not {_kind(data)}")
    if not data or len(data) > limit:
        _fail(where, f"must be 1 to {limit} characters, not {len(data)}")
    if not data.isprintable():  # a line break, a control character, a lone surrogate (not text at all)
        _fail(where, f"{_shown(data)} holds a control character or a line break")
    return data


def _count(data: Any, where: str, limit: int) -> int:
    if not isinstance(data, int) or isinstance(data, bool):
        _fail(where, f"must be a whole number, not {_kind(data)}")
    if not 0 <= data <= limit:
        _fail(where, f"{data} is out of range (0 to {limit})")
    return data


def _seconds(data: Any, where: str) -> float:
    if not isinstance(data, int | float) or isinstance(data, bool):
        _fail(where, f"must be a number, not {_kind(data)}")
    if not 0 <= data <= MAX_SECONDS:
        _fail(where, f"{data} is out of range (0 to {MAX_SECONDS})")
    return float(data)


def _list(data: Any, where: str, limit: int) -> list[Any]:
    if not isinstance(data, list):
        _fail(where, f"must be a list, not {_kind(data)}")
    if len(data) > limit:
        _fail(where, f"{len(data)} items, more than {limit}")
    return data


def _choice(data: Any, where: str, kind: type[E]) -> E:
    try:
        return kind(data)
    except ValueError:
        _fail(where, f"{_shown(str(data))}: one of {', '.join(m.value for m in kind)}")


def _optional(data: Any, check: Callable[[Any], T]) -> T | None:
    return None if data is None else check(data)


def _kind(data: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return next((name for kind, name in names.items() if isinstance(data, kind)), "null")


def _shown(text: str) -> str:
    """A value from the report, quoted and cut short, its control characters escaped."""
    return repr(text[:60] + ("..." if len(text) > 60 else ""))
