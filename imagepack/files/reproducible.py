"""Outputs are reproducible: the same inputs give the same bytes, run after run, on any machine.

Whatever a writer would stamp with the clock (a tar header's mtime, an ISO's volume and file dates) gets
SOURCE_DATE_EPOCH when it is set (what reproducible builds pin), else a fixed time, the epoch; whatever it would
draw at random (a vmdk's content ID) is derived from the inputs instead."""

from __future__ import annotations

import contextlib
import hashlib
import os
import time as real_time
import types
from collections.abc import Iterator

from imagepack.core.errors import InvalidValueError

FIXED_TIME = 0  # 1970-01-01T00:00:00Z: what an output carries when SOURCE_DATE_EPOCH is not set
MAX_TIME = 8**11 - 1  # the largest a tar header's octal mtime field holds (year 2242)


def output_time() -> int:
    """The time an output embeds: SOURCE_DATE_EPOCH (whole seconds since the epoch, UTC) or FIXED_TIME."""
    given = os.environ.get("SOURCE_DATE_EPOCH")
    if given is None or not given.strip():
        return FIXED_TIME
    try:
        value = int(given.strip())
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_TIME:
        raise InvalidValueError(f"SOURCE_DATE_EPOCH={given!r}: give whole seconds since 1970, such as 1700000000")
    return value


def derived_u32(*parts: bytes) -> int:
    """A 32-bit number that stands for `parts`: what replaces a random ID, so the same inputs give the same one."""
    digest = hashlib.sha256(b"\0".join(parts)).digest()
    return int.from_bytes(digest[:4], "little")


class _PinnedClock(types.SimpleNamespace):
    """The `time` module as a writer sees it: its clock stopped at `at`, its local time UTC."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def time(self) -> float:
        return float(self.at)

    def localtime(self, seconds: float | None = None) -> real_time.struct_time:
        return real_time.gmtime(self.at if seconds is None else seconds)

    def __getattr__(self, name: str) -> object:
        return getattr(real_time, name)


@contextlib.contextmanager
def pinned_clock(*modules: types.ModuleType) -> Iterator[None]:
    """While the block runs, `modules` (a library's, which read `time.time()` for the dates they write) see
    output_time() as now and UTC as the local zone, so what they write does not depend on when or where."""
    clock = _PinnedClock(output_time())
    saved = [(module, module.__dict__.get("time")) for module in modules]
    try:
        for module, _ in saved:
            module.time = clock  # type: ignore[attr-defined]
        yield
    finally:
        for module, original in saved:
            module.time = original  # type: ignore[attr-defined]
