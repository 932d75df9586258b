"""`imagepack unpack ARCHIVE`: a .oci archive's disk and image_metadata.json, written into a directory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from imagepack.cli.output import print_checksums
from imagepack.cli.run import Run, reporting
from imagepack.cli.shared_options import (
    CHECKSUM,
    FORCE,
    FORMAT_OPTION,
    MAX_SIZE,
    PART_SIZE,
    SCRATCH,
    STREAM_WRITER,
    SYNC,
    THREADS,
)

if TYPE_CHECKING:
    from imagepack.verbs.unpack import UnpackResult

EXAMPLES = """\b
Examples:
  imagepack unpack disk.oci -d out/
  imagepack unpack disk.oci --to vmdk -o subformat=streamOptimized"""


def register(app: typer.Typer) -> None:
    app.command("unpack", epilog=EXAMPLES)(unpack_command)


@reporting
def unpack_command(
    archive: Path = typer.Argument(..., metavar="ARCHIVE", help="The .oci archive (never modified)."),
    directory: Path = typer.Option(
        Path("."), "--directory", "-d", metavar="DIR", help="Where to write (created if missing)."
    ),
    to: str = typer.Option(
        None,
        "--to",
        "-O",
        metavar="FORMAT",
        help="Convert the disk to this format instead of writing the qcow2 as it is.",
    ),
    option: list[str] = FORMAT_OPTION,
    name: str = typer.Option(
        None, "--name", metavar="NAME", help="Name the outputs NAME.qcow2 and NAME.json (default: the archive's name)."
    ),
    threads: int = THREADS,
    stream_writer: str = STREAM_WRITER,
    force: bool = FORCE,
    sync: bool = SYNC,
    max_size: str = MAX_SIZE,
    scratch: Path | None = SCRATCH,
    checksum: bool = CHECKSUM,
    part_size: str = PART_SIZE,
    *,
    run: Run,
) -> None:
    """Write an archive's disk (NAME.qcow2) and metadata (NAME.json) into a directory. -o KEY=VALUE takes --to."""
    from imagepack.cli.parse import (
        parse_disk_format,
        parse_part_size,
        parse_policy,
        parse_scratch,
        parse_stream_writer,
    )
    from imagepack.core.errors import InvalidValueError
    from imagepack.formats.create_options import parse_option_pairs
    from imagepack.verbs.unpack import unpack_archive

    if option and to is None:
        # Without --to the qcow2 is written as archived, so there is nothing for a format option to change.
        raise InvalidValueError("-o applies to the disk written with --to FORMAT; give --to too, or drop -o")
    size = parse_part_size(part_size, checksum=checksum)
    with run.progress(archive.name) as on_progress:
        done = unpack_archive(
            archive,
            directory,
            to=parse_disk_format(to),
            name=name,
            options=parse_option_pairs(option),
            threads=threads,
            stream_writer=parse_stream_writer(stream_writer),
            force=force,
            sync=sync,
            policy=parse_policy(max_size),
            scratch=parse_scratch(scratch),
            checksum=checksum,
            part_size=size,
            on_progress=on_progress,
        )
    run.show(done, lambda: _print(done))


def _print(done: UnpackResult) -> None:
    print(f"unpacked {done.archive} into {done.disk} ({done.disk_format.value}) and {done.metadata}")
    print_checksums(done.checksum)
