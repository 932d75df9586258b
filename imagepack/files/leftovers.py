"""Our temporaries carry their owner, so that what a killed run left behind is found and removed by the next.

Every hidden directory imagepack makes beside an output (an output's temporary, `.NAME.imagepack-...tmp`) or
as scratch (`.imagepack-...tmp`) is named with its owner process: its pid and the time the process started (from
/proc/PID/stat, so that a pid the system gave to another process since is not taken for ours). A run that
writes into a directory first removes there the temporaries whose owner is gone (kill -9, the OOM killer):
only directories named as ours, of our user, closed to others as we make them, made in this boot
and pid namespace; never one whose owner still runs, never anything else."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from imagepack.core.signals import signals_held

_PATTERN = re.compile(r"^\.(?:.+\.)?imagepack-(\d{1,10})-(\d{1,20})-([0-9a-f]{6})-[0-9a-f]{8}\.tmp$")


def owner_tag() -> str:
    """`imagepack-PID-START-SYSTEM-RANDOM.tmp` for this process: what names its temporaries. SYSTEM stands for
    this boot and pid namespace: a pid means this process only there (not in another container sharing the
    directory, another machine on a network file system, or before a reboot)."""
    pid = os.getpid()
    return f"imagepack-{pid}-{_own_start(pid) or 0}-{_system()}-{secrets.token_hex(4)}.tmp"


@functools.cache
def _system() -> str:
    parts = []
    for path in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        try:
            parts.append(os.readlink(path) if path.endswith("/pid") else Path(path).read_text().strip())
        except OSError:
            parts.append("")
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:6]


@functools.cache
def _own_start(pid: int) -> int | None:
    return _start_time(pid)  # keyed by pid: a forked worker reads its own


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or None if it is gone
    or the system has no /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read(4096)
    except OSError:
        return None
    after_name = text[text.rfind(b")") + 2 :].split()  # the name, in parentheses, may hold spaces
    try:
        return int(after_name[19])  # fields 3.. follow the name: field 22 is the 20th of them
    except (IndexError, ValueError):
        return None


def _owner_gone(pid: int, started: int) -> bool:
    if not os.path.isdir("/proc/self"):
        return False  # no way to tell: leave it
    now = _start_time(pid)
    return now is None or now != started


def is_ours_and_dead(entry: os.DirEntry[str]) -> bool:
    """A directory named as one of our temporaries, of our user and closed to others, whose owner is gone."""
    found = _PATTERN.match(entry.name)
    if found is None or int(found.group(2)) == 0:  # 0: made where the owner's start could not be read
        return False
    if found.group(3) != _system():  # another boot, container or machine: its pids are not ours to look up
        return False
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        return False
    return _owner_gone(int(found.group(1)), int(found.group(2)))


def remove_dead_temporaries(directory: Path) -> list[str]:
    """Remove, in `directory`, the temporaries of imagepack runs that are no longer running; returns their names.
    Failing to list or remove is not an error: the caller's own work is what matters."""
    removed: list[str] = []
    try:
        with os.scandir(directory) as entries:
            dead = [entry for entry in entries if ".imagepack-" in entry.name and is_ours_and_dead(entry)]
    except OSError:
        return removed
    for entry in dead:
        shutil.rmtree(entry.path, ignore_errors=True)
        if not os.path.lexists(entry.path):
            removed.append(entry.name)
    return removed


@contextlib.contextmanager
def scratch_directory(where: Path | str | None = None) -> Iterator[str]:
    """A new directory in `where` (the system's temporary directory by default), named with its owner and
    removed afterwards whatever happens: tempfile.TemporaryDirectory, in a form the next run can clean up
    after a kill -9. Dead runs' temporaries in `where` are removed first."""
    parent = Path(where) if where is not None else Path(tempfile.gettempdir())
    remove_dead_temporaries(parent)
    with signals_held():  # a directory made is a directory recorded, so cleanup always finds it
        path = parent / f".{owner_tag()}"
        os.mkdir(path, 0o700)
    try:
        yield str(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)
