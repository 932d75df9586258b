"""`inspect` on what the user named: the input opened as every verb opens it, then its guest read (reader.py), with
what a .oci's metadata says beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imagepack.sources.guest.reader import inspect_image
from imagepack.sources.open import OpenOptions, Source, open_source


def inspect_path(path: Path, options: OpenOptions = OpenOptions()) -> dict[str, Any]:
    """The report on the guest in `path` (any input imagepack reads), opened as `options` say."""
    with open_source(path, options) as source:
        return inspect_source(source, str(path))


def inspect_source(source: Source, shown: str) -> dict[str, Any]:
    """The report on the guest in an input already opened (verify reads the guest of the file it checks)."""
    report = inspect_image(source.disk, shown)
    metadata = None
    if source.archive is not None:
        meta = source.archive.metadata
        metadata = {
            "launch_mode": meta.launch_mode.value,
            "firmware": meta.launch.firmware.value,
            "operating_system": meta.operating_system,
            "operating_system_version": meta.operating_system_version,
        }
    return {
        "path": shown,
        "input": source.format,
        "format": source.disk.format.value,
        "virtual_size": source.virtual_size,
        "metadata": metadata,
        **report,
    }
