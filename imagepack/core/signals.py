"""Ctrl-C and SIGTERM become an exception, so every `finally` and cleanup path runs before we exit."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

from imagepack.core.errors import Interrupted

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


def leave_to_main_thread() -> None:
    """Block SIGINT and SIGTERM in the calling thread (a pool's worker: an `initializer`), so that the kernel
    delivers them to the main thread. One delivered to a worker busy in C code would only be noticed once the
    main thread next ran Python code: after the job it waits for, which can take many seconds."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
