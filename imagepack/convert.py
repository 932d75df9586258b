"""Converting one disk image to another format, safely: checked input, checked options, whole output or none."""

from __future__ import annotations

import contextlib
import gzip
import os
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from imagepack import qemu
from imagepack.atomic import atomic_output, check_free_space, check_target
from imagepack.errors import UsageError
from imagepack.formats import (
    ByteSource,
    Container,
    ImageFormat,
    SafetyPolicy,
    detect,
    format_claimed_by_name,
    format_for_output_name,
    spec,
)
from imagepack.options import create_options
from imagepack.source import SourceImage, open_image, require_regular_file


@dataclass(frozen=True)
class ConvertResult:
    source: Path
    source_format: ImageFormat
    target: Path
    target_format: ImageFormat
    virtual_size: int
    target_size: int
    options: dict[str, str]
    seconds: float


def output_format(target: Path, to: ImageFormat | None) -> ImageFormat:
    """The format to write: `--to`, else the name's suffix. Both given and different is refused: a qcow2 named
    .vmdk is a file that every tool, imagepack included, would then read as something it is not. '.img' names
    no format when `--to` is given (vendors ship qcow2 under it), and raw when it is not."""
    claimed = format_claimed_by_name(target)
    if to is not None and claimed is not None and to is not claimed:
        raise UsageError(
            f"{target}: --to {to.value} contradicts the name, which says {claimed.value}; "
            f"name the output {target.with_suffix(spec(to).suffix).name} or drop --to"
        )
    fmt = to or format_for_output_name(target)
    if fmt is None:
        raise UsageError(f"{target}: cannot tell the output format from the name; pass --to FORMAT")
    return fmt


def estimate_output_size(image: SourceImage, fmt: ImageFormat, options: Mapping[str, str]) -> int:
    """Bytes the output will need: qemu-img's own measure for qcow2, else the data plus 1% of metadata.
    qemu-img measures only qcow2 (and raw, as if fully allocated): a qcow2 with clusters of the unit the output
    allocates in measures the source's data rounded up as the output will round it."""
    entry = spec(fmt)
    if entry.allocates_whole_disk(options):
        return image.virtual_size + image.virtual_size // 100 + entry.overhead
    if fmt is ImageFormat.QCOW2:
        return qemu.measure(image.ref, fmt, options) or 0
    data = qemu.measure(image.ref, ImageFormat.QCOW2, {"cluster_size": entry.allocation_unit}) or 0
    return data + data // 100 + entry.overhead


@contextlib.contextmanager
def open_input(
    source: Path, *, claimed: ImageFormat | None, policy: SafetyPolicy, scratch: Path | None = None
) -> Iterator[SourceImage]:
    """A disk image, or the disk inside a .oci archive (a tar or gzip file, or anything named .oci)."""
    if claimed is None and is_archive(source):
        from imagepack.oci.reader import open_archive

        with open_archive(source, policy=policy, scratch=scratch) as opened:
            yield opened.disk
        return
    yield open_image(source, claimed=claimed, policy=policy)


def is_archive(path: Path) -> bool:
    """Whether to read `path` as a .oci archive: by its content (a tar, or a gzip holding one), or by its name
    (then the archive reader says what the content really is)."""
    require_regular_file(path)
    if path.suffix.lower() == ".oci":
        return True
    with ByteSource(path) as src:
        kind = detect(src).archive
    return kind is Container.TAR or (kind is Container.GZIP and _gzip_holds_tar(path))


def _gzip_holds_tar(path: Path) -> bool:
    """Whether the first block inside a gzip file is a tar header (an ocne-style .oci archive)."""
    try:
        with gzip.open(path, "rb") as f:
            head = f.read(512)
    except (OSError, EOFError, zlib.error):
        return False
    return head[257:262] == b"ustar"


def convert_image(
    source: Path,
    target: Path,
    *,
    to: ImageFormat | None = None,
    from_format: ImageFormat | None = None,
    options: Mapping[str, str] = {},
    compress: bool = False,
    force: bool = False,
    sync: bool = False,
    policy: SafetyPolicy = SafetyPolicy(),
    on_progress: qemu.Progress | None = None,
) -> ConvertResult:
    started = time.monotonic()
    fmt = output_format(target, to)
    checked_options = create_options(fmt, options, compress=compress)
    check_target(target, force=force, inputs=(source,))
    with open_input(source, claimed=from_format, policy=policy, scratch=target.parent) as image:
        check_free_space(target, estimate_output_size(image, fmt, checked_options))
        with atomic_output(target, sync=sync) as temp:
            qemu.convert(
                image.ref,
                temp,
                fmt,
                virtual_size=image.virtual_size,
                options=checked_options,
                compress=compress,
                on_progress=on_progress,
            )
    return ConvertResult(
        source=source,
        source_format=image.format,
        target=target,
        target_format=fmt,
        virtual_size=image.virtual_size,
        target_size=os.stat(target).st_size,
        options=checked_options,
        seconds=time.monotonic() - started,
    )
