"""The one place that starts external programs: limits, timeouts, progress lines, signals and error mapping;
`run` waits for a program to finish, `spawn` starts one for the caller to watch (a virtual machine)."""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import selectors
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO

from imagepack.signals import signals_held

log = logging.getLogger("imagepack")

LineCallback = Callable[[str], None]

# Inputs this process holds open (see openfile.py): every program it starts inherits them, so that it can open
# the very file imagepack checked as /proc/self/fd/N instead of by a name that may now name another file.
_shared_fds: set[int] = set()


def share_with_children(fd: int) -> None:
    _shared_fds.add(fd)


def stop_sharing(fd: int) -> None:
    _shared_fds.discard(fd)


@dataclass(frozen=True)
class Limits:
    """Resource bounds for a child: address space and CPU seconds (setrlimit), and wall-clock seconds."""

    address_space: int | None = None
    cpu_seconds: int | None = None
    wall_seconds: float | None = None


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False


def _apply_limits(limits: Limits) -> Callable[[], None]:
    def preexec() -> None:
        if limits.address_space:
            resource.setrlimit(resource.RLIMIT_AS, (limits.address_space, limits.address_space))
        if limits.cpu_seconds:
            resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds))

    return preexec


def _child_env(limits: Limits) -> dict[str, str] | None:
    if not limits.address_space:
        return None
    # glibc gives threads their own malloc arenas, each reserving 64-128 MiB of address space: qemu-img's worker
    # threads then fail at random ("qemu_thread_create: Resource temporarily unavailable") under the cap.
    return {**os.environ, "MALLOC_ARENA_MAX": "1"}


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def run(
    argv: Sequence[str],
    *,
    limits: Limits = Limits(),
    on_line: LineCallback | None = None,
    capture_stdout: bool = True,
) -> Completed:
    """Run argv to completion and return what it printed.

    The child gets its own process group, so that on a timeout, Ctrl-C or SIGTERM the whole group is killed
    and never outlives us. stdout is read as it comes and split on CR and LF (qemu-img's progress uses CR);
    each piece goes to `on_line`. stderr goes to an unlinked temporary file, which cannot fill a pipe."""
    argv = tuple(argv)
    log.debug("run: %s", " ".join(argv))
    with tempfile.TemporaryFile() as err:
        proc: subprocess.Popen[bytes] | None = None
        out: list[str] = []
        pending = b""
        timed_out = False
        try:
            # Signals are held while the child starts, so that one arriving then is raised here, inside the
            # `try`, where the child is known and gets killed, never left running in its own session.
            with signals_held():
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    pass_fds=tuple(_shared_fds),
                    start_new_session=True,  # own group: we decide when it dies, not the terminal
                    preexec_fn=_apply_limits(limits) if (limits.address_space or limits.cpu_seconds) else None,
                    env=_child_env(limits),
                )
            assert proc.stdout is not None
            deadline = time.monotonic() + limits.wall_seconds if limits.wall_seconds else None
            with selectors.DefaultSelector() as sel:
                sel.register(proc.stdout, selectors.EVENT_READ)
                while True:
                    timeout = None if deadline is None else deadline - time.monotonic()
                    if timeout is not None and timeout <= 0:
                        timed_out = True
                        _kill_group(proc)
                        break
                    if not sel.select(timeout):
                        continue
                    chunk = os.read(proc.stdout.fileno(), 65536)
                    if not chunk:
                        break
                    pending += chunk
                    *pieces, pending = pending.replace(b"\r", b"\n").split(b"\n")
                    for piece in pieces:
                        text = piece.decode("utf-8", "replace")
                        if on_line is not None and text.strip():
                            on_line(text)
                        if capture_stdout:
                            out.append(text)
            if pending and capture_stdout:
                out.append(pending.decode("utf-8", "replace"))
            returncode = proc.wait()
        except BaseException:
            if proc is not None:
                _kill_group(proc)
            raise
        finally:
            if proc is not None and proc.stdout is not None:
                proc.stdout.close()
        err.seek(0)
        stderr = err.read(1024 * 1024).decode("utf-8", "replace")
    log.debug("exit %s: %s", returncode, stderr.strip()[-500:])
    return Completed(argv, returncode, "\n".join(out), stderr, timed_out)


class Running:
    """A child started by `spawn`: whether it is still running, and what it has written to stderr so far."""

    def __init__(self, proc: subprocess.Popen[bytes], err: IO[bytes]) -> None:
        self._proc = proc
        self._err = err

    @property
    def argv(self) -> tuple[str, ...]:
        return tuple(str(a) for a in self._proc.args)  # type: ignore[union-attr]

    def poll(self) -> int | None:
        """The exit status once the child has ended, else None."""
        return self._proc.poll()

    def stderr(self, limit: int = 1024 * 1024) -> str:
        self._err.seek(0)
        return self._err.read(limit).decode("utf-8", "replace")

    def kill(self) -> None:
        _kill_group(self._proc)


@contextlib.contextmanager
def spawn(argv: Sequence[str]) -> Iterator[Running]:
    """Start argv for the caller to watch (a virtual machine, whose output goes to files it names itself), and
    kill its whole process group when the block ends, however it ends: a timeout, an exception, Ctrl-C or
    SIGTERM never leave it running. stdout and stderr go to an unlinked temporary file."""
    argv = tuple(argv)
    log.debug("spawn: %s", " ".join(argv))
    with tempfile.TemporaryFile() as err:
        proc: subprocess.Popen[bytes] | None = None
        try:
            with signals_held():  # as in run(): a signal now is raised below, where the child is known
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=err,
                    stderr=err,
                    start_new_session=True,
                    pass_fds=tuple(_shared_fds),
                )
            yield Running(proc, err)
        finally:
            if proc is not None:
                _kill_group(proc)
                log.debug("exit %s: %s", proc.returncode, Running(proc, err).stderr().strip()[-500:])


def start_worker(argv: Sequence[str], *, pass_fds: Sequence[int] = ()) -> subprocess.Popen[bytes]:
    """Start a long-lived child (one of our own worker processes) that the caller talks to and must wait for.

    It gets its own session, so that Ctrl-C at the terminal reaches only the caller, which decides how its
    children stop; signals are held while it starts (the caller holds them too, to record the child before one is
    raised), and the child inherits them held: it unblocks them once its handlers are installed."""
    argv = tuple(argv)
    log.debug("start: %s", " ".join(argv))
    with signals_held():
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            pass_fds=tuple(pass_fds),
            start_new_session=True,
        )
