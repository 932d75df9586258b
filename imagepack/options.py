"""Format options for the images we write (`-o KEY=VALUE`), checked against the format's registry entry before
qemu-img runs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from imagepack.errors import InvalidValueError
from imagepack.formats import ImageFormat, spec


def parse_option_pairs(pairs: Iterable[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in pairs:
        for item in pair.split(","):  # accept qemu's own comma-joined form as well as repeated -o
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise InvalidValueError(f"-o {item!r}: expected KEY=VALUE")
            options[key.strip()] = value.strip()
    return options


def create_options(fmt: ImageFormat, given: Mapping[str, str], *, compress: bool = False) -> dict[str, str]:
    """The defaults for `fmt` overlaid with `given`, every key and value checked and named choices in their canonical
    case; raises InvalidValueError."""
    entry = spec(fmt)
    canonical: dict[str, str] = {}
    for key, value in given.items():
        if key not in entry.options:
            keys = ", ".join(entry.options) or "none"
            raise InvalidValueError(f"-o {key}: not an option of {fmt.value} (its options: {keys})")
        choices = entry.options[key]
        if choices is None:
            canonical[key] = value
            continue
        # A choice in any case, stored as qemu-img spells it: subformat=streamoptimized is streamOptimized.
        match = next((choice for choice in choices if choice.casefold() == value.casefold()), None)
        if match is None:
            raise InvalidValueError(f"-o {key}={value}: {fmt.value} takes {key}={' | '.join(choices)}")
        canonical[key] = match
    options = {**entry.defaults, **canonical}
    if entry.check_options is not None:
        entry.check_options(options)
    if compress and not entry.compressible:
        raise InvalidValueError(f"--compress works for qcow2 and vmdk outputs, not {fmt.value}")
    if compress and fmt is ImageFormat.VMDK:
        if options.get("subformat", "streamOptimized") != "streamOptimized":
            raise InvalidValueError("--compress for vmdk writes subformat=streamOptimized; drop the other subformat")
        options["subformat"] = "streamOptimized"
    return options


def allocates_whole_disk(fmt: ImageFormat, options: Mapping[str, str]) -> bool:
    """Whether the output takes the whole virtual size on disk, whatever the data."""
    return spec(fmt).allocates_whole_disk(options)
