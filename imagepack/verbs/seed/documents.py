"""The files a seed carries, read and parsed as cloud-init will: bounded in size, YAML loaded safely, and a
failure that says which line of which file is wrong."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from imagepack.core.errors import InputError

# cloud-init reads each seed file whole into memory; a seed file bigger than this is a mistake (a disk image
# given as user-data), not a configuration.
MAX_FILE_SIZE = 16 * 1024**2
# libyaml's safe loader where PyYAML was built with it (its wheels are): the same documents and marks as the pure
# Python one, which needs seconds per MiB.
SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class SeedFile:
    """One file for the seed: its bytes, and the name the user knows it by (their file, or the seed's name)."""

    data: bytes
    label: str

    @classmethod
    def of(cls, value: bytes | str | Path, seed_name: str) -> SeedFile:
        """Bytes or text as they are (labelled with the seed's name), or a file read from disk (with its path)."""
        if isinstance(value, bytes):
            return cls(value, seed_name)
        if isinstance(value, str):
            return cls(value.encode(), seed_name)
        return cls(read_seed_file(value), str(value))


def read_seed_file(path: Path) -> bytes:
    """The file's bytes, refusing one larger than MAX_FILE_SIZE. Any readable file will do, a pipe too
    (`<(generate-config)`), so the size is checked by reading, not by stat."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_SIZE + 1)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file", code="input.missing") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a file", code="input.not-a-file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot be read: {e.strerror or e}") from None
    if len(data) > MAX_FILE_SIZE:
        raise InputError(
            f"{path}: is larger than {MAX_FILE_SIZE // 1024**2} MiB, too large for a seed file "
            "(cloud-init reads it whole); is it the right file?",
            code="seed.too-large",
        )
    return data


def decode_text(file: SeedFile, what: str) -> str:
    """UTF-8 text, as cloud-init decodes it; a file that is not is refused at the first bad byte."""
    try:
        return file.data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = file.data.count(b"\n", 0, e.start) + 1
        raise InputError(
            f"{file.label}: line {line}: is not UTF-8 text (byte {e.start}), which cloud-init needs for {what}",
            code="seed.not-utf8",
        ) from None


def load_yaml(file: SeedFile, what: str) -> Any:
    """The document as cloud-init's safe loader reads it; a syntax error names its line and column."""
    text = decode_text(file, what)
    if text.startswith("\ufeff"):
        raise InputError(
            f"{file.label}: starts with a byte-order mark, which cloud-init does not skip; save it as UTF-8 "
            "without one",
            code="seed.byte-order-mark",
        )
    try:
        return yaml.load(text, Loader=SAFE_LOADER)  # a safe loader, the C one when present
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = " ".join(part for part in (e.context, e.problem) if part)
        raise InputError(
            f"{file.label}: {where}{problem} ({what} must be valid YAML)", code="seed.invalid-yaml"
        ) from None
    except yaml.YAMLError as e:
        raise InputError(f"{file.label}: {e} ({what} must be valid YAML)", code="seed.invalid-yaml") from None


def load_mapping(file: SeedFile, what: str) -> dict[Any, Any]:
    """A YAML mapping (an empty document counts as an empty one, as cloud-init takes it)."""
    document = load_yaml(file, what)
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise InputError(
            f"{file.label}: is a YAML {yaml_type(document)}, but {what} must be a mapping of keys to values",
            code="seed.not-a-mapping",
        )
    return document


def yaml_type(document: Any) -> str:
    if isinstance(document, list):
        return "list"
    if isinstance(document, str):
        return "string"
    return type(document).__name__
