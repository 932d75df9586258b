"""Option parsing shared by commands: formats, sizes and the safety policy."""

from __future__ import annotations

import re

from imagepack.errors import UsageError
from imagepack.formats import DEFAULT_MAX_SIZE, ImageFormat, SafetyPolicy

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([KMGTP]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise UsageError(f"'{text}' is not a size; write e.g. 400G, 2T or 1073741824")
    return int(match[1]) * _UNITS[match[2].upper()]


def parse_source_format(name: str | None) -> ImageFormat | None:
    return ImageFormat.parse(name) if name else None


def parse_policy(max_size: str | None, *, allow_backing: bool = False) -> SafetyPolicy:
    return SafetyPolicy(
        max_size=parse_size(max_size) if max_size else DEFAULT_MAX_SIZE,
        allow_backing=allow_backing,
    )
