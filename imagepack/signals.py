"""Ctrl-C and SIGTERM become an exception, so every `finally` and cleanup path runs before we exit."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

from imagepack.errors import Interrupted

_raised = False


def _handler(signum: int, frame: FrameType | None) -> None:
    global _raised
    if _raised:
        return  # a second signal must not cut short the cleanup of the first
    _raised = True
    raise Interrupted(signum)


def install() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _handler)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for a few system calls; one that arrives meanwhile is delivered after."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
