"""The compressed streams imagepack reads, by their magic: which one a file is, its decoder (each checking the
stream's own checksum), and the errors a damaged one raises."""

from __future__ import annotations

import contextlib
import lzma
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, cast

import zstandard
from isal import igzip, isal_zlib

from imagepack.compression.memory import (
    MAX_XZ_MEMORY,
    MAX_ZSTD_WINDOW,
    require_xz_memory,
    require_zstd_window,
    too_much_xz_memory,
    zstd_window,
)
from imagepack.compression.multistream import bzip2_streams, xz_streams
from imagepack.compression.xzblocks import NotParallel, ParallelXzReader, total_size, xz_blocks
from imagepack.core.errors import InputError, UnreadableError
from imagepack.core.openfile import require_regular_file
from imagepack.core.progress import Progress
from imagepack.formats import ByteSource, Container, Detection, ImageFormat, detect, not_a_disk

# The streams imagepack reads, by the name it reports. lz4 is not among them: no lz4 module is a dependency, so
# an lz4 file keeps its refusal with the command that decompresses it.
STREAMS = {Container.ZSTD: "zstd", Container.XZ: "xz", Container.GZIP: "gzip", Container.BZIP2: "bzip2"}
# The suffixes that name a stream: a file called so must be that stream.
NAMED = {".zst": Container.ZSTD, ".zstd": Container.ZSTD, ".xz": Container.XZ, ".gz": Container.GZIP}
NAMED[".bz2"] = Container.BZIP2
SUFFIXES = tuple(NAMED)

ZSTD_READ = 1024**2
_ZSTD_FRAME = 0xFD2FB528
_ZSTD_SKIPPABLE = 0x184D2A50  # the low four bits are free
# What a damaged stream raises from the decoders; OSError with an errno is the temporary's write failing, and
# MemoryError a decoder's allocation failing (under a memory limit: the stream's own demands are bounded first).
ISAL_ERROR = cast(type[Exception], isal_zlib.error)  # its stub declares an instance
STREAM_ERRORS = (
    EOFError,
    OSError,
    zlib.error,
    ISAL_ERROR,
    lzma.LZMAError,
    zstandard.ZstdError,
    ValueError,
    MemoryError,
)


def compression_of(path: Path) -> Container | None:
    """The stream `path` is, if it is nothing but one we read (by its bytes). A name that says a stream
    (`disk.raw.xz`) over content that is not that stream is refused, never read as what the content looks like:
    the stream's own tool refuses it too."""
    require_regular_file(path)
    with ByteSource(path) as src:
        return stream_in(path, detect(src))


def stream_in(path: Path, found: Detection) -> Container | None:
    """compression_of, from what detection already found in `path`'s first bytes."""
    kind = None
    if not found.formats and not found.foreign and len(found.containers) == 1 and found.containers[0] in STREAMS:
        kind = found.containers[0]
    named = NAMED.get(path.suffix.lower())
    if named is not None and kind is not named:
        raise _not_the_named_stream(path, named, found)
    return kind


def _not_the_named_stream(path: Path, named: Container, found: Detection) -> InputError:
    if found.ambiguous:
        return not_a_disk(found, path)
    what = "data in no format imagepack knows" if found.content is ImageFormat.RAW else found.describe()
    if found.content not in (None, ImageFormat.RAW):
        what = f"a {what} disk image"
    name = STREAMS[named]
    article = "an" if name == "xz" else "a"
    return InputError(
        f"{path}: the name says {name} but the content is not {article} {name} stream (it is {what}); "
        "refusing it rather than reading it as something else: rename it to what it holds",
        code="input.name-disagrees",
    )


def inner_name(path: Path) -> str:
    """The file name without its compression suffix: what the decompressed file would be called."""
    return path.stem if path.suffix.lower() in SUFFIXES and path.stem else path.name


def damaged(label: object, kind: Container, why: object) -> UnreadableError:
    if isinstance(why, MemoryError) or "Memory usage limit" in str(why):
        return too_much_xz_memory(label, None) if kind is Container.XZ else _no_memory(label, kind)
    return UnreadableError(
        f"{label}: the {STREAMS[kind]} stream is damaged or cut short ({why})", code="input.compressed-damaged"
    )


def _no_memory(label: object, kind: Container) -> UnreadableError:
    return UnreadableError(
        f"{label}: decoding this {STREAMS[kind]} stream needs more memory than is available to imagepack",
        code="input.compressed-memory",
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
        declared = int.from_bytes(head[at : at + size_bytes], "little") + (256 if size_bytes == 2 else 0)
        require_zstd_window(zstd_window(descriptor, head[5], declared), label, pos)
        total += declared
        known = known and size_bytes > 0
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
    path: Path,
    kind: Container,
    *,
    label: object = None,
    on_progress: Progress | None = None,
    parallel: bool = True,
) -> Iterator[BinaryIO]:
    """The content of a compressed file, read forward in bounded pieces. Every decoder here checks its stream's
    own checksum (gzip's CRC, bzip2's, xz's and zstd's when the stream carries one) and reads multi-member
    files whole, refusing what the format's own tool refuses (anything after the last stream but padding).
    `on_progress` gets the fraction of the compressed file read. An xz file of several blocks is decoded on
    every core, unless `parallel` is off (for a look at the first bytes only, which would not wait for the
    blocks decoded ahead)."""
    with open(path, "rb") as raw:
        if kind is Container.ZSTD:
            zstd_content_size(raw.fileno(), label or path)
        if kind is Container.XZ:
            require_xz_memory(raw.fileno(), label or path)
        if parallel and kind is Container.XZ and (threads := len(os.sched_getaffinity(0))) > 1:
            try:
                blocks = xz_blocks(raw.fileno())
            except NotParallel:
                pass  # one block, or not a file the walk takes as whole: the sequential decoder reads it
            else:
                with ParallelXzReader(raw.fileno(), blocks, threads, on_progress) as reader:
                    yield reader  # type: ignore[misc]
                return
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
        # Reading the compressed file in MiBs rather than the library's 128 KiB costs some 15% less time per byte.
        return zstandard.ZstdDecompressor(max_window_size=MAX_ZSTD_WINDOW).stream_reader(
            raw, read_size=ZSTD_READ, read_across_frames=True, closefd=False
        )
    if kind is Container.XZ:
        return xz_streams(raw, memlimit=MAX_XZ_MEMORY)  # type: ignore[return-value]
    if kind is Container.GZIP:
        # ISA-L's inflate: twice zlib's speed, the same checks (CRC32 and size of every member, trailing bytes).
        return igzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value,no-untyped-call]
    if kind is Container.BZIP2:
        return bzip2_streams(raw)  # type: ignore[return-value]
    raise ValueError(f"not a stream imagepack reads: {kind}")


def peek(path: Path, kind: Container, size: int) -> bytes:
    """The first `size` bytes of the content (fewer if it is shorter), decompressed into memory."""
    data = bytearray()
    try:
        with open_decompressed(path, kind, parallel=False) as stream:
            while len(data) < size and (chunk := stream.read(size - len(data))):
                data += chunk
    except STREAM_ERRORS as e:
        raise damaged(path, kind, e) from None
    return bytes(data)


def declared_size(path: Path, kind: Container) -> int | None:
    """The content size the stream's headers declare, where the format has them (zstd's frame headers, xz's
    index at the end of each stream); None otherwise."""
    if kind not in (Container.ZSTD, Container.XZ):
        return None
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return zstd_content_size(fd, path) if kind is Container.ZSTD else total_size(fd)
    finally:
        os.close(fd)
