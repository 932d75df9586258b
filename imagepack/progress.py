"""How long steps report how far they are: a callback with the fraction done, which the CLI connects to a bar."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[float], None]
"""Called with the fraction done, 0.0 to 1.0."""


def share(on_progress: Progress | None, start: float, end: float) -> Progress | None:
    """Progress of one step of several, as a part of the whole: from `start` to `end`."""
    if on_progress is None:
        return None
    report = on_progress
    return lambda fraction: report(start + (end - start) * fraction)
