"""Outputs appear whole or not at all: written under their own name in a hidden directory beside the target,
then renamed over it."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from imagepack.errors import ImagepackError, OutputError
from imagepack.problems import Remedy
from imagepack.signals import signals_held

TEMP_MARK = ".imagepack-"


def temp_dir_for(target: Path) -> Path:
    """A hidden directory beside the target, so the final rename never crosses file systems."""
    return target.parent / f".{target.name}{TEMP_MARK}{secrets.token_hex(4)}.tmp"


def check_target(target: Path, *, force: bool, inputs: tuple[Path, ...] = ()) -> None:
    """Refuse a target that is an input (also through a link), a directory, or exists without --force."""
    for source in inputs:
        same = os.path.realpath(source) == os.path.realpath(target)
        with contextlib.suppress(OSError):
            same = same or os.path.samefile(source, target)
        if same:
            raise OutputError(f"{target}: the output would overwrite the input; choose another name")
    if target.is_dir() and not target.is_symlink():
        raise OutputError(f"{target}: is a directory; give a file name for the output")
    if os.path.lexists(target) and not force:
        raise OutputError(f"{target}: already exists", code="output.exists", remedy=Remedy.REPLACE_OUTPUT)
    if not target.parent.is_dir():
        raise OutputError(f"{target.parent}: directory does not exist")
    if not os.access(target.parent, os.W_OK):
        raise OutputError(f"{target.parent}: directory is not writable")


def check_free_space(target: Path, needed: int) -> None:
    usage = shutil.disk_usage(target.parent)
    if usage.free < needed:
        raise OutputError(
            f"{target.parent}: needs about {_mib(needed)} MiB but only {_mib(usage.free)} MiB is free; "
            "free some space or write elsewhere"
        )


def _mib(n: int) -> str:
    return f"{n / 1024**2:,.1f}"


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(target: Path, *, sync: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed over `target` (see atomic_outputs)."""
    with atomic_outputs([target], sync=sync) as (temp,):
        yield temp


@contextlib.contextmanager
def atomic_outputs(targets: Sequence[Path], *, sync: bool = False) -> Iterator[tuple[Path, ...]]:
    """Yield a temporary path per target; when the block succeeds they are all renamed into place together.

    Each temporary path has the target's own file name, inside a hidden directory of its own in the target's
    directory: a file that records its own name (a vmdk's descriptor names its extent file) names the final
    file. On any failure, Ctrl-C or SIGTERM (raised as Interrupted) the temporary directories are removed and
    no target is touched. A target that is a symlink is replaced by the new file; the file it pointed to is
    never written. The renames run back to back with those signals held, so a set of outputs (a disk and its
    metadata) appears together or not at all.

    The new data is flushed to disk before the rename when `sync` is asked for, and always when the rename
    replaces an existing file, so that a power cut can never lose the old file without the new one. A new
    file is otherwise left to the page cache like any other writer's (qemu-img's included): flushing
    gigabytes costs several times the conversion itself."""
    durable = [sync or os.path.lexists(target) for target in targets]
    folders: list[Path] = []
    temps: list[Path] = []
    try:
        with signals_held():  # a directory made is a directory recorded, so cleanup always finds it
            for target in targets:
                folder = temp_dir_for(target)
                os.mkdir(folder, 0o700)  # claims the name; nobody else can see into it or write there
                folders.append(folder)
                temp = folder / target.name
                os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
                temps.append(temp)
        yield tuple(temps)
        for temp, flush in zip(temps, durable, strict=True):
            if flush:
                fsync_path(temp)
        with signals_held():
            for temp, target in zip(temps, targets, strict=True):
                os.replace(temp, target)
            _remove(folders)
            folders.clear()
    except OSError as e:
        _remove(folders)
        where = targets[0] if len(targets) == 1 else targets[0].parent
        raise OutputError(f"{where}: writing failed: {e.strerror or e}; nothing was written") from None
    except ImagepackError as e:
        _remove(folders)
        # qemu-img names the file it wrote; the user asked for the target and never sees the temporary name.
        for folder, target in zip(folders, targets, strict=False):
            temp = folder / target.name
            for hidden in (os.path.abspath(temp), str(temp), os.path.abspath(folder), str(folder)):
                e.message = e.message.replace(hidden, str(target))
        raise
    except BaseException:
        _remove(folders)
        raise
    for target, flush in zip(targets, durable, strict=True):
        if flush:
            fsync_path(target.parent)


def _remove(folders: list[Path]) -> None:
    # Only our own directories, named by us and closed to others: whatever is in them is ours to delete.
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
