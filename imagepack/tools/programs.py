"""Finding the programs imagepack runs (qemu-img, qemu-nbd, qemu-system-x86_64, GNU tar): one rule for all of
them. A variable the user sets names the program outright; otherwise each name is looked for beside another
program first (a sibling of the same build), then on PATH, and the first candidate the caller's check accepts
wins. When none is found, the caller's error says so, given one phrase naming what is missing."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from imagepack.core.errors import ImagepackError
from imagepack.core.process import Completed, Limits, run

VERSION_LIMITS = Limits(wall_seconds=30)  # a program asked its version answers at once, or is not the one we want


@dataclass(frozen=True)
class Program:
    """A program looked for by `names` (in order), unless the environment variable `variable` names it;
    `missing` ends the phrase said when none is found ("qemu-img is not installed")."""

    names: tuple[str, ...]
    variable: str | None = None
    missing: str = "is not installed"

    @property
    def wanted(self) -> str | None:
        """What the user's variable names, if it is set (and not empty)."""
        return os.environ.get(self.variable) or None if self.variable else None

    def not_found(self) -> str:
        """The phrase saying why no program was found: the variable's value, or the program's absence."""
        if self.wanted:
            return f"{self.variable}={self.wanted} is not an executable"
        return f"{self.names[0]} {self.missing}"


def version_of(path: str) -> Completed:
    """`path --version`, bounded in time: what a check reads to tell whether a candidate is the right program.
    OSError (it cannot be started) is the caller's to word."""
    return run([path, "--version"], limits=VERSION_LIMITS)


def find_program(
    program: Program,
    refuse: Callable[[str], ImagepackError],
    *,
    beside: Path | None = None,
    accept: Callable[[str], bool] | None = None,
) -> str:
    """The path of `program`: the variable's executable when it is set (no other place is tried), else the first
    of its names, beside `beside` first and then on PATH, that `accept` (when given) takes. When none is found,
    raises `refuse(phrase)`, the phrase naming what is missing."""
    for path in _candidates(program, beside):
        if accept is None or accept(path):
            return path
    raise refuse(program.not_found())


def _candidates(program: Program, beside: Path | None) -> list[str]:
    if program.wanted:
        found = shutil.which(program.wanted)
        return [found] if found else []
    places = ([str(beside)] if beside is not None else []) + [None]
    paths = (shutil.which(name, path=place) for name in program.names for place in places)
    return list(dict.fromkeys(path for path in paths if path))
