"""A compressed input decompressed once into a sparse temporary file, bounded by what the disk inside says it can
need: how `open_source` reads a compressed disk or .oci archive."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from imagepack.atomic import check_free_space
from imagepack.compression.streams import STREAM_ERRORS, STREAMS, damaged, declared_size, inner_name, open_decompressed
from imagepack.errors import ImagepackError, InputError, OutputError
from imagepack.formats import (
    ByteSource,
    Container,
    ImageFormat,
    Inspection,
    SafetyPolicy,
    detect,
    inspect_source,
    require_safe,
)
from imagepack.oci.archive import MAX_METADATA, disk_size_limit
from imagepack.problems import Problem, Remedy
from imagepack.sparse import write_stream_sparse

ARCHIVE_SLACK = MAX_METADATA + 64 * 1024  # a .oci's tar: its disk member, the metadata, headers and padding


@dataclass(frozen=True)
class Decompressed:
    """A compressed input, decompressed: where its content is, and whether that is a .oci archive's tar."""

    path: Path
    compression: Container
    is_archive: bool


@contextlib.contextmanager
def decompressed(
    path: Path,
    kind: Container,
    *,
    claimed: ImageFormat | None = None,
    policy: SafetyPolicy = SafetyPolicy(),
    scratch: Path | None = None,
) -> Iterator[Decompressed]:
    """Decompress `path` into a temporary file in `scratch` (the system's temporary directory by default),
    removed afterwards whatever happens (an error, Ctrl-C, a damaged stream).

    A hostile stream is bounded: once its first chunk is written, the disk inside is detected and its header
    checked (an unsafe one is refused before the rest is read), and the rest may expand only as far as that
    header says it can need: the policy's largest size for a raw disk, a qcow2 (or other format's) file for its
    virtual size, a .oci archive for the largest disk member the policy allows.

    Free space: where the stream declares its content size (zstd does), `scratch` must have room for it (or the
    bound, if smaller) before anything is written; the others declare nothing in their headers, and running out
    of room while writing is refused as cleanly. Holes cost nothing, so a sparse disk usually needs less."""
    label = str(path)
    declared = declared_size(path, kind)
    base = policy.max_size if claimed in (None, ImageFormat.RAW) else disk_size_limit(policy.max_size)
    if claimed is None:
        base = max(base, disk_size_limit(policy.max_size) + ARCHIVE_SLACK)
    if declared is not None:
        check_free_space(Path(scratch or tempfile.gettempdir(), inner_name(path)), min(declared, base))
    with tempfile.TemporaryDirectory(prefix=".imagepack-", dir=scratch) as tmp:
        content = Path(tmp, inner_name(path))
        archive = False
        by_policy = True  # whether the bound is the policy's (a larger --max-size lifts it) or the header's

        def check_header() -> int:
            """Refuse an unsafe disk before the rest of it is written, and bound it by its own header."""
            nonlocal archive, by_policy
            with ByteSource(content) as src:
                if claimed is None and detect(src).archive is Container.TAR:
                    archive = True
                    return disk_size_limit(policy.max_size) + ARCHIVE_SLACK
                inspection = inspect_source(src, claimed=claimed, name=path, policy=policy)
            require_safe(problems_before_the_end(inspection), label)
            if inspection.format is ImageFormat.RAW:
                return policy.max_size
            by_policy = False
            return disk_size_limit(inspection.virtual_size)

        fd = os.open(content, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with open_decompressed(path, kind, label=label) as stream:
                write_stream_sparse(
                    stream,
                    fd,
                    0,
                    limit=base,
                    too_large=lambda n: expands_past(label, kind, n, by_policy=by_policy),
                    after_first_chunk=check_header,
                )
        except STREAM_ERRORS as e:
            if isinstance(e, OSError) and e.errno is not None:
                where = scratch or Path(tempfile.gettempdir())
                raise OutputError(f"{where}: writing the decompressed {label} failed: {e.strerror}") from None
            raise damaged(label, kind, e) from None
        finally:
            os.close(fd)
        try:
            yield Decompressed(content, kind, archive)
        except ImagepackError as e:
            # The user gave the compressed file and never sees the temporary's name.
            e.message = e.message.replace(str(content), label)
            raise


def problems_before_the_end(inspection: Inspection) -> list[Problem]:
    """A header's problems that the first chunk alone can show: a table past the end is not one, while the rest
    is still to come (the whole file is checked again once it is written)."""
    return [problem for problem in inspection.problems if not problem.code.endswith(".truncated")]


def expands_past(label: str, kind: Container, limit: int, *, by_policy: bool) -> InputError:
    return InputError(
        f"{label}: the {STREAMS[kind]} stream expands past {limit} bytes; refusing it",
        code="input.compressed-too-large",
        remedy=Remedy.RAISE_MAX_SIZE if by_policy else None,
    )
