"""Converting one disk image to another format, safely: checked input, checked options, whole output or none."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from imagepack import qemu
from imagepack.atomic import atomic_output, check_free_space, check_target
from imagepack.errors import UsageError
from imagepack.formats import ImageFormat, SafetyPolicy, format_for_output_name
from imagepack.options import allocates_whole_disk, create_options
from imagepack.source import SourceImage, open_image


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
    fmt = to or format_for_output_name(target)
    if fmt is None:
        raise UsageError(f"{target}: cannot tell the output format from the name; pass --to FORMAT")
    return fmt


def estimate_output_size(image: SourceImage, fmt: ImageFormat, options: Mapping[str, str]) -> int:
    """Bytes the output will need: qemu-img's own measure where it can, else the data plus 1% of metadata."""
    if allocates_whole_disk(fmt, options):
        return image.virtual_size + image.virtual_size // 100 + 1024**2
    required = qemu.measure(image.ref, fmt, options)
    if required is None:
        data = qemu.measure(image.ref, ImageFormat.RAW) or 0
        required = data + data // 100 + 1024**2
    return required


def convert_image(
    source: Path,
    target: Path,
    *,
    to: ImageFormat | None = None,
    from_format: ImageFormat | None = None,
    options: Mapping[str, str] = {},
    compress: bool = False,
    force: bool = False,
    policy: SafetyPolicy = SafetyPolicy(),
    on_progress: qemu.Progress | None = None,
) -> ConvertResult:
    started = time.monotonic()
    fmt = output_format(target, to)
    checked_options = create_options(fmt, options, compress=compress)
    check_target(target, force=force, inputs=(source,))
    image = open_image(source, claimed=from_format, policy=policy)
    check_free_space(target, estimate_output_size(image, fmt, checked_options))
    with atomic_output(target) as temp:
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
