"""Turning what the user typed into the library's values: formats, sizes, named choices (in any case), the safety
policy and the metadata request. A mistake in what was typed is a usage error (exit 2), wherever it is found."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from imagepack.core.errors import InvalidValueError, MetadataError

if TYPE_CHECKING:
    from imagepack.cli.shared_options import PackOptions
    from imagepack.formats import ImageFormat, SafetyPolicy
    from imagepack.sources.open import OpenOptions
    from imagepack.verbs.build import TargetKind
    from imagepack.writers.disk import StreamWriter
    from imagepack.writers.oci.pack import MetadataRequest

E = TypeVar("E", bound=Enum)


def parse_disk_format(name: str | None) -> ImageFormat | None:
    from imagepack.formats import parse_format

    return parse_format(name) if name else None


def parse_scratch(path: Path | None) -> Path | None:
    """--scratch DIR: a directory imagepack can write its temporaries in."""
    if path is None:
        return None
    if not path.is_dir():
        raise InvalidValueError(f"--scratch {path}: no such directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise InvalidValueError(f"--scratch {path}: the directory is not writable")
    return path


def parse_target(name: str | None) -> TargetKind | None:
    from imagepack.verbs.build import parse_target_kind

    return parse_target_kind(name) if name else None


def parse_policy(max_size: str | None, *, allow_backing: bool = False, vhd_size: str | None = None) -> SafetyPolicy:
    from imagepack.core.sizes import parse_size
    from imagepack.formats import DEFAULT_MAX_SIZE, SafetyPolicy
    from imagepack.formats.base import VhdSize

    return SafetyPolicy(
        max_size=parse_size(max_size) if max_size else DEFAULT_MAX_SIZE,
        allow_backing=allow_backing,
        vhd_size=parse_choice(VhdSize, vhd_size, "--vhd-size") or VhdSize.CURRENT,
    )


def open_options(
    from_format: str | None,
    max_size: str | None,
    *,
    allow_backing: bool = False,
    vhd_size: str | None = None,
    disk: int | None = None,
    scratch: Path | None = None,
) -> OpenOptions:
    """How to open what the user gave, from --from, --max-size, --allow-backing, --vhd-size, --disk and
    --scratch as typed, each checked, in that order (the progress is the command's, added when it starts)."""
    from imagepack.sources.open import OpenOptions

    return OpenOptions(
        claimed=parse_disk_format(from_format),
        policy=parse_policy(max_size, allow_backing=allow_backing, vhd_size=vhd_size),
        disk=disk,
        scratch=parse_scratch(scratch),
    )


def parse_part_size(text: str | None, *, checksum: bool = True) -> int:
    """The part size `--part-size` gives (Object Storage's limits checked), or the one oci os object put uses.
    Without a checksum to compute, a part size has nothing to apply to."""
    from imagepack.core.sizes import parse_size
    from imagepack.files.checksums import OBJECT_PUT_PART_SIZE, check_part_size

    if text is None:
        return OBJECT_PUT_PART_SIZE
    if not checksum:
        raise InvalidValueError("--part-size applies to the checksums of the output; give --checksum too")
    part_size = parse_size(text, what="--part-size")
    check_part_size(part_size)
    return part_size


def parse_choice(kind: type[E], value: str | None, option: str) -> E | None:
    """The member of `kind` named by `value` in any case, so that `--firmware uefi_64` stores UEFI_64."""
    if value is None:
        return None
    for member in kind:
        if str(member.value).casefold() == value.strip().casefold():
            return member
    allowed = " | ".join(str(m.value) for m in kind)
    raise InvalidValueError(f"{option} {value}: use one of {allowed}")


def parse_stream_writer(value: str | None) -> StreamWriter:
    """`--stream-writer`: which program writes a stream-optimized vmdk (imagepack's own unless told)."""
    from imagepack.writers.disk import StreamWriter

    return parse_choice(StreamWriter, value, "--stream-writer") or StreamWriter.IMAGEPACK


@contextlib.contextmanager
def typed_values() -> Iterator[None]:
    """Inside, a value the library refuses as metadata was typed by the user (`meta set firmware=X`,
    `--launch-option networkType=X`): a usage error like an unknown key, not a refused input."""
    from imagepack.oci.metadata.requested import RuleRefused

    try:
        yield
    except RuleRefused:
        raise  # values each typed right that together break a rule of OCI's: refused as the archive would be
    except MetadataError as e:
        code = InvalidValueError.code if e.code == MetadataError.code else e.code  # a raise site's precise code is kept
        raise InvalidValueError(e.reason, subject=e.subject, detail=e.detail, code=code, remedy=e.remedy) from None


def metadata_request(pack: PackOptions) -> MetadataRequest:
    """The pack options of `pack`, and of `convert` to a .oci target, as one request; every typed value checked
    before any input is read."""
    import dataclasses

    from imagepack.formats.partitions import Firmware
    from imagepack.oci.metadata import LaunchMode, parse_assignments, parse_shape
    from imagepack.verbs.preflight import check_metadata
    from imagepack.writers.oci.pack import MetadataRequest

    asked = MetadataRequest(
        operating_system=pack.os_name,
        operating_system_version=pack.os_version,
        overrides=parse_assignments(pack.launch_option),
        launch_mode=parse_choice(LaunchMode, pack.launch_mode, "--launch-mode"),
        base=pack.metadata,
        strict=pack.strict,
        os_unlisted=pack.os_unlisted,
    )
    with typed_values():
        check_metadata(asked)  # the rules a batch manifest's `oci` table is checked by too, before any input is read
    return dataclasses.replace(
        asked,
        firmware=parse_choice(Firmware, pack.firmware, "--firmware"),
        shapes=[parse_shape(text) for text in pack.shape],
        guest_mismatch_ok=pack.guest_mismatch_ok,
    )
