"""What Object Storage will report for a file: its SHA-256, the `Content-MD5` of a single-part upload and the
`opc-multipart-md5` of a multipart one, all fed from one pass over the bytes (a read, or the writer's own)."""

from __future__ import annotations

import base64
import errno
import hashlib
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from imagepack.core.errors import InputError, InvalidValueError
from imagepack.core.progress import Progress

MIB = 1024**2
OBJECT_PUT_PART_SIZE = 128 * MIB  # `oci os object put --part-size` default (MiB), the SDK's DEFAULT_PART_SIZE
MAX_PART_SIZE = 50 * 1024**3  # Object Storage's largest part
MAX_PARTS = 10_000  # and its most parts per upload
READ_CHUNK = 8 * MIB
_THREADED_MIN = 256 * 1024  # below this a hand-off to the helper thread costs more than it saves


def uploads_in_parts(size: int, part_size: int = OBJECT_PUT_PART_SIZE) -> bool:
    """Whether `oci os object put` (without --no-multipart) uploads a file of `size` bytes in parts: the SDK's
    UploadManager does when the file is larger than the part size, so a file of exactly one part goes whole."""
    return size > part_size


def part_count(size: int, part_size: int) -> int:
    return max(1, -(-size // part_size))


def check_part_size(part_size: int, *, size: int | None = None) -> None:
    """Refuse a part size Object Storage or `oci os object put` would not take, saying what to use instead."""
    if part_size <= 0:
        raise InvalidValueError("a part size of 0 cannot split a file; use the default, 128MiB")
    if part_size % MIB:
        whole = max(1, part_size // MIB)
        raise InvalidValueError(
            f"a part size of {part_size} bytes is not a whole number of MiB, which oci os object put takes; "
            f"use {whole}MiB"
        )
    if part_size > MAX_PART_SIZE:
        raise InvalidValueError(
            f"a part size of {part_size // MIB}MiB exceeds Object Storage's 50GiB; use 50GiB or less"
        )
    if size is not None and uploads_in_parts(size, part_size) and part_count(size, part_size) > MAX_PARTS:
        least = -(-size // MAX_PARTS)
        least_mib = -(-least // MIB)
        raise InvalidValueError(
            f"a part size of {part_size // MIB}MiB splits {size} bytes into {part_count(size, part_size)} parts, "
            f"more than Object Storage's {MAX_PARTS}; use {least_mib}MiB or more"
        )


@dataclass(frozen=True)
class Checksums:
    """The checksums of `size` bytes: `sha256` in hex (as sha256sum prints it), `md5` in base64 (the
    Content-MD5 of a single-part upload), and for a file that uploads in parts the `multipart_md5` Object
    Storage shows, base64(MD5(MD5(part 1) || ... || MD5(part N))) + "-N"."""

    size: int
    sha256: str
    md5: str
    part_size: int
    parts: int
    multipart_md5: str | None

    @property
    def md5_hex(self) -> str:
        """The MD5 as md5sum prints it."""
        return base64.b64decode(self.md5).hex()

    def to_json(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "sha256": self.sha256,
            "md5": self.md5,
            "md5_hex": self.md5_hex,
            "part_size": self.part_size,
            "parts": self.parts,
            "multipart_md5": self.multipart_md5,
        }


class Digester:
    """Feeds every byte given to `update` to SHA-256, to the whole file's MD5 and to the current part's MD5.

    The whole MD5 runs on a helper thread (hashlib lets go of the GIL over large buffers) while the caller's
    thread does the SHA-256 and the part MD5s, so the two cores share the work. The first part needs no MD5 of
    its own: it is the whole MD5's state where part 1 ends, so a single-part file costs one MD5, not two."""

    def __init__(self, part_size: int = OBJECT_PUT_PART_SIZE, *, threaded: bool = True) -> None:
        check_part_size(part_size)
        self.part_size = part_size
        self._sha256 = hashlib.sha256()
        self._md5 = hashlib.md5()
        self._part = hashlib.md5()
        self._part_digests: list[bytes] = []
        self._in_part = 0  # bytes of the current part so far
        self._size = 0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="imagepack-md5") if threaded else None
        self._pending: Future[None] | None = None

    @property
    def size(self) -> int:
        """Bytes given so far."""
        return self._size

    def update(self, data: bytes | bytearray | memoryview, *, held: bool = False) -> None:
        """Hash `data`. A mutable buffer is hashed before this returns, unless the caller says it is `held`:
        left unchanged until the next update (or result), so its MD5 may go on while the caller does more."""
        view = memoryview(data).cast("B")
        while view:
            take = min(len(view), self.part_size - self._in_part)
            self._feed(view[:take], keep=held or isinstance(data, bytes))
            view = view[take:]
            self._in_part += take
            self._size += take
            if self._in_part == self.part_size:
                self._end_part()

    def _feed(self, piece: memoryview, *, keep: bool) -> None:
        self._wait()
        if self._pool is not None and len(piece) >= _THREADED_MIN:
            self._pending = self._pool.submit(self._md5.update, piece)
            if not keep:  # the caller may reuse a mutable buffer once we return
                self._wait()
        else:
            self._md5.update(piece)
        self._sha256.update(piece)
        if self._part_digests:
            self._part.update(piece)

    def _wait(self) -> None:
        if self._pending is not None:
            self._pending.result()
            self._pending = None

    def _end_part(self) -> None:
        if not self._part_digests:
            self._wait()
            self._part_digests.append(self._md5.copy().digest())
        else:
            self._part_digests.append(self._part.digest())
            self._part = hashlib.md5()
        self._in_part = 0

    def result(self) -> Checksums:
        """The checksums of everything given so far; the digester is finished afterwards."""
        self._wait()
        self.close()
        check_part_size(self.part_size, size=self._size)
        digests = self._part_digests + ([self._part.digest()] if self._in_part and self._part_digests else [])
        multipart = None
        if uploads_in_parts(self._size, self.part_size):
            multipart = f"{_b64(hashlib.md5(b''.join(digests)).digest())}-{len(digests)}"
        return Checksums(
            size=self._size,
            sha256=self._sha256.hexdigest(),
            md5=_b64(self._md5.digest()),
            part_size=self.part_size,
            parts=part_count(self._size, self.part_size),
            multipart_md5=multipart,
        )

    def __enter__(self) -> Digester:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


class HashingWriter:
    """A binary file that passes what is written to it on to `raw`, feeding `digester` on the way: what a
    writer in Python (a compressor) puts in the file is checksummed without reading it back."""

    def __init__(self, raw: BinaryIO, digester: Digester) -> None:
        self.raw = raw
        self.digester = digester

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """All of `data`, however many writes `raw` takes for it: a short write is finished, never dropped."""
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            written = self.raw.write(view[done:])
            if written is None:
                written = len(view) - done  # a buffered file takes all it is given, or raises
            if written <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            done += written
        self.digester.update(data)  # bytes as given can be hashed later
        return len(view)

    def flush(self) -> None:
        self.raw.flush()

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.raw.tell()

    @property
    def closed(self) -> bool:
        return self.raw.closed


def checksum_file(
    path: Path, *, part_size: int = OBJECT_PUT_PART_SIZE, threaded: bool = True, on_progress: Progress | None = None
) -> Checksums:
    """The checksums of the file at `path`, in one read. A hole in a sparse file reads as zeroes: Object
    Storage receives, and checksums, the full logical bytes."""
    try:
        file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed below, after the size check
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror}") from None
    with file:
        size = os.fstat(file.fileno()).st_size
        check_part_size(part_size, size=size)
        digester = Digester(part_size, threaded=threaded)
        try:
            while chunk := file.read(READ_CHUNK):
                digester.update(chunk)  # a new bytes object each time, so the helper may still be hashing it
                if on_progress is not None:
                    on_progress(min(digester.size / max(size, 1), 1.0))
        finally:
            digester.close()
        return digester.result()
