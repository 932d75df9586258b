"""The body every command shares, said once: logging set up from --quiet and --verbose, the library's failures
turned into one line and an exit status (a JSON error object too with --json), a progress bar while it works, and
the result printed as JSON or in the verb's own words. A verb module keeps its signature and its wording:

    with running(json_output=json_output, quiet=quiet, verbose=verbose) as run:
        with run.progress(f"reading {path.name}") as on_progress:
            found = describe(path, on_progress=on_progress)
        run.show(found, lambda: print_found(found))
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from imagepack.cli.output import print_json, print_warnings, progress_bar, reported, setup_logging
from imagepack.core.problems import Problem


class Reportable(Protocol):
    """A library result: what --json prints is its to_json()."""

    def to_json(self) -> Any: ...


@dataclass(frozen=True)
class Run:
    """One command's run: how it was asked to report (--json, --quiet)."""

    json_output: bool
    quiet: bool

    def progress(self, label: str) -> contextlib.AbstractContextManager[Callable[[float], None] | None]:
        """A progress bar on a terminal's stderr for the work inside (none with --quiet): its callback, or None."""
        return progress_bar(label, quiet=self.quiet)

    def show(
        self,
        result: Reportable | dict[str, Any] | list[Any],
        text: Callable[[], object],
        *,
        warnings: Iterable[Problem] = (),
        even_quiet: bool = False,
    ) -> None:
        """With --json, `result` as JSON (its to_json(), or itself when it is JSON already) and nothing else;
        otherwise the `warnings` on stderr, then `text()` — unless --quiet, when `even_quiet` is not set (a verb
        whose text is its answer prints it anyway)."""
        if self.json_output:
            print_json(result if isinstance(result, dict | list) else result.to_json())
            return
        print_warnings(warnings)
        if even_quiet or not self.quiet:
            text()


@contextlib.contextmanager
def running(*, json_output: bool, quiet: bool, verbose: bool) -> Iterator[Run]:
    """Run a command's body: logging set up first, any failure inside reported as the command's one line and exit
    status (output.reported), never a traceback."""
    setup_logging(quiet=quiet, verbose=verbose)
    with reported(verbose=verbose, json_output=json_output):
        yield Run(json_output=json_output, quiet=quiet)
