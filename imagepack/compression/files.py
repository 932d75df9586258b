"""Writing compressed files and decompressing them to files: the library of the `compress` and `decompress`
verbs."""

from __future__ import annotations

import contextlib
import gzip
import os
import sys
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

import zstandard
from isal import igzip

from imagepack.compression.bounded import expands_past
from imagepack.compression.streams import (
    STREAM_ERRORS,
    STREAMS,
    compression_of,
    damaged,
    declared_size,
    inner_name,
    open_decompressed,
)
from imagepack.compression.xzwrite import XzBlockWriter
from imagepack.core.errors import InputError, InvalidValueError
from imagepack.core.openfile import require_regular_file
from imagepack.core.progress import Progress
from imagepack.files.atomic import atomic_output, check_free_space, check_target
from imagepack.files.checksums import OBJECT_PUT_PART_SIZE, Checksums, Digester, HashingWriter
from imagepack.files.sparse import write_stream_sparse
from imagepack.files.writes import write_failed
from imagepack.formats import ByteSource, Container, detect, not_a_disk


class Codec(StrEnum):
    """What `compress` writes; the value is the suffix it adds."""

    ZST = "zst"
    XZ = "xz"
    GZ = "gz"


LEVELS = {Codec.ZST: (1, 22, 3), Codec.XZ: (0, 9, 6), Codec.GZ: (1, 9, 6)}  # lowest, highest, default
ZSTD_FAST_JOB = 4 * 1024**2
READ_CHUNK = 1024**2  # what is read and handed to the encoder at a time; a bigger one only costs memory
# gzip levels 1-3 are ISA-L's own 1-3: four times zlib's speed or more, for 5-10% more bytes than zlib's level 1.
# Nothing in ISA-L comes near zlib's size at its higher levels, which stay zlib's.
ISAL_GZIP_LEVELS = 3
THREADED = (Codec.ZST, Codec.XZ)  # the codecs that compress on several threads
CODEC_STREAMS = {Codec.ZST: Container.ZSTD, Codec.XZ: Container.XZ, Codec.GZ: Container.GZIP}


@dataclass(frozen=True)
class CompressionResult:
    source: Path
    target: Path
    compression: str  # the stream's name: "zstd", "xz", "gzip", "bzip2"
    source_size: int
    size: int
    seconds: float
    checksum: Checksums | None = None  # of the file written, when asked for

    def to_json(self) -> dict[str, object]:
        return {
            "source": str(self.source),
            "target": str(self.target),
            "compression": self.compression,
            "source_size": self.source_size,
            "size": self.size,
            "seconds": round(self.seconds, 3),
            "checksum": self.checksum.to_json() if self.checksum else None,
        }


def parse_codec(name: str) -> Codec:
    wanted = name.strip().lower().removeprefix(".")
    for codec in Codec:
        if wanted in (codec.value, STREAMS[CODEC_STREAMS[codec]]):
            return codec
    raise InvalidValueError(
        f"{name}: not a compression imagepack writes; use one of {' | '.join(c.value for c in Codec)}"
    )


def codec_named(path: Path) -> Codec | None:
    """The codec an output's name asks for by its last suffix (`disk.qcow2.zst`), if it names one."""
    suffix = path.suffix.lower().removeprefix(".")
    return next((codec for codec in Codec if codec.value == suffix), None)


def compress_file(
    source: Path,
    target: Path | None = None,
    *,
    to: Codec = Codec.ZST,
    level: int | None = None,
    threads: int | None = None,
    force: bool = False,
    checksum: bool = False,
    part_size: int = OBJECT_PUT_PART_SIZE,
    on_progress: Progress | None = None,
) -> CompressionResult:
    """Write `source` compressed to `target` (`source` with the codec's suffix by default), whole or not at all.
    zstd runs on `threads` threads (all cores by default) and records the content size and a checksum; xz
    is cut into blocks compressed on `threads` threads, as `xz -T0` does (xzwrite.py), and records a CRC64;
    gzip records its CRC32 and runs on one. With `checksum`, the output's checksums
    (for uploads in parts of `part_size`) are computed from the compressed bytes as they are written."""
    started = time.monotonic()
    require_regular_file(source)
    target = target or source.with_name(f"{source.name}.{to.value}")
    check_settings(to, level=level, threads=threads)
    check_target(target, force=force, inputs=(source,))
    size = os.stat(source).st_size
    digester = Digester(part_size) if checksum else None  # its part size checked before anything is written
    with atomic_output(target) as temp:
        sums = compress_into(
            source, temp, to=to, level=level, threads=threads, digester=digester, on_progress=on_progress
        )
    return CompressionResult(
        source, target, STREAMS[CODEC_STREAMS[to]], size, os.stat(target).st_size, time.monotonic() - started, sums
    )


def check_settings(to: Codec, *, level: int | None, threads: int | None) -> None:
    """Refuse a level the codec has not, and threads for a codec that runs on one."""
    lowest, highest, _ = LEVELS[to]
    if level is not None and not lowest <= level <= highest:
        raise InvalidValueError(f"level {level}: {to.value} takes {lowest} to {highest}")
    if threads is not None and to not in THREADED:
        raise InvalidValueError(f"threads apply to zstd and xz, not {to.value}")
    if threads is not None and threads < 1:
        raise InvalidValueError(f"threads {threads}: give at least one")


def compress_into(
    source: Path,
    out: Path,
    *,
    to: Codec,
    level: int | None = None,
    threads: int | None = None,
    offset: int = 0,
    length: int | None = None,
    digester: Digester | None = None,
    on_progress: Progress | None = None,
) -> Checksums | None:
    """Compress `length` bytes of `source` from `offset` (all of it by default) into the file `out`, which an
    atomic output will give its name: the one compressor behind `compress` and compressed targets. The
    compressed bytes pass through `digester` on their way to the file; returns its checksums."""
    size = os.stat(source).st_size - offset if length is None else length
    with (
        digester or contextlib.nullcontext(),  # its helper thread ends, whatever happens
        open(source, "rb") as src,
        open(out, "wb") as out_file,
        _encoder(
            HashingWriter(out_file, digester) if digester else out_file,  # type: ignore[arg-type]
            to,
            level if level is not None else LEVELS[to][2],
            threads,
            size,
        ) as sink,
    ):
        if isinstance(sink, XzBlockWriter):  # its threads read their own blocks: no input held in between
            done = sink.compress_from(src.fileno(), offset, size, on_progress)
        else:
            done = _feed(src, sink, offset, size, on_progress)
    if done != size:
        raise InputError(f"{source}: ended after {done} of {size} bytes while it was compressed")
    return digester.result() if digester else None


def _feed(src: BinaryIO, sink: BinaryIO, offset: int, size: int, on_progress: Progress | None) -> int:
    """Hand `size` bytes of `src` from `offset` to `sink` a chunk at a time; returns the bytes read."""
    src.seek(offset)
    done = 0
    while done < size and (chunk := src.read(min(READ_CHUNK, size - done))):
        sink.write(chunk)
        done += len(chunk)
        if on_progress is not None:
            on_progress(done / max(size, 1))
    return done


def _encoder(out: BinaryIO, to: Codec, level: int, threads: int | None, size: int) -> BinaryIO | XzBlockWriter:
    if to is Codec.ZST:
        # At the fast levels, jobs of 4 MiB rather than zstd's default 8: each worker holds a few jobs' worth of
        # buffers, and halving them keeps the process under 100 MiB for about 0.02% of size. Higher levels have
        # larger windows, and a job smaller than its window would cost ratio: they keep zstd's default.
        params = zstandard.ZstdCompressionParameters.from_level(
            level,
            threads=threads or len(os.sched_getaffinity(0)),  # one per core we may run on
            job_size=ZSTD_FAST_JOB if level <= 3 else 0,
            write_checksum=1,
            write_content_size=1,
        )
        compressor = zstandard.ZstdCompressor(compression_params=params)
        return compressor.stream_writer(out, size=size, closefd=False)
    if to is Codec.XZ:
        return XzBlockWriter(out, level, threads or len(os.sched_getaffinity(0)))
    if level <= ISAL_GZIP_LEVELS:
        return igzip.GzipFile(fileobj=out, mode="wb", compresslevel=level, mtime=0)  # type: ignore[return-value,no-untyped-call]
    return gzip.GzipFile(fileobj=out, mode="wb", compresslevel=level, mtime=0)  # type: ignore[return-value]


def decompress_file(
    source: Path,
    target: Path | None = None,
    *,
    force: bool = False,
    checksum: bool = False,
    part_size: int = OBJECT_PUT_PART_SIZE,
    on_progress: Progress | None = None,
) -> CompressionResult:
    """Write what the compressed `source` holds to `target` (`source` without its suffix by default), whole or
    not at all, runs of zeroes left as holes. Where the stream declares its size, the room for it is checked
    before anything is written. With `checksum`, the output's checksums are computed from the decompressed
    bytes as they are written."""
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
            raise InvalidValueError(f"{source}: the name has no compression suffix to drop; name the output")
        target = source.with_name(inner_name(source))
    check_target(target, force=force, inputs=(source,))
    declared = declared_size(source, kind)
    if declared is not None:
        check_free_space(target, declared)
    digester = Digester(part_size) if checksum else None
    with atomic_output(target) as temp:
        fd = os.open(temp, os.O_WRONLY | os.O_CLOEXEC)
        try:
            with open_decompressed(source, kind, on_progress=on_progress) as stream:
                written = write_stream_sparse(
                    stream,
                    fd,
                    0,
                    limit=sys.maxsize,
                    too_large=lambda n: expands_past(str(source), kind, n, by_policy=False),
                    digester=digester,
                )
            sums = digester.result() if digester else None
        except STREAM_ERRORS as e:
            if isinstance(e, OSError) and e.errno is not None:
                raise write_failed(e, target.parent, needed=declared, file=target) from None
            raise damaged(source, kind, e) from None
        finally:
            os.close(fd)
            if digester is not None:
                digester.close()
    return CompressionResult(
        source, target, STREAMS[kind], os.stat(source).st_size, written, time.monotonic() - started, sums
    )
