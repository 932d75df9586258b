"""The command line: parses arguments, calls the library, prints its result objects. One module per verb, each
registering its command here; the options they share are in shared_options.py, the body they share (--json,
--quiet, --verbose, failures, progress, printing) in run.py, parsing in parse.py, printing in output.py.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import sys
from collections.abc import Iterator
from typing import Any

import typer
from typer.core import TyperGroup

from imagepack.cli.output import CommandLineError, output_closed
from imagepack.core.errors import Interrupted


class _Commands(TyperGroup):
    """The verbs. `imagepack batch merge-reports REPORT...` is a command of its own, named by both words: `batch`
    takes a manifest where a subcommand would be, so the pair is resolved here (a manifest called
    merge-reports is `batch ./merge-reports`). Completion resolves commands the same way."""

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        if args[:2] == ["batch", "merge-reports"]:
            args = [MERGE, *args[2:]]
        return super().resolve_command(ctx, args)

    # click's main turns a closed pipe into exit status 1 on its own: what it runs (the parsing, which prints
    # --help, and the command) hands a closed pipe on past it instead, for main() below to end as SIGPIPE would.
    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        with _pipe_closed():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:
        with _pipe_closed():
            return super().invoke(ctx)


class _PipeClosed(BaseException):
    """The reader of stdout or stderr went away (`imagepack info x | head`)."""


@contextlib.contextmanager
def _pipe_closed() -> Iterator[None]:
    try:
        yield
    except OSError as e:
        if e.errno != errno.EPIPE or not output_closed():
            raise
        raise _PipeClosed() from None


# A closed pipe ends the process as SIGPIPE would under a shell: 128 + 13, and not a word.
EXIT_PIPE_CLOSED = 141


class _App(typer.Typer):
    """The Typer app, which registers every verb when it is called with none registered: a script that runs
    `imagepack.cli.app` itself (rather than `main`, which registers only the verb named) gets all of them."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.registered_commands and not self.registered_groups:
            register_verbs([])
        return super().__call__(*args, **kwargs)


app = _App(
    name="imagepack",
    cls=_Commands,
    help="Prepare virtual-machine disk images offline: convert, inspect, and build Oracle Cloud .oci archives.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    epilog="Exit codes: 0 success, 1 failure or refused input, 2 usage error (what was typed is wrong), "
    "3 problems found (verify), 130/143 interrupted. With --json a failure also prints "
    '{"error": {"code": ..., "message": ...}} on stdout.'
    "\n\n\b\nExamples:\n  imagepack pack disk.vmdk disk.oci --os 'Oracle Linux' --os-version 9\n"
    "  imagepack convert disk.oci disk.vmdk",
)
# The verbs' modules in the order --help lists them, each with the commands it registers. A command line loads
# only the module of the verb it names (start-up is a fixed cost of every command, and the others' imports are
# most of it); --help, completion and anything that names no known verb load them all.
VERBS = (
    ("info", ("info",)),
    ("inspect", ("inspect",)),
    ("convert", ("convert",)),
    ("pack", ("pack",)),
    ("unpack", ("unpack",)),
    ("verify", ("verify",)),
    ("meta", ("meta",)),
    ("compress", ("compress", "decompress")),
    ("checksum", ("checksum",)),
    ("url", ("url",)),
    ("import_request", ("import-request",)),
    ("seed_iso", ("seed-iso",)),
    ("boot", ("boot-test",)),
    ("batch", ("batch", "batch-merge")),  # and `batch merge-reports` (MERGE)
)
MERGE = "batch merge-reports"  # the name batch.py registers `batch merge-reports` under


def register_verbs(args: list[str]) -> None:
    """Register on `app` the verb `args` name, or every verb when they name none (or ask for completion)."""
    named = next((arg for arg in args if not arg.startswith("-")), None)
    completing = any(name.startswith("_") and name.endswith("_COMPLETE") for name in os.environ)
    wanted = [module for module, commands in VERBS if named in commands and not completing]
    for module in wanted or [module for module, _ in VERBS]:
        importlib.import_module(f"imagepack.cli.{module}").register(app)


def _version(value: bool) -> None:
    if value:
        from imagepack import __version__

        print(f"imagepack {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Prepare virtual-machine disk images offline: convert, inspect, and build Oracle Cloud .oci archives."""


def main() -> None:
    from imagepack.core import signals
    from imagepack.core.stdfds import ensure_standard_fds

    ensure_standard_fds()
    signals.install()
    register_verbs(sys.argv[1:])
    try:
        _run()
    except (_PipeClosed, BrokenPipeError):  # a closed pipe met anywhere, an error line to a closed stderr too
        _quiet_exit(EXIT_PIPE_CLOSED)


def _run() -> None:
    from imagepack.cli.output import INTERRUPTED, report_unparsed

    try:
        # Not standalone, so that a command line that does not parse is reported here, in --json too.
        status = app(standalone_mode=False)
    except CommandLineError as e:
        sys.exit(report_unparsed(e, json_output=_asks_for_json(sys.argv[1:])))
    except typer.Abort:
        print("imagepack: aborted", file=sys.stderr)  # what standalone click said, in our words
        sys.exit(1)
    except Interrupted as e:
        print(f"imagepack: {INTERRUPTED}", file=sys.stderr)
        sys.exit(e.exit_code)
    sys.exit(status or 0)  # a command's typer.Exit(code) comes back as its code


def _quiet_exit(status: int) -> None:
    """Exit with `status` after pointing stdout and stderr at /dev/null, so that what is still buffered for a
    closed pipe is dropped at exit instead of failing once more with a message."""
    null = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            os.dup2(null, stream.fileno())
    sys.exit(status)


def _asks_for_json(args: list[str]) -> bool:
    return "--json" in (args[: args.index("--")] if "--" in args else args)
