"""Shared pieces of every command: error reporting, logging, progress bars, sizes, JSON."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import typer

from imagepack.errors import EXIT_FAILURE, ImagepackError
from imagepack.problems import Problem, Remedy

QUIET = typer.Option(False, "--quiet", "-q", help="No progress bar and no chatter.")
VERBOSE = typer.Option(False, "--verbose", "-v", help="Show qemu-img command lines and full error details.")
JSON = typer.Option(False, "--json", help="Print one JSON object instead of text.")
FROM_FORMAT = typer.Option(None, "--from", metavar="FORMAT", help="State the input format instead of detecting it.")
MAX_SIZE = typer.Option(None, "--max-size", metavar="SIZE", help="Largest virtual size to accept (default 400G).")
FORCE = typer.Option(False, "--force", "-f", help="Replace existing outputs.")
SYNC = typer.Option(
    False, "--sync", help="Flush outputs to disk before they take their names (safe against a power cut; slower)."
)
VHD_SIZE = typer.Option(
    None,
    "--vhd-size",
    metavar="current|chs",
    help="A VHD whose footer size and CHS geometry differ: use which (default current, as Hyper-V and VirtualBox).",
)
ALLOW_BACKING = typer.Option(
    False, "--allow-backing", help="Follow backing files and vmdk extents the image names (trusted images only)."
)


# The option that does what a library remedy says, in the words a refusal ends with.
REMEDY_TEXT = {
    Remedy.ALLOW_BACKING: "pass --allow-backing if you trust this image",
    Remedy.RAISE_MAX_SIZE: "pass --max-size SIZE to accept it",
    Remedy.STATE_FORMAT: "pass --from {value} if the content is right",
    Remedy.STATE_FIRMWARE: "pass --firmware BIOS or --firmware UEFI_64",
    Remedy.STATE_OS: "pass --os NAME and --os-version VERSION",
    Remedy.STATE_TARGET_FORMAT: "pass --to FORMAT",
    Remedy.STATE_METADATA: "pass --metadata FILE, or repack the archive",
    Remedy.REPLACE_OUTPUT: "pass --force to replace it",
}


def with_remedy(message: str, remedy: Remedy | None, value: str | None = None) -> str:
    if remedy is None:
        return message
    return f"{message}; {REMEDY_TEXT[remedy].format(value=value or remedy.value.upper())}"


def describe_problem(problem: Problem) -> str:
    return with_remedy(problem.message, problem.remedy, problem.value)


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"imagepack: {record.levelname.lower()}: {record.getMessage()}"


def setup_logging(*, quiet: bool, verbose: bool) -> None:
    logger = logging.getLogger("imagepack")
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING)
    logger.propagate = False


@contextlib.contextmanager
def reported(*, verbose: bool) -> Iterator[None]:
    """Turn library failures into one line on stderr and the exit status they carry; never a traceback."""
    try:
        yield
    except ImagepackError as e:
        print(f"imagepack: error: {with_remedy(e.message, e.remedy, e.value)}", file=sys.stderr)
        if verbose and e.detail:
            print(e.detail.rstrip(), file=sys.stderr)
        raise typer.Exit(e.exit_code) from None
    except BrokenPipeError:
        raise  # the reader of stdout went away: main() ends quietly
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"imagepack: error: {where}{e.strerror or e}", file=sys.stderr)
        raise typer.Exit(EXIT_FAILURE) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as e:
        print(f"imagepack: internal error: {type(e).__name__}: {e} (please report it)", file=sys.stderr)
        if verbose:
            traceback.print_exc()
        raise typer.Exit(EXIT_FAILURE) from None


@contextlib.contextmanager
def progress_bar(label: str, *, quiet: bool) -> Iterator[Callable[[float], None] | None]:
    """A tqdm bar on stderr fed by a 0..1 callback; none when quiet or when stderr is not a terminal."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    with tqdm(
        total=100,
        desc=label,
        unit="%",
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}",
        file=sys.stderr,
        leave=False,
    ) as bar:

        def update(fraction: float) -> None:
            bar.update(max(fraction * 100 - bar.n, 0))

        yield update


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=False))


def human_size(n: int | None) -> str:
    if n is None:
        return "unknown"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
