"""The failures a user can meet, each carrying the one line they will read and the exit status it maps to."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imagepack.core.problems import Remedy

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
    the CLI names the option for it."""

    exit_code = EXIT_FAILURE
    code = "error"

    def __init__(
        self,
        message: str,
        *,
        detail: str | None = None,
        code: str | None = None,
        remedy: Remedy | None = None,
        value: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail  # extra diagnostics shown with --verbose
        self.code = code or type(self).code
        self.remedy = remedy  # what would let the work go on; the CLI names the option that does it
        self.value = value  # what the remedy would set, where it is known

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
    """qemu-img is missing, too old, failed, or ran out of its limits."""

    code = "qemu-img"

    def __init__(
        self,
        message: str,
        *,
        detail: str | None = None,
        returncode: int | None = None,
        code: str | None = None,
        remedy: Remedy | None = None,
        value: str | None = None,
    ) -> None:
        super().__init__(message, detail=detail, code=code, remedy=remedy, value=value)
        self.returncode = returncode


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
