"""Format options for the images we write (`-o KEY=VALUE`, a preset's, a batch manifest's `options`), every key and
value checked against the format's registry entry before anything is written: the one place they are checked, as a
value reaches qemu-img's command line and, for a vmdk, the text of its descriptor."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from imagepack.core.errors import InvalidValueError
from imagepack.core.problems import Remedy
from imagepack.core.sizes import parse_size
from imagepack.formats import ImageFormat, spec
from imagepack.formats.registry import Choices

# Every value any option takes is written with these: no quote, comma, `=`, space, control or non-ASCII character
# can reach a command line or a descriptor, whatever the kind of the option says next.
_PLAIN = re.compile(r"[A-Za-z0-9._-]{1,32}")
_SHOWN_LENGTH = 40


def parse_option_pairs(pairs: Iterable[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in pairs:
        for item in pair.split(","):  # accept qemu's own comma-joined form as well as repeated -o
            key, sep, value = item.partition("=")
            if not sep or not key.strip(" "):
                raise InvalidValueError(f"-o {shown(item)}: expected KEY=VALUE")
            options[key.strip(" ")] = value.strip(" ")  # spaces only: any other character is the value's
    return options


def shown(text: str) -> str:
    """`text` as one line of an error message: as typed when plain, else escaped and cut short."""
    if _PLAIN.fullmatch(text):
        return text
    cut = text[:_SHOWN_LENGTH]
    return ascii(cut) + ("..." if len(text) > len(cut) else "")


def option_value(fmt: ImageFormat, key: str, value: object) -> str:
    """`value` of option `key` of `fmt` as written: a choice in qemu-img's spelling (subformat=streamoptimized is
    streamOptimized), a number in decimal digits (a size in bytes). Raises InvalidValueError naming the key and
    what it may be."""
    entry = spec(fmt)
    kind = entry.options.get(key)
    if kind is None:
        keys = ", ".join(entry.options) or "none"
        raise InvalidValueError(f"-o {shown(key)}: not an option of {fmt.value} (its options: {keys})")
    text = value if isinstance(value, str) else str(value)
    refusal = InvalidValueError(f"-o {key}={shown(text)}: {fmt.value} takes {key}={_describe(kind)}")
    if not _PLAIN.fullmatch(text):
        raise refusal
    if isinstance(kind, tuple):
        match = next((choice for choice in kind if choice.casefold() == text.casefold()), None)
        if match is None:
            raise refusal
        return match
    number = parse_size(text, what=key) if kind.size else int(text) if text.isdigit() else None
    if number is None or not kind.low <= number <= kind.high or (kind.size and number & (number - 1)):
        raise refusal
    return str(number)


def _describe(kind: Choices) -> str:
    return " | ".join(kind) if isinstance(kind, tuple) else f"N, {kind.describe()}"


def create_options(fmt: ImageFormat, given: Mapping[str, str], *, compress: bool = False) -> dict[str, str]:
    """The defaults for `fmt` overlaid with `given`, every key and value checked and named choices in their canonical
    case; raises InvalidValueError."""
    entry = spec(fmt)
    canonical = {key: option_value(fmt, key, value) for key, value in given.items()}
    options = {**entry.defaults, **canonical}
    if entry.check_options is not None:
        entry.check_options(options)
    if compress and not entry.compressible:
        raise InvalidValueError(f"a compressed output is qcow2 or vmdk, not {fmt.value}", remedy=Remedy.NO_COMPRESS)
    if compress and fmt is ImageFormat.VMDK:
        if options.get("subformat", "streamOptimized") != "streamOptimized":
            raise InvalidValueError(
                "a compressed vmdk is subformat=streamOptimized; drop the other subformat",
                remedy=Remedy.UNCOMPRESSED_SUBFORMAT,
            )
        options["subformat"] = "streamOptimized"
    return options


def allocates_whole_disk(fmt: ImageFormat, options: Mapping[str, str]) -> bool:
    """Whether the output takes the whole virtual size on disk, whatever the data."""
    return spec(fmt).allocates_whole_disk(options)
