"""The failures a user can meet, each carrying the facts of the one line they will read and the exit status it
maps to. The line is built from the facts when it is read; nobody edits it after the raise."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from imagepack.core.problems import Problem, Remedy

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_PROBLEMS = 3  # verify: the input is readable but not ready
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class ImagepackError(Exception):
    """Base of every failure the CLI turns into one line on stderr and an exit status.

    `code` is stable for scripts (the "code" of the --json error object): each class has a default and a raise
    site may pass a more precise one ("qcow2.backing-file"). `remedy` says what setting would let the work go on;
    each front end words it in its own terms. `subject` is the file the line is about, named before it;
    `shown` maps names the user never sees (a temporary written to) to the names to show for them."""

    exit_code = EXIT_FAILURE
    code = "error"

    def __init__(
        self,
        message: str,
        *,
        subject: str | os.PathLike[str] | None = None,
        detail: str | None = None,
        code: str | None = None,
        remedy: Remedy | None = None,
        value: str | None = None,
    ) -> None:
        super().__init__(message)
        self._reason = message
        self.subject = None if subject is None else os.fspath(subject)
        self.shown: dict[str, str] = {}
        self.problems: tuple[Problem, ...] = ()  # the problems it reports, where it was made from them
        self.detail = detail  # extra diagnostics shown with --verbose
        self.code = code or type(self).code
        self.remedy = remedy  # what would let the work go on; the front end names the setting that does it
        self.value = value  # what the remedy would set, where it is known

    @classmethod
    def from_problems(cls, problems: Sequence[Problem], *, subject: str | os.PathLike[str] | None = None) -> Self:
        """The refusal the problems found in `subject` make: each said, the first one's code, and the first remedy
        any of them has."""
        cured = next((problem for problem in problems if problem.remedy), problems[0])
        error = cls(
            "; ".join(problem.message for problem in problems),
            subject=subject,
            code=problems[0].code,
            remedy=cured.remedy,
            value=cured.value,
        )
        error.problems = tuple(problems)
        return error

    @classmethod
    def from_problem(cls, problem: Problem, *, subject: str | os.PathLike[str] | None = None) -> Self:
        """The refusal a problem found in `subject` makes."""
        return cls.from_problems([problem], subject=subject)

    @property
    def reason(self) -> str:
        """What is wrong, without the subject."""
        return self._reason

    @property
    def message(self) -> str:
        """The line the user reads: the subject, what is wrong, every hidden name replaced by the one to show."""
        text = self.reason if self.subject is None else f"{self.subject}: {self.reason}"
        for hidden in sorted(self.shown, key=len, reverse=True):  # a temporary's path before its folder's
            text = text.replace(hidden, self.shown[hidden])
        return text

    def said_of(self, subject: str | os.PathLike[str]) -> str:
        """The line in a report already about `subject`: without naming it again."""
        return self.reason if self.subject == os.fspath(subject) else self.message

    def about(self, subject: str | os.PathLike[str]) -> Self:
        """Name `subject` first: the file the user gave, where the raiser only knew a part of it."""
        name = os.fspath(subject)
        self.subject = name if self.subject is None else f"{name}: {self.subject}"
        return self

    def shown_as(self, hidden: str | os.PathLike[str], shown: str | os.PathLike[str]) -> Self:
        """Show `shown` wherever the line names `hidden` (a temporary the user never sees), relative or absolute."""
        for name in (os.fspath(hidden), os.path.abspath(hidden)):
            self.shown.setdefault(name, os.fspath(shown))
        return self

    def __str__(self) -> str:
        return self.message


class InvalidValueError(ImagepackError, ValueError):
    """A value the caller gave is not one the library takes (an unknown format option, a malformed size, two
    settings that exclude each other). The CLI reports it as a usage error: the mistake is in what was typed."""

    exit_code = EXIT_USAGE
    code = "invalid-value"


class InputError(ImagepackError):
    """The input cannot be used as given: missing, not a regular file, wrong or ambiguous format."""

    code = "input"


class UnsafeImageError(InputError):
    """The image's own headers ask for something we refuse for untrusted input (backing file, extents...)."""

    code = "unsafe-image"


class OutputError(ImagepackError):
    """The output cannot be written: exists, is the input, or the file system lacks room."""

    code = "output"


class QemuImgError(ImagepackError):
    """qemu-img is missing, too old, failed, or ran out of its limits. `said` is the program's own last words,
    where it ran and failed."""

    code = "qemu-img"

    def __init__(
        self,
        message: str,
        *,
        subject: str | os.PathLike[str] | None = None,
        detail: str | None = None,
        returncode: int | None = None,
        said: str | None = None,
        code: str | None = None,
        remedy: Remedy | None = None,
        value: str | None = None,
    ) -> None:
        super().__init__(message, subject=subject, detail=detail, code=code, remedy=remedy, value=value)
        self.returncode = returncode
        self.said = said


class ArchiveError(InputError):
    """A .oci archive is malformed or carries members we refuse."""

    code = "archive"


class MetadataError(InputError):
    """image_metadata.json is not valid, or a requested value is not allowed."""

    code = "metadata"


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; raised from the signal handler so every cleanup path runs."""

    code = "interrupted"

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class UnreadableError(InputError):
    """The input cannot be parsed at all (not the container it should be, truncated): verify exits 1, not 3."""

    code = "unreadable"


class BootError(ImagepackError):
    """A boot test could not run at all: no qemu-system, no firmware for the launch, qemu refused the machine.
    (A machine that ran and did not boot is a result, not this error.)"""

    code = "boot"
