"""`imagepack compress` and `imagepack decompress`: a file to a zstd, xz or gzip stream and back."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from imagepack.cli.output import human_size, print_checksums
from imagepack.cli.run import Run, reporting
from imagepack.cli.shared_options import CHECKSUM, FORCE, LEVEL, PART_SIZE, THREADS

if TYPE_CHECKING:
    from imagepack.compression import CompressionResult

COMPRESS_EXAMPLES = """\b
Examples:
  imagepack compress disk.qcow2                 # disk.qcow2.zst, on all cores
  imagepack compress --to xz --level 9 disk.raw disk.raw.xz"""

DECOMPRESS_EXAMPLES = """\b
Examples:
  imagepack decompress disk.raw.zst             # disk.raw, sparse
  imagepack decompress image.qcow2.xz image.qcow2"""


def register(app: typer.Typer) -> None:
    app.command("compress", epilog=COMPRESS_EXAMPLES)(compress_command)
    app.command("decompress", epilog=DECOMPRESS_EXAMPLES)(decompress_command)


@reporting
def compress_command(
    source: Path = typer.Argument(..., help="File to compress (never modified)."),
    to: str = typer.Option("zst", "--to", metavar="zst|xz|gz", help="Compression to write (default zst)."),
    level: int = LEVEL,
    threads: int = THREADS,
    output: Path = typer.Argument(
        None, metavar="[DST]", help="Where to write (default FILE.zst, .xz or .gz).", show_default=False
    ),
    force: bool = FORCE,
    checksum: bool = CHECKSUM,
    part_size: str = PART_SIZE,
    *,
    run: Run,
) -> None:
    """Compress a file with zstd (multi-threaded, with a checksum), xz or gzip; the output appears whole."""
    from imagepack.cli.parse import parse_part_size
    from imagepack.compression import compress_file, parse_codec

    codec = parse_codec(to)
    size = parse_part_size(part_size, checksum=checksum)
    with run.progress(f"compressing {source.name}") as on_progress:
        done = compress_file(
            source,
            output,
            to=codec,
            level=level,
            threads=threads,
            force=force,
            checksum=checksum,
            part_size=size,
            on_progress=on_progress,
        )
    run.show(done, lambda: _print(done, "compressed"))


@reporting
def decompress_command(
    source: Path = typer.Argument(..., help="zstd, xz, gzip or bzip2 file (never modified)."),
    output: Path = typer.Argument(
        None, metavar="[DST]", help="Where to write (default: FILE without its suffix).", show_default=False
    ),
    force: bool = FORCE,
    checksum: bool = CHECKSUM,
    part_size: str = PART_SIZE,
    *,
    run: Run,
) -> None:
    """Decompress a zstd, xz, gzip or bzip2 file (found by its bytes); runs of zeroes become holes."""
    from imagepack.cli.parse import parse_part_size
    from imagepack.compression import decompress_file

    size = parse_part_size(part_size, checksum=checksum)
    with run.progress(f"decompressing {source.name}") as on_progress:
        done = decompress_file(source, output, force=force, checksum=checksum, part_size=size, on_progress=on_progress)
    run.show(done, lambda: _print(done, "decompressed"))


def _print(done: CompressionResult, verb: str) -> None:
    print(
        f"{verb} {done.source} ({human_size(done.source_size)}) to {done.target} "
        f"({done.compression}, {human_size(done.size)}) in {done.seconds:.1f} s"
    )
    print_checksums(done.checksum)
