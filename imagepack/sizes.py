"""Sizes as people write them (64k, 2M, 400G, 1TiB, 1073741824): one parser for options and format options."""

from __future__ import annotations

import re

from imagepack.errors import InvalidValueError

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}
_SIZE = re.compile(r"\s*(\d+)\s*([KMGTP]?)(?:i?B)?\s*", re.IGNORECASE)


def parse_size(text: str, *, what: str | None = None) -> int:
    """Bytes for `text`; binary units (k = 1024). `what` names the value in the error, e.g. 'cluster_size'."""
    match = _SIZE.fullmatch(text)
    if not match:
        label = f"{what}={text}" if what else f"'{text}'"
        raise InvalidValueError(f"{label} is not a size; write e.g. 65536, 64k, 2M or 400G")
    return int(match[1]) * _UNITS[match[2].upper()]
