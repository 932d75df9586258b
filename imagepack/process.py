"""The one place that starts external programs: limits, timeouts, progress lines, signals and error mapping."""

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
from typing import BinaryIO

from imagepack.signals import signals_held

log = logging.getLogger("imagepack")

LineCallback = Callable[[str], None]


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


@dataclass
class Service:
    """A program started by `serving`, still running: its process, and where its stderr goes."""

    proc: subprocess.Popen[bytes]
    stderr: BinaryIO

    def stderr_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read(1024 * 1024).decode("utf-8", "replace")


@contextlib.contextmanager
def serving(argv: Sequence[str], *, limits: Limits = Limits()) -> Iterator[Service]:
    """Start argv (a server, e.g. qemu-nbd) in its own process group for the length of the block, and kill the
    whole group when the block ends, however it ends: a server never outlives the step that needed it."""
    argv = tuple(argv)
    log.debug("serve: %s", " ".join(argv))
    with tempfile.TemporaryFile() as err:
        proc: subprocess.Popen[bytes] | None = None
        try:
            with signals_held():  # as in run(): a signal now is raised where the child is known and killed
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    start_new_session=True,
                    preexec_fn=_apply_limits(limits) if (limits.address_space or limits.cpu_seconds) else None,
                    env=_child_env(limits),
                )
            yield Service(proc, err)
        finally:
            if proc is not None:
                _kill_group(proc)
