"""A compressed input decompressed once, bounded by what the disk inside says it can need: into a sparse
temporary file (how `open_source` reads a compressed disk or .oci archive), or straight into its place in an
output (onepass.py)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from imagepack.compression.streams import STREAM_ERRORS, STREAMS, damaged, declared_size, inner_name, open_decompressed
from imagepack.core.errors import ImagepackError, InputError
from imagepack.core.problems import Problem, Remedy
from imagepack.core.progress import Progress
from imagepack.files.atomic import check_free_space
from imagepack.files.leftovers import scratch_directory
from imagepack.files.sparse import write_stream_sparse
from imagepack.files.writes import write_failed
from imagepack.formats import (
    ByteSource,
    Container,
    ImageFormat,
    Inspection,
    SafetyPolicy,
    detect,
    disk_size_limit,
    format_claimed_by_name,
    inspect_source,
    require_name_agrees,
    require_safe,
)
from imagepack.oci.archive import MAX_METADATA

ARCHIVE_SLACK = MAX_METADATA + 64 * 1024  # a .oci's tar: its disk member, the metadata, headers and padding


@dataclass(frozen=True)
class Decompressed:
    """A compressed input, decompressed: where its content is, and whether that is a tar (a .oci archive's,
    an OVA's)."""

    path: Path
    compression: Container
    is_archive: bool


@dataclass(frozen=True)
class Written:
    """What `decompress_into` wrote: how many bytes, and whether they are a tar."""

    size: int
    is_archive: bool


def first_bound(policy: SafetyPolicy, claimed: ImageFormat | None, *, archive_ok: bool) -> int:
    """How far a stream may expand before its header is read: the largest raw disk or qcow2 file the policy
    allows, or the largest .oci archive where the content may be one."""
    base = policy.max_size if claimed in (None, ImageFormat.RAW) else disk_size_limit(policy.max_size)
    if claimed is None and archive_ok:
        base = max(base, disk_size_limit(policy.max_size) + ARCHIVE_SLACK)
    return base


def decompress_into(
    path: Path,
    kind: Container,
    fd: int,
    offset: int,
    *,
    written: Path,
    claimed: ImageFormat | None = None,
    want: ImageFormat | None = None,
    archive_ok: bool = True,
    policy: SafetyPolicy = SafetyPolicy(),
    where: Path | None = None,
    on_progress: Progress | None = None,
) -> Written:
    """Decompress `path` into `fd` (the file `written`) at `offset`, runs of zeroes left as holes, bounded.

    A hostile stream is bounded: once its first chunk is written, the disk inside is detected and its header
    checked (an unsafe one, or one the inner name contradicts, is refused before the rest is read), and the
    rest may expand only as far as that header says it can need: the policy's largest size for a raw disk, a
    qcow2 (or other format's) file for its virtual size, a .oci archive for the largest disk member the policy
    allows. `want`: the only disk format to accept (the one a one-pass output was chosen for). `where`: the
    directory named when writing fails."""
    label = str(path)
    archive = False
    by_policy = True  # whether the bound is the policy's (a larger --max-size lifts it) or the header's

    def check_header() -> int:
        """Refuse an unsafe disk before the rest of it is written, and bound it by its own header."""
        nonlocal archive, by_policy
        with ByteSource(written, offset=offset) as src:
            if claimed is None and archive_ok and detect(src).archive is Container.TAR:
                archive = True
                return disk_size_limit(policy.max_size) + ARCHIVE_SLACK
            inspection = inspect_source(src, claimed=claimed, name=path, policy=policy, whole=False)
        if claimed is None:
            require_inner_name_agrees(path, inspection.format, partial=True)
        if want is not None and inspection.format is not want:
            raise InputError(f"{label}: the content changed while it was read; it is now {inspection.format.value}")
        require_safe(problems_before_the_end(inspection), label)
        if inspection.format is ImageFormat.RAW:
            return policy.max_size
        by_policy = False
        return disk_size_limit(inspection.virtual_size)

    try:
        with open_decompressed(path, kind, label=label, on_progress=on_progress) as stream:
            size = write_stream_sparse(
                stream,
                fd,
                offset,
                limit=first_bound(policy, claimed, archive_ok=archive_ok),
                too_large=lambda n: expands_past(label, kind, n, by_policy=by_policy),
                after_first_chunk=check_header,
            )
    except STREAM_ERRORS as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise write_failed(e, where or written.parent) from None
        raise damaged(label, kind, e) from None
    return Written(size, archive)


def require_inner_name_agrees(path: Path, content: ImageFormat, *, partial: bool = False) -> None:
    """`disk.qcow2.zst` holding a raw disk is refused as `disk.qcow2` holding one is: the name under the
    compression suffix claims a format as a plain name does. `partial`: only the first chunk is there, and a
    fixed VHD looks raw until its footer, its last 512 bytes, is written (then it is checked again)."""
    inner = Path(inner_name(path))
    if partial and content is ImageFormat.RAW and format_claimed_by_name(inner) is ImageFormat.VHD:
        return
    require_name_agrees(path, content, name=inner)


@contextlib.contextmanager
def decompressed(
    path: Path,
    kind: Container,
    *,
    claimed: ImageFormat | None = None,
    policy: SafetyPolicy = SafetyPolicy(),
    scratch: Path | None = None,
    on_progress: Progress | None = None,
) -> Iterator[Decompressed]:
    """Decompress `path` into a temporary file in `scratch` (the system's temporary directory by default),
    removed afterwards whatever happens (an error, Ctrl-C, a damaged stream), bounded as `decompress_into`
    says. `on_progress` gets the fraction of the compressed file read.

    Free space: where the stream declares its content size (zstd does), `scratch` must have room for it (or the
    bound, if smaller) before anything is written; the others declare nothing in their headers, and running out
    of room while writing is refused as cleanly. Holes cost nothing, so a sparse disk usually needs less."""
    label = str(path)
    declared = declared_size(path, kind)
    if declared is not None:
        bound = first_bound(policy, claimed, archive_ok=True)
        check_free_space(Path(scratch or tempfile.gettempdir(), inner_name(path)), min(declared, bound))
    with scratch_directory(scratch) as tmp:
        content = Path(tmp, inner_name(path))
        fd = os.open(content, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            done = decompress_into(
                path,
                kind,
                fd,
                0,
                written=content,
                claimed=claimed,
                policy=policy,
                where=scratch or Path(tempfile.gettempdir()),
                on_progress=on_progress,
            )
        finally:
            os.close(fd)
        try:
            yield Decompressed(content, kind, done.is_archive)
        except ImagepackError as e:
            e.shown_as(content, label)  # the user gave the compressed file, never the temporary
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
