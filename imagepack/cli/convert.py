"""`imagepack convert SRC DST`: one image to another format, a .oci archive included."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import typer

from imagepack.cli.output import print_build, print_json
from imagepack.cli.run import running
from imagepack.cli.shared_options import (
    ALLOW_BACKING,
    CHECKSUM,
    COMPRESS,
    DISK,
    FORCE,
    FORMAT_OPTION,
    FROM_FORMAT,
    JSON,
    LEVEL,
    MAX_SIZE,
    PART_SIZE,
    QUIET,
    SCRATCH,
    STREAM_WRITER,
    SYNC,
    THREADS,
    VERBOSE,
    VHD_SIZE,
    PackOptions,
    pack_options,
)

EXAMPLES = """\b
Examples:
  imagepack convert disk.vmdk disk.qcow2
  imagepack convert disk.raw disk.vmdk -o subformat=streamOptimized
  imagepack convert disk.qcow2 disk.vhd --for azure --resize-up
  imagepack convert disk.qcow2 disk.tar.gz --for gcp --resize-up
  imagepack convert disk.qcow2.xz disk.vmdk --scratch /var/tmp
  imagepack convert disk.qcow2 disk.vmdk -o subformat=streamOptimized --threads 4
  imagepack convert disk.raw small.qcow2 --compress
  imagepack convert --for list"""


def register(app: typer.Typer) -> None:
    app.command("convert", epilog=EXAMPLES)(convert_command)


@pack_options
def convert_command(
    ctx: typer.Context,
    # Not required by typer, so that `--for list` needs neither; checked below with click's own message.
    source: Path = typer.Argument(None, metavar="SRC", help="Image to read (never modified)."),
    target: Path = typer.Argument(
        None, metavar="DST", help="Image to write; its suffix picks the format unless --to or --for is given."
    ),
    to: str = typer.Option(
        None, "--to", "-O", metavar="FORMAT", help="Output format: raw, qcow2, vmdk, vdi, vhd, vhdx or oci."
    ),
    for_target: str = typer.Option(
        None,
        "--for",
        metavar="TARGET",
        help="Write what a platform imports: oci, azure, aws, esxi, vsphere, gcp, virtualbox, hyperv "
        "('list' shows them).",
    ),
    resize_up: bool = typer.Option(
        False,
        "--resize-up",
        help="With --for azure or gcp: grow the output's virtual size to the next whole MiB or GiB "
        "(a GPT's backup moves to the new end).",
    ),
    from_format: str = FROM_FORMAT,
    option: list[str] = FORMAT_OPTION,
    compress: bool = COMPRESS,
    level: int = LEVEL,
    threads: int = THREADS,
    stream_writer: str = STREAM_WRITER,
    force: bool = FORCE,
    sync: bool = SYNC,
    allow_backing: bool = ALLOW_BACKING,
    max_size: str = MAX_SIZE,
    vhd_size: str = VHD_SIZE,
    disk: int | None = DISK,
    scratch: Path | None = SCRATCH,
    checksum: bool = CHECKSUM,
    part_size: str = PART_SIZE,
    json_output: bool = JSON,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
    *,
    pack: PackOptions,
) -> None:
    """Convert a disk image between raw, qcow2, vmdk, vdi, vhd, vhdx and .oci (a .oci source works too; a .oci
    target takes the pack options)."""
    if for_target is not None and for_target.strip().lower() == "list":
        _print_presets(json_output=json_output)
        return
    _require_arguments(ctx, source=source, target=target)
    with running(json_output=json_output, quiet=quiet, verbose=verbose) as run:
        from imagepack.cli.parse import (
            metadata_request,
            open_options,
            parse_part_size,
            parse_stream_writer,
            parse_target,
        )
        from imagepack.core.errors import InvalidValueError
        from imagepack.formats.create_options import parse_option_pairs
        from imagepack.verbs.build import make
        from imagepack.verbs.preflight import wanted_target
        from imagepack.verbs.presets import preset_named
        from imagepack.verbs.target import ArchiveKind

        if for_target is not None and to is not None:
            raise InvalidValueError("--to and --for cannot be used together: --for picks the format; drop --to")
        if for_target is None and resize_up:
            raise InvalidValueError("--resize-up applies with --for (azure or gcp), which says what size to reach")
        preset = preset_named(for_target) if for_target is not None else None
        wanted = wanted_target(
            target,
            to=parse_target(to),
            preset=preset,
            options=parse_option_pairs(option),
            compress=compress,
            force=force,
            sync=sync,
            level=level,
            threads=threads,
            stream_writer=parse_stream_writer(stream_writer),
            checksum=checksum,
            part_size=parse_part_size(part_size, checksum=checksum),
        )
        if wanted.kind is not ArchiveKind.OCI and pack.given():
            raise InvalidValueError(f"{pack.given()[0]} applies only to a .oci target, not {wanted.kind.value}")
        if wanted.kind is ArchiveKind.OCI:
            wanted = replace(wanted, metadata=metadata_request(pack))
        options = open_options(
            from_format, max_size, allow_backing=allow_backing, vhd_size=vhd_size, disk=disk, scratch=scratch
        )
        with run.progress(f"{source.name} → {target.name}") as on_progress:
            done = make(source, wanted, options.following(on_progress), preset=preset, resize_up=resize_up)
        run.show(done, lambda: print_build(done), warnings=done.warnings)


# click's MissingParameter, reached through the name typer exports, whichever copy of click this typer uses.
_MissingParameter: Callable[..., Exception] = next(
    c for c in typer.BadParameter.__subclasses__() if c.__name__ == "MissingParameter"
)


def _require_arguments(ctx: typer.Context, **given: Path | None) -> None:
    """SRC and DST are required unless `--for list` is asked: missing, they are the usage error click gives."""
    for name, value in given.items():
        if value is None:
            param = next(p for p in ctx.command.params if p.name == name)
            raise _MissingParameter(ctx=ctx, param=param)


def _print_presets(*, json_output: bool) -> None:
    from imagepack.verbs.presets import PRESETS

    if json_output:
        print_json({"presets": [preset.to_json() for preset in PRESETS.values()]})
        return
    for preset in PRESETS.values():
        print(f"{preset.name:<11} {preset.platform}")
        for output in preset.outputs:
            print(f"{'':<11}   writes {output.describe()}")
        if preset.checks != "—":
            print(f"{'':<11}   checks {preset.checks}")
