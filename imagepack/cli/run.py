"""The body every command shares, said once: --json, --quiet and --verbose, logging set up from them, the
library's failures turned into one line and an exit status (a JSON error object too with --json), a progress bar
while it works, and the result printed as JSON or in the verb's own words. A verb module keeps its own options and
its wording:

    @reporting
    def info_command(path: Path = typer.Argument(...), *, run: Run) -> None:
        with run.progress(f"reading {path.name}") as on_progress:
            found = describe(path, on_progress=on_progress)
        run.show(found, lambda: print_found(found))
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, overload

from imagepack.cli.output import REMEDY_TEXT, print_json, print_warnings, progress_bar, reported, setup_logging
from imagepack.cli.shared_options import JSON, QUIET, VERBOSE
from imagepack.core.errors import OutputError
from imagepack.core.problems import Problem, Remedy
from imagepack.core.stdfds import CLOSED


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
        whose text is its answer prints it anyway). An answer for a standard output the caller closed is an error,
        not a silent success; a summary of work done (convert's line) is dropped there, as with --quiet."""
        if (self.json_output or even_quiet) and 1 in CLOSED:
            raise OutputError("standard output is closed: the answer cannot be written", code="output.stdout-closed")
        if self.json_output:
            print_json(result if isinstance(result, dict | list) else result.to_json())
            return
        print_warnings(warnings)
        if even_quiet or not self.quiet:
            text()


@contextlib.contextmanager
def running(
    *, json_output: bool, quiet: bool, verbose: bool, words: Mapping[Remedy, str] = REMEDY_TEXT
) -> Iterator[Run]:
    """Run a command's body: logging set up first, any failure inside reported as the command's one line and exit
    status (output.reported), its remedy said in `words` (a batch's: the manifest's keys), never a traceback."""
    setup_logging(quiet=quiet, verbose=verbose)
    with reported(verbose=verbose, json_output=json_output, words=words):
        yield Run(json_output=json_output, quiet=quiet)


# The options every command takes, last in its --help: (parameter, its type, its typer.Option).
_REPORTING = (("json_output", bool, JSON), ("quiet", bool, QUIET), ("verbose", bool, VERBOSE))
REPORTING_NAMES = tuple(name for name, _, _ in _REPORTING)


Command = Callable[..., None]


@overload
def reporting(command: Command) -> Command: ...


@overload
def reporting(
    *, json_option: Any = JSON, words: Mapping[Remedy, str] = REMEDY_TEXT
) -> Callable[[Command], Command]: ...


def reporting(
    command: Command | None = None, *, json_option: Any = JSON, words: Mapping[Remedy, str] = REMEDY_TEXT
) -> Command | Callable[[Command], Command]:
    """Give `command` --json, --quiet and --verbose (`json_option`: a --json of its own wording) and run it inside
    `running` (`words`: how its remedies are said): typer sees the options at the end of its signature, and the
    command receives them as one `run: Run` argument. Usable bare (`@reporting`) or with settings
    (`@reporting(json_option=...)`)."""
    if command is None:
        return lambda command: _with_run(command, json_option, words)
    return _with_run(command, json_option, words)


def _with_run(command: Command, json_option: Any, words: Mapping[Remedy, str]) -> Command:
    own = inspect.signature(command, eval_str=True)
    kept = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for name, p in own.parameters.items() if name != "run"]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)
        for name, annotation, option in _REPORTING
    ]
    added[0] = added[0].replace(default=json_option)

    @functools.wraps(command)
    def with_run(**kwargs: Any) -> None:
        json_output, quiet, verbose = (kwargs.pop(name) for name in REPORTING_NAMES)
        with running(json_output=json_output, quiet=quiet, verbose=verbose, words=words) as run:
            command(**kwargs, run=run)

    with_run.__signature__ = own.replace(parameters=kept + added)  # type: ignore[attr-defined]
    with_run.__annotations__ = {p.name: p.annotation for p in kept + added} | {"return": None}
    return with_run
