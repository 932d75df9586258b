"""`imagepack checksum FILE`: the SHA-256 and the MD5s Object Storage will show for the file once uploaded."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from imagepack.cli.output import checksum_lines, human_size
from imagepack.cli.run import Run, reporting
from imagepack.cli.shared_options import PART_SIZE

if TYPE_CHECKING:
    from imagepack.files.checksums import Checksums

EXAMPLES = """\b
Examples:
  imagepack checksum disk.oci                   # as oci os object put uploads it, in parts of 128 MiB
  imagepack checksum disk.qcow2 --part-size 256MiB --json"""


def register(app: typer.Typer) -> None:
    app.command("checksum", epilog=EXAMPLES)(checksum_command)


@reporting
def checksum_command(
    path: Path = typer.Argument(..., metavar="FILE", help="File to checksum (never modified)."),
    part_size: str = PART_SIZE,
    *,
    run: Run,
) -> None:
    """Print the SHA-256, the Content-MD5 of a single-part upload and the opc-multipart-md5 Object Storage shows
    for a multipart one, in one read of the file."""
    from imagepack.cli.parse import parse_part_size
    from imagepack.core.openfile import require_regular_file
    from imagepack.files.checksums import checksum_file

    size = parse_part_size(part_size)
    require_regular_file(path)
    with run.progress(f"checksumming {path.name}") as on_progress:
        done = checksum_file(path, part_size=size, on_progress=on_progress)
    run.show({"source": str(path), **done.to_json()}, lambda: _print(path, done), even_quiet=True)


def _print(path: Path, done: Checksums) -> None:
    print(f"{path} ({human_size(done.size)}, {done.size} bytes)")
    for line in checksum_lines(done):
        print(f"  {line}")
