"""Sizes as people write them (64k, 2M, 400G, 1TiB, 1073741824): one parser for options and format options."""

from __future__ import annotations

import re

from imagepack.core.errors import InvalidValueError

MAX_SIZE = 2**63 - 1  # what a file offset can reach
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}
_SIZE = re.compile(r"\s*(\d+)\s*([KMGTP]?)(?:i?B)?\s*", re.IGNORECASE)


def parse_size(text: str, *, what: str | None = None) -> int:
    """Bytes for `text`; binary units (k = 1024). `what` names the value in the error, e.g. 'cluster_size'."""
    match = _SIZE.fullmatch(text)
    if not match:
        label = f"{what}={text}" if what else f"'{text}'"
        raise InvalidValueError(f"{label} is not a size; write e.g. 65536, 64k, 2M or 400G")
    digits = match[1].lstrip("0") or "0"
    if len(digits) > 19 or int(digits) * _UNITS[match[2].upper()] > MAX_SIZE:  # int() of 4,300+ digits fails
        label = f"{what}={text[:24]}" if what else f"'{text[:24]}'"
        raise InvalidValueError(f"{label}{'...' if len(text) > 24 else ''} is larger than any file (8 EiB)")
    return int(digits) * _UNITS[match[2].upper()]
