"""How long steps report how far they are: a callback with the fraction done, which the CLI connects to a bar.

A command of several steps (decompress, then convert, then read back for checksums) names each: `stage` gives a
step its part of the whole, and tells a callback that shows stages (one with a `stage(label, start, end)` method,
as the CLI's bar has) where each begins, so that it can show every step on a bar of its own with an ETA of its
own, instead of one bar whose speed, and so its ETA, jumps as one step gives way to another."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

Progress = Callable[[float], None]
"""Called with the fraction done, 0.0 to 1.0."""


class StagedProgress(Protocol):
    """A Progress that shows stages: told where each named stage of the whole begins and ends."""

    def __call__(self, fraction: float) -> None: ...

    def stage(self, label: str, start: float, end: float) -> None: ...


class _Part:
    """A step's progress as a part of the whole, from `start` to `end`; stages inside it are passed on, mapped
    into that part, to a callback that shows them."""

    def __init__(self, whole: Progress, start: float, end: float, label: str | None) -> None:
        self._whole, self._start, self._end = whole, start, end
        self._label = label  # announced at the first report, so that a step never run shows no bar
        self._begun = label is None

    def __call__(self, fraction: float) -> None:
        if not self._begun:
            self._begun = True
            assert self._label is not None
            self.stage(self._label, 0.0, 1.0)
        self._whole(self._start + (self._end - self._start) * min(max(fraction, 0.0), 1.0))

    def stage(self, label: str, start: float, end: float) -> None:
        begin = getattr(self._whole, "stage", None)
        if begin is not None:
            span = self._end - self._start
            begin(label, self._start + span * start, self._start + span * end)


def share(on_progress: Progress | None, start: float, end: float) -> Progress | None:
    """Progress of one step of several, as a part of the whole: from `start` to `end`."""
    if on_progress is None:
        return None
    return _Part(on_progress, start, end, None)


def stage(on_progress: Progress | None, label: str, start: float, end: float) -> Progress | None:
    """Progress of the step `label` ('decompressing'), as a part of the whole from `start` to `end`; a callback
    that shows stages is told where it begins when it first reports."""
    if on_progress is None:
        return None
    return _Part(on_progress, start, end, label)
