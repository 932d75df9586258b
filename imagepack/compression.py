"""Compressed files (zstd, xz, gzip, bzip2), recognised by their magic, never by their name. As inputs they are
decompressed once into a sparse temporary file, bounded by what the disk inside says it can need, then read like
any other input; `compress_file` and `decompress_file` write them (the `compress` and `decompress` verbs)."""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import os
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

import zstandard

from imagepack.atomic import atomic_output, check_free_space, check_target
from imagepack.errors import ImagepackError, InputError, OutputError, UnreadableError, UsageError
from imagepack.formats import (
    ByteSource,
    Container,
    ImageFormat,
    Inspection,
    SafetyPolicy,
    detect,
    inspect_source,
    not_a_disk,
    require_safe,
)
from imagepack.oci.archive import MAX_METADATA, disk_size_limit
from imagepack.problems import Problem, Remedy
from imagepack.progress import Progress
from imagepack.source import require_regular_file
from imagepack.sparse import STREAM_CHUNK, write_stream_sparse

# The streams imagepack reads, by the name it reports. lz4 is not among them: no lz4 module is a dependency, so
# an lz4 file keeps its refusal with the command that decompresses it.
STREAMS = {Container.ZSTD: "zstd", Container.XZ: "xz", Container.GZIP: "gzip", Container.BZIP2: "bzip2"}
SUFFIXES = (".zst", ".zstd", ".xz", ".gz", ".bz2")
ARCHIVE_SLACK = MAX_METADATA + 64 * 1024  # a .oci's tar: its disk member, the metadata, headers and padding

_ZSTD_FRAME = 0xFD2FB528
_ZSTD_SKIPPABLE = 0x184D2A50  # the low four bits are free
# What a damaged stream raises from the decoders; OSError with an errno is the temporary's write failing.
STREAM_ERRORS = (EOFError, OSError, zlib.error, lzma.LZMAError, zstandard.ZstdError, ValueError)


def compression_of(path: Path) -> Container | None:
    """The stream `path` is, if it is nothing but one we read (by its bytes)."""
    with ByteSource(path) as src:
        found = detect(src)
    if found.formats or found.foreign or len(found.containers) != 1 or found.containers[0] not in STREAMS:
        return None
    return found.containers[0]


def inner_name(path: Path) -> str:
    """The file name without its compression suffix: what the decompressed file would be called."""
    return path.stem if path.suffix.lower() in SUFFIXES and path.stem else path.name


def damaged(label: object, kind: Container, why: object) -> UnreadableError:
    return UnreadableError(
        f"{label}: the {STREAMS[kind]} stream is damaged or cut short ({why})", code="input.compressed-damaged"
    )


def zstd_content_size(fd: int, label: object) -> int | None:
    """Walk a zstd file's frame and block headers, without decompressing: the decoder reads a stream cut inside
    a frame as if it ended there, this walk does not. Returns the content size the frames declare (None when
    one does not), or raises when the stream is cut short or is not zstd all along."""
    size = os.fstat(fd).st_size
    pos, total, known = 0, 0, True
    while pos < size:
        head = os.pread(fd, 18, pos)
        if len(head) < 8:
            raise damaged(label, Container.ZSTD, f"it ends inside a frame header at byte {pos}")
        magic = int.from_bytes(head[:4], "little")
        if magic & 0xFFFFFFF0 == _ZSTD_SKIPPABLE:
            pos += 8 + int.from_bytes(head[4:8], "little")
            continue
        if magic != _ZSTD_FRAME:
            raise damaged(label, Container.ZSTD, f"no zstd frame at byte {pos}")
        descriptor = head[4]
        single_segment = descriptor >> 5 & 1
        at = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 3]
        size_bytes = (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
        if size_bytes:
            declared = int.from_bytes(head[at : at + size_bytes], "little")
            total += declared + (256 if size_bytes == 2 else 0)
        else:
            known = False
        pos += at + size_bytes
        while True:
            block = os.pread(fd, 3, pos)
            if len(block) < 3:
                raise damaged(label, Container.ZSTD, f"it ends inside a frame at byte {pos}")
            value = int.from_bytes(block, "little")
            kind = value >> 1 & 3
            if kind == 3:
                raise damaged(label, Container.ZSTD, f"reserved block type at byte {pos}")
            pos += 3 + (1 if kind == 1 else value >> 3)  # an RLE block holds one byte, repeated
            if value & 1:
                break
        pos += 4 if descriptor >> 2 & 1 else 0  # the content checksum
    if pos > size:
        raise damaged(label, Container.ZSTD, f"it ends inside a frame, at byte {size} of {pos}")
    return total if known else None


@contextlib.contextmanager
def open_decompressed(
    path: Path, kind: Container, *, label: object = None, on_progress: Progress | None = None
) -> Iterator[BinaryIO]:
    """The content of a compressed file, read forward in bounded pieces. Every decoder here checks its stream's
    own checksum (gzip's CRC, xz's and zstd's when the stream carries one) and reads multi-member files.
    `on_progress` gets the fraction of the compressed file read."""
    with open(path, "rb") as raw:
        if kind is Container.ZSTD:
            zstd_content_size(raw.fileno(), label or path)
        source: BinaryIO = raw if on_progress is None else _ProgressReader(raw, on_progress)  # type: ignore[assignment]
        with _decoder(source, kind) as stream:
            yield stream


class _ProgressReader:
    """A file read forward that reports how far it is."""

    def __init__(self, raw: BinaryIO, on_progress: Progress) -> None:
        self.raw = raw
        self.size = max(os.fstat(raw.fileno()).st_size, 1)
        self.on_progress = on_progress

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.on_progress(min(self.raw.tell() / self.size, 1.0))
        return data

    def readable(self) -> bool:
        return True


def _decoder(raw: BinaryIO, kind: Container) -> BinaryIO:
    if kind is Container.ZSTD:
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=False)
    if kind is Container.XZ:
        return lzma.LZMAFile(raw)  # type: ignore[return-value]
    if kind is Container.GZIP:
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if kind is Container.BZIP2:
        return bz2.BZ2File(raw)  # type: ignore[return-value]
    raise ValueError(f"not a stream imagepack reads: {kind}")


def declared_size(path: Path, kind: Container) -> int | None:
    """The content size the stream's headers declare, where the format has them (zstd); None otherwise."""
    if kind is not Container.ZSTD:
        return None
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return zstd_content_size(fd, path)
    finally:
        os.close(fd)


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
    with tempfile.TemporaryDirectory(prefix=".imagepack-", dir=scratch) as tmp:
        content = Path(tmp, inner_name(path))
        if declared is not None:
            check_free_space(content, min(declared, base))
        archive = False

        def check_header() -> int:
            """Refuse an unsafe disk before the rest of it is written, and bound it by its own header."""
            nonlocal archive
            with ByteSource(content) as src:
                if claimed is None and detect(src).archive is Container.TAR:
                    archive = True
                    return disk_size_limit(policy.max_size) + ARCHIVE_SLACK
                inspection = inspect_source(src, claimed=claimed, name=path, policy=policy)
            require_safe(problems_before_the_end(inspection), label)
            return policy.max_size if inspection.format is ImageFormat.RAW else disk_size_limit(inspection.virtual_size)

        fd = os.open(content, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with open_decompressed(path, kind, label=label) as stream:
                write_stream_sparse(
                    stream,
                    fd,
                    0,
                    limit=base,
                    too_large=lambda n: _too_large(label, kind, n, raw=not archive),
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


def _too_large(label: str, kind: Container, limit: int, *, raw: bool) -> InputError:
    return InputError(
        f"{label}: the {STREAMS[kind]} stream expands past {limit} bytes; refusing it",
        code="input.compressed-too-large",
        remedy=Remedy.RAISE_MAX_SIZE if raw else None,
    )


# --- writing -------------------------------------------------------------------------------------------


class Codec(StrEnum):
    """What `compress` writes; the value is the suffix it adds."""

    ZST = "zst"
    XZ = "xz"
    GZ = "gz"


LEVELS = {Codec.ZST: (1, 22, 3), Codec.XZ: (0, 9, 6), Codec.GZ: (1, 9, 6)}  # lowest, highest, default
CODEC_STREAMS = {Codec.ZST: Container.ZSTD, Codec.XZ: Container.XZ, Codec.GZ: Container.GZIP}


@dataclass(frozen=True)
class CompressionResult:
    source: Path
    target: Path
    compression: str  # the stream's name: "zstd", "xz", "gzip", "bzip2"
    source_size: int
    size: int
    seconds: float

    def to_json(self) -> dict[str, object]:
        return {
            "source": str(self.source),
            "target": str(self.target),
            "compression": self.compression,
            "source_size": self.source_size,
            "size": self.size,
            "seconds": round(self.seconds, 3),
        }


def parse_codec(name: str) -> Codec:
    wanted = name.strip().lower().removeprefix(".")
    for codec in Codec:
        if wanted in (codec.value, STREAMS[CODEC_STREAMS[codec]]):
            return codec
    raise UsageError(f"{name}: not a compression imagepack writes; use one of {' | '.join(c.value for c in Codec)}")


def compress_file(
    source: Path,
    target: Path | None = None,
    *,
    to: Codec = Codec.ZST,
    level: int | None = None,
    threads: int | None = None,
    force: bool = False,
    on_progress: Progress | None = None,
) -> CompressionResult:
    """Write `source` compressed to `target` (`source` with the codec's suffix by default), whole or not at all.
    zstd runs on `threads` threads (all cores by default) and records the content size and a checksum; xz
    records a CRC64, gzip its CRC32. `threads` applies to zstd only."""
    started = time.monotonic()
    require_regular_file(source)
    target = target or source.with_name(f"{source.name}.{to.value}")
    lowest, highest, default = LEVELS[to]
    if level is not None and not lowest <= level <= highest:
        raise UsageError(f"level {level}: {to.value} takes {lowest} to {highest}")
    if threads is not None and to is not Codec.ZST:
        raise UsageError(f"threads apply to zstd only, not {to.value}")
    if threads is not None and threads < 1:
        raise UsageError(f"threads {threads}: give at least one")
    check_target(target, force=force, inputs=(source,))
    size = os.stat(source).st_size
    with (
        atomic_output(target) as temp,
        open(source, "rb") as src,
        open(temp, "wb") as out,
        _encoder(out, to, level if level is not None else default, threads, size) as sink,
    ):
        done = 0
        while chunk := src.read(STREAM_CHUNK):
            sink.write(chunk)
            done += len(chunk)
            if on_progress is not None:
                on_progress(done / max(size, 1))
    return CompressionResult(
        source, target, STREAMS[CODEC_STREAMS[to]], size, os.stat(target).st_size, time.monotonic() - started
    )


def _encoder(out: BinaryIO, to: Codec, level: int, threads: int | None, size: int) -> BinaryIO:
    if to is Codec.ZST:
        compressor = zstandard.ZstdCompressor(
            level=level,
            threads=threads or -1,  # -1: one per core
            write_checksum=True,
            write_content_size=True,
        )
        return compressor.stream_writer(out, size=size, closefd=False)
    if to is Codec.XZ:
        return lzma.LZMAFile(out, "wb", preset=level, check=lzma.CHECK_CRC64)  # type: ignore[return-value]
    return gzip.GzipFile(fileobj=out, mode="wb", compresslevel=level, mtime=0)  # type: ignore[return-value]


def decompress_file(
    source: Path, target: Path | None = None, *, force: bool = False, on_progress: Progress | None = None
) -> CompressionResult:
    """Write what the compressed `source` holds to `target` (`source` without its suffix by default), whole or
    not at all, runs of zeroes left as holes. Where the stream declares its size, the room for it is checked
    before anything is written."""
    started = time.monotonic()
    require_regular_file(source)
    kind = compression_of(source)
    if kind is None:
        with ByteSource(source) as src:
            found = detect(src)
        if any(c in found.containers for c in STREAMS) or not found.containers:
            raise InputError(f"{source}: not a zstd, xz, gzip or bzip2 file", code="input.not-compressed")
        raise not_a_disk(found, source)
    if target is None:
        if inner_name(source) == source.name:
            raise UsageError(f"{source}: the name has no compression suffix to drop; name the output")
        target = source.with_name(inner_name(source))
    check_target(target, force=force, inputs=(source,))
    declared = declared_size(source, kind)
    if declared is not None:
        check_free_space(target, declared)
    with atomic_output(target) as temp:
        fd = os.open(temp, os.O_WRONLY | os.O_CLOEXEC)
        try:
            with open_decompressed(source, kind, on_progress=on_progress) as stream:
                written = write_stream_sparse(
                    stream, fd, 0, limit=sys.maxsize, too_large=lambda n: _too_large(str(source), kind, n, raw=False)
                )
        except STREAM_ERRORS as e:
            if isinstance(e, OSError) and e.errno is not None:
                raise OutputError(f"{target}: writing failed: {e.strerror}; nothing was written") from None
            raise damaged(source, kind, e) from None
        finally:
            os.close(fd)
    return CompressionResult(
        source, target, STREAMS[kind], os.stat(source).st_size, written, time.monotonic() - started
    )
