"""The command line: parses arguments, calls the library, prints its result objects. Nothing else."""

from __future__ import annotations

import os
import sys

import typer

from imagepack.cli import compress, convert, info, oci
from imagepack.errors import Interrupted

app = typer.Typer(
    name="imagepack",
    help="Prepare virtual-machine disk images offline: convert, inspect, and build Oracle Cloud .oci archives.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    epilog="Exit codes: 0 success, 1 failure or refused input, 2 usage error, 3 problems found (verify), "
    "130/143 interrupted.",
)
app.command("info")(info.info_command)
app.command("convert")(convert.convert_command)
app.command("pack")(oci.pack_command)
app.command("unpack")(oci.unpack_command)
app.command("verify")(oci.verify_command)
app.add_typer(oci.meta_app, name="meta")
compress.register(app)


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
    from imagepack import signals

    signals.install()
    try:
        app()
    except Interrupted as e:
        print("imagepack: interrupted; nothing was written", file=sys.stderr)
        sys.exit(e.exit_code)
    except BrokenPipeError:
        # The reader went away (`imagepack info x | head`): stop quietly, as a SIGPIPE would.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
