"""Outputs appear whole or not at all: written under their own name in a hidden directory beside the target,
then renamed over it."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from imagepack.core.errors import ImagepackError, OutputError, QemuImgError
from imagepack.core.problems import Remedy
from imagepack.core.signals import signals_held
from imagepack.files.leftovers import owner_tag, remove_dead_temporaries
from imagepack.files.renames import rename_noreplace
from imagepack.files.writes import NoSpaceError, write_failed

TEMP_MARK = ".imagepack-"


def temp_dir_for(target: Path) -> Path:
    """A hidden directory beside the target, so the final rename never crosses file systems; its name says
    which process owns it (leftovers.py), so that a later run can remove it if this one is killed."""
    return target.parent / f".{target.name}.{owner_tag()}"


# What check_target decided for each output: whether it may replace a file there (--force). A file that
# appears at a target not allowed to be replaced is another writer's, and the final rename refuses it.
_may_replace: dict[str, bool] = {}


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
        raise _exists(target)
    _may_replace[os.path.abspath(target)] = force
    if not target.parent.is_dir():
        raise OutputError(f"{target.parent}: directory does not exist")
    if not os.access(target.parent, os.W_OK):
        raise OutputError(f"{target.parent}: directory is not writable")


def _exists(target: Path) -> OutputError:
    return OutputError(f"{target}: already exists", code="output.exists", remedy=Remedy.REPLACE_OUTPUT)


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
def atomic_output(target: Path, *, sync: bool = False, needed: int | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed over `target` (see atomic_outputs)."""
    with atomic_outputs([target], sync=sync, needed=needed) as (temp,):
        yield temp


@contextlib.contextmanager
def atomic_outputs(
    targets: Sequence[Path], *, sync: bool = False, needed: int | None = None
) -> Iterator[tuple[Path, ...]]:
    """Yield a temporary path per target; when the block succeeds they are all renamed into place together.

    Each temporary path has the target's own file name, inside a hidden directory of its own in the target's
    directory: a file that records its own name (a vmdk's descriptor names its extent file) names the final
    file. On any failure, Ctrl-C or SIGTERM (raised as Interrupted) the temporary directories are removed and
    no target is touched. A target that is a symlink is replaced by the new file; the file it pointed to is
    never written; a target that did not exist is never replaced by a file another writer put there meanwhile
    (refused as output.exists), nor is one that check_target refused to replace without --force. A file system
    that fills up is one error line naming the directory, what is free there and `needed` (where known). Dead
    runs' temporaries in the targets' directories are removed first (leftovers.py). The renames run back to
    back with those signals held, so a set of outputs (a disk and its metadata) appears together or not at all.

    The new data is flushed to disk before the rename when `sync` is asked for, and always when the rename
    replaces an existing file, so that a power cut can never lose the old file without the new one. A new
    file is otherwise left to the page cache like any other writer's (qemu-img's included): flushing
    gigabytes costs several times the conversion itself."""
    existing = [os.path.lexists(target) for target in targets]
    durable = [sync or exists for exists in existing]
    # Replaced only where the caller allowed it (--force), or, for a target never checked, where a file was
    # there at the start: the caller rewrites it. A file that appears meanwhile is never replaced.
    replacing = [_may_replace.get(os.path.abspath(t), e) for t, e in zip(targets, existing, strict=True)]
    for directory in dict.fromkeys(target.parent for target in targets):
        remove_dead_temporaries(directory)
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
            _rename_all(temps, targets, replacing)
            _remove(folders)
            folders.clear()
    except OSError as e:
        _remove(folders)
        only = targets[0] if len(targets) == 1 else None
        raise write_failed(e, targets[0].parent, needed=needed, file=only) from None
    except ImagepackError as e:
        _remove(folders)
        if isinstance(e, NoSpaceError):  # what is free once our temporaries are gone
            e.needed = e.needed if e.needed is not None else needed
            e.measure()
        elif isinstance(e, QemuImgError) and (full := _full_in_words(e.said or "")) is not None:
            raise NoSpaceError(targets[0].parent, needed=needed, quota=full == errno.EDQUOT) from None
        # qemu-img names the file it wrote; the user asked for the target and never sees the temporary name.
        for folder, target in zip(folders, targets, strict=False):
            e.shown_as(folder / target.name, target).shown_as(folder, target)
        raise
    except BaseException:
        _remove(folders)
        raise
    for target, flush in zip(targets, durable, strict=True):
        if flush:
            fsync_path(target.parent)


def _rename_all(temps: Sequence[Path], targets: Sequence[Path], replacing: Sequence[bool]) -> None:
    """Each temporary onto its target; one that may not replace a file and finds one there undoes the new ones
    already in place (ours: nobody else's file was touched) and is refused."""
    placed: list[Path] = []
    for temp, target, replace in zip(temps, targets, replacing, strict=True):
        if replace:
            os.replace(temp, target)
            continue
        try:
            rename_noreplace(temp, target)
        except FileExistsError:
            for new in placed:
                with contextlib.suppress(OSError):
                    os.unlink(new)
            raise _exists(target) from None
        placed.append(target)


def _full_in_words(said: str) -> int | None:
    """The errno a program's last words (qemu-img's: "error while writing at byte N: No space left on device")
    reports when it ran out of room writing our temporary, if it does."""
    for code in (errno.ENOSPC, errno.EDQUOT):
        if os.strerror(code) in said:
            return code
    return None


def _remove(folders: list[Path]) -> None:
    # Only our own directories, named by us and closed to others: whatever is in them is ours to delete.
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
