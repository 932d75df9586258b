"""Strict JSON for untrusted bytes: bounded size and depth, strict UTF-8, no NaN or Infinity, no duplicate keys, no
unpaired surrogates; and the small helpers that show JSON values inside one-line messages."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from imagepack.core.errors import InputError


@dataclass(frozen=True)
class JsonLimits:
    """What a document may be, and what it is called in a refusal: 'this is not {kind}'."""

    max_bytes: int
    max_depth: int
    kind: str


class _Refused(Exception):
    """Raised from inside json.loads hooks; turned into the caller's error with the label."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(f"key {quote(key)} appears twice in one object; keep one")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number; write a finite number or null")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text[:40]} is out of range; write a smaller number")
    return value


_STRUCTURE_TOKENS = re.compile(r'\\.|["\[\]{}]', re.DOTALL)


def _too_deep(text: str, max_depth: int) -> bool:
    """Whether arrays and objects nest deeper than max_depth, found by one linear scan without recursion
    (json.loads itself recurses, and a megabyte of '[' would end in RecursionError)."""
    if text.count("[") + text.count("{") <= max_depth:
        return False
    depth = 0
    in_string = False
    for match in _STRUCTURE_TOKENS.finditer(text):
        token = match[0]
        if in_string:
            in_string = token != '"'
        elif token == '"':
            in_string = True
        elif token in "[{":
            depth += 1
            if depth > max_depth:
                return True
        elif token in "]}":
            depth -= 1
    return False


def _unpaired_surrogate(value: Any) -> str | None:
    """A string (or key) holding a lone UTF-16 surrogate from a '\\udXXX' escape: it cannot be written as UTF-8."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            texts: list[str] = [item]
        elif isinstance(item, dict):
            texts = list(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
            continue
        else:
            continue
        for text in texts:
            if has_surrogate(text):
                return text
    return None


def has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _size_text(size: int) -> str:
    for unit, scale in (("MiB", 1024**2), ("KiB", 1024)):
        if size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"


def decode_json(data: bytes, label: str, limits: JsonLimits, *, error: type[InputError] = InputError) -> Any:
    """The document in `data`, or `error` with one line '{label}: what is wrong; what to do'."""
    kind = limits.kind
    if len(data) > limits.max_bytes:
        raise error(
            f"{label}: {len(data)} bytes, more than the {limits.max_bytes} bytes ({_size_text(limits.max_bytes)}) "
            f"{kind} may have; this is not {kind}"
        )
    if data.startswith(b"\xef\xbb\xbf"):
        raise error(f"{label}: starts with a UTF-8 byte order mark; save it as UTF-8 without one")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{label}: not valid UTF-8 (byte {exc.start}); save it as UTF-8") from None
    if _too_deep(text, limits.max_depth):
        raise error(f"{label}: arrays and objects nest deeper than {limits.max_depth} levels; this is not {kind}")
    try:
        doc = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant,
            parse_float=_finite_float,
        )
    except _Refused as exc:
        raise error(f"{label}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise error(f"{label}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError:  # Python's limit on the digits of an integer
        raise error(f"{label}: a number has too many digits; this is not {kind}") from None
    except RecursionError:  # _too_deep should have said so; kept so that no input can end in a traceback
        raise error(f"{label}: nested too deeply; this is not {kind}") from None
    bad = _unpaired_surrogate(doc)
    if bad is not None:
        raise error(
            f"{label}: the string {quote(bad)} holds an unpaired UTF-16 surrogate escape; write real characters"
        )
    return doc


def json_type(value: Any) -> str:
    """The kind of a decoded value, as a message says it: 'a string', 'an array', 'null'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def quote(value: object, limit: int = 60) -> str:
    """A value inside a one-line message: quoted, escapes for control characters, shortened."""
    text = json.dumps(value, ensure_ascii=False).encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 4] + '..."'
