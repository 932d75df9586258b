"""The one place that starts external programs: limits, timeouts, progress lines, signals and error mapping;
`run` waits for a program to finish, `spawn` starts one for the caller to watch (a virtual machine).

Every child dies with us, even when we are killed outright (kill -9, the OOM killer): it asks the kernel for
SIGKILL when its parent ends (PR_SET_PDEATHSIG). The kernel sends it when the *thread* that started the child
ends, so a child is started by the thread that waits for it (`run`) or holds it (`spawn`, `start_worker`)."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import resource
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from imagepack.core.errors import ImagepackError
from imagepack.core.signals import signals_held

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


PR_SET_PDEATHSIG = 1  # prctl(2): the signal a Linux child gets when its parent (thread) ends
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None  # looked up before any fork


@dataclass(frozen=True)
class _ChildSetup:
    """What a child does between fork and exec: ask to die with its parent, then take its resource limits
    (already clamped to ours, so setting them cannot fail)."""

    parent: int  # our pid: the child's parent, unless we have died already
    death_signal: int
    rlimits: tuple[tuple[int, int, int], ...] = ()  # (resource, soft, hard)
    held: bool = False  # keep SIGINT and SIGTERM blocked, as they were while it started (one of our workers)

    def __call__(self) -> None:
        if _prctl is not None:
            _prctl(PR_SET_PDEATHSIG, self.death_signal)
        if os.getppid() != self.parent:  # we died before the line above took effect: no signal will come
            os.kill(os.getpid(), signal.SIGKILL)
        for which, soft, hard in self.rlimits:
            resource.setrlimit(which, (soft, hard))
        if not self.held:  # someone else's program must stop on SIGTERM, as anyone expects (signals_held blocked it)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def _clamped(which: int, wanted: int) -> tuple[int, int]:
    """(soft, hard) for a child that should get `wanted`: never above our own soft or hard limit, which only
    root could raise (setrlimit would fail in the child)."""
    soft, hard = resource.getrlimit(which)
    new_hard = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    new_soft = new_hard if soft == resource.RLIM_INFINITY else min(new_hard, soft)
    return new_soft, new_hard


def _wanted(limits: Limits) -> tuple[tuple[int, int | None], ...]:
    return ((resource.RLIMIT_AS, limits.address_space), (resource.RLIMIT_CPU, limits.cpu_seconds))


def _rlimits(limits: Limits) -> tuple[tuple[int, int, int], ...]:
    return tuple((which, *_clamped(which, amount)) for which, amount in _wanted(limits) if amount)


def _tighter(limits: Limits) -> str | None:
    """In words, the first of our own limits that is below what `limits` allows the child (or that bounds a
    child `limits` leaves unbounded), else None."""
    for which, amount in _wanted(limits):
        soft = resource.getrlimit(which)[0]
        if soft != resource.RLIM_INFINITY and (not amount or soft < amount):
            if which == resource.RLIMIT_AS:
                allowed = f", below the {amount / 1024**2:.0f} MiB imagepack allows it" if amount else ""
                return f"the address-space limit of {soft / 1024**2:.0f} MiB it was started with (ulimit -v){allowed}"
            allowed = f", below the {amount} s imagepack allows it" if amount else ""
            return f"the CPU-time limit of {soft} s it was started with (ulimit -t){allowed}"
    return None


def _setup(limits: Limits = Limits(), death_signal: int = signal.SIGKILL, *, held: bool = False) -> _ChildSetup:
    return _ChildSetup(os.getpid(), death_signal, _rlimits(limits), held)


def _child_env(limits: Limits) -> dict[str, str] | None:
    if not limits.address_space and resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY:
        return None
    # glibc gives threads their own malloc arenas, each reserving 64-128 MiB of address space: qemu-img's worker
    # threads then fail at random ("qemu_thread_create: Resource temporarily unavailable") under the cap.
    return {**os.environ, "MALLOC_ARENA_MAX": "1"}


_OUT_OF_MEMORY = ("Cannot allocate memory", "Resource temporarily unavailable", "Out of memory", "out of memory")


def _check_limited(argv: tuple[str, ...], returncode: int, stderr: str, limits: Limits) -> None:
    """A child killed by a signal we did not send, or out of memory, under one of the limits imagepack itself
    was started with: say that the limit is the cause, in one line, rather than what the child half-printed."""
    tighter = _tighter(limits)
    if returncode == 0 or tighter is None:
        return
    if returncode > 0 and not any(why in stderr for why in _OUT_OF_MEMORY):
        return
    how = "ran out of memory"
    if returncode < 0:
        how = f"was killed by signal {-returncode}"
        with contextlib.suppress(ValueError):
            how = f"was killed by {signal.Signals(-returncode).name}"
    raise ImagepackError(
        f"{os.path.basename(argv[0])} {how} under {tighter}: raise the limit and run again", code="resource-limit"
    )


def _popen(argv: tuple[str, ...], **kwargs: Any) -> subprocess.Popen[bytes]:
    """subprocess.Popen, with the failures that come from our environment (too many open files or processes,
    no memory to fork) said in one line with what to raise; a missing or unrunnable program stays an OSError
    for the caller, who knows what the program is for."""
    try:
        return subprocess.Popen(argv, **kwargs)
    except OSError as e:
        hint = _ENVIRONMENT.get(e.errno or 0)
        if hint is None:
            raise
        raise ImagepackError(
            f"cannot start {os.path.basename(argv[0])}: {e.strerror} ({hint()})", code="resource-limit"
        ) from None


def _open_files_hint() -> str:
    return f"imagepack may have {resource.getrlimit(resource.RLIMIT_NOFILE)[0]} files open: raise it with ulimit -n"


_ENVIRONMENT: dict[int, Callable[[], str]] = {
    errno.EMFILE: _open_files_hint,
    errno.ENFILE: lambda: "the system's table of open files is full",
    errno.EAGAIN: lambda: "too many processes: raise the limit with ulimit -u, or wait for others to end",
    errno.ENOMEM: lambda: "out of memory, or the address-space limit imagepack runs under (ulimit -v) is too low",
}


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
    pass_fds: Sequence[int] = (),
) -> Completed:
    """Run argv to completion and return what it printed.

    The child gets its own process group, so that on a timeout, Ctrl-C or SIGTERM the whole group is killed
    and never outlives us. stdout is read as it comes and split on CR and LF (qemu-img's progress uses CR);
    each piece goes to `on_line`. stderr goes to an unlinked temporary file, which cannot fill a pipe. The child
    inherits `pass_fds` besides the inputs every child shares (a connection it goes on with)."""
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
                proc = _popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    pass_fds=tuple(_shared_fds | set(pass_fds)),
                    start_new_session=True,  # own group: we decide when it dies, not the terminal
                    preexec_fn=_setup(limits),
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
    if not timed_out:
        _check_limited(argv, returncode, stderr, limits)
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
def spawn(argv: Sequence[str], *, stdin: int | None = None) -> Iterator[Running]:
    """Start argv for the caller to watch (a virtual machine, whose output goes to files it names itself), and
    kill its whole process group when the block ends, however it ends: a timeout, an exception, Ctrl-C or
    SIGTERM never leave it running, and it dies with us if we are killed. stdin is `stdin` (a descriptor the
    caller keeps open until this returns), else /dev/null; stdout and stderr go to an unlinked temporary file."""
    argv = tuple(argv)
    log.debug("spawn: %s", " ".join(argv))
    with tempfile.TemporaryFile() as err:
        proc: subprocess.Popen[bytes] | None = None
        try:
            with signals_held():  # as in run(): a signal now is raised below, where the child is known
                proc = _popen(
                    argv,
                    stdin=subprocess.DEVNULL if stdin is None else stdin,
                    stdout=err,
                    stderr=err,
                    start_new_session=True,
                    preexec_fn=_setup(),
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
    raised), and the child inherits them held: it unblocks them once its handlers are installed. It gets SIGTERM
    when the caller dies (even by kill -9), so that it cleans up after itself as on a stop."""
    argv = tuple(argv)
    log.debug("start: %s", " ".join(argv))
    with signals_held():
        return _popen(
            argv,
            stdin=subprocess.DEVNULL,
            pass_fds=tuple(pass_fds),
            start_new_session=True,
            preexec_fn=_setup(death_signal=signal.SIGTERM, held=True),
        )
