"""GNU sparse members of an untrusted tar, checked as GNU tar reads them and as Python's tarfile will: the map of
an old-GNU member (in its header and extension blocks), of a PAX 0.0 or 0.1 member (in its PAX records) or of a
PAX 1.0 member (at the start of its data). A map is taken only when its extents are in order, do not overlap,
lie inside the member's real size, and their lengths add up to the bytes stored: anything else would have
tarfile read data GNU tar calls invalid, drop some, or read the next header from the wrong place."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from imagepack.core.errors import ArchiveError, UnreadableError

BLOCK = 512
MAX_EXTENTS = 64 * 1024  # GNU tar stores one per data run; a disk with more runs than this is not a real one
MAX_MAP_BYTES = MAX_EXTENTS * 2 * 21 + 21  # a PAX 1.0 map: its count, then an offset and a size per extent
Extent = tuple[int, int]  # (where in the file, bytes stored for it)
_PAX_KEYS_BY_VERSION = {
    "0.0": {b"GNU.sparse.size", b"GNU.sparse.numblocks", b"GNU.sparse.offset", b"GNU.sparse.numbytes"},
    "0.1": {b"GNU.sparse.size", b"GNU.sparse.numblocks", b"GNU.sparse.map", b"GNU.sparse.name"},
    "1.0": {b"GNU.sparse.major", b"GNU.sparse.minor", b"GNU.sparse.realsize", b"GNU.sparse.name"},
}


@dataclass(frozen=True)
class SparseMap:
    real_size: int
    extents: list[Extent]


def number(value: bytes, what: str, label: object) -> int:
    """A decimal in ASCII digits, at most 20 of them (a 64-bit size)."""
    if not value.isdigit() or len(value) > 20:
        raise UnreadableError(f"{label}: {what} {value[:30]!r} is not a number")
    return int(value)


def _octal_field(field: bytes, label: object) -> int:
    """A tar number field as tarfile reads it (octal up to a NUL, or base-256), where both tars agree on it."""
    if field[:1] == b"\x80":
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip(b" ")
    if field[:1] == b"\xff" or (text and not all(48 <= c <= 55 for c in text)):
        raise UnreadableError(f"{label}: damaged number {field!r} in a GNU sparse map")
    return int(text or b"0", 8)


def old_gnu_slots(block: bytes, start: int, count: int, label: object) -> tuple[list[Extent], bool]:
    """The extents in `count` 24-byte slots from `start`, and whether the map ended in them (an empty slot).
    Every slot after the end must be empty too: GNU tar stops at the first, tarfile reads on."""
    extents: list[Extent] = []
    ended = False
    for i in range(count):
        slot = block[start + 24 * i : start + 24 * (i + 1)]
        if slot[12] == 0:  # GNU tar: a size field that starts with NUL ends the map
            ended = True
            if any(slot):
                raise UnreadableError(f"{label}: GNU sparse map slot with an offset but no size")
            continue
        if ended:
            raise ArchiveError(f"{label}: GNU sparse map continues after its end; refusing it")
        extents.append((_octal_field(slot[:12], label), _octal_field(slot[12:], label)))
    return extents, ended


def old_gnu_real_size(header: bytes, label: object) -> int:
    return _octal_field(header[483:495], label)


def pax_sparse_version(records: dict[bytes, bytes], keys: set[bytes], label: object) -> str | None:
    """Which GNU sparse format a PAX header's records declare, chosen as tarfile chooses; None for no sparse
    record. Records of another version mixed in are refused: the two readers would each take a different one."""
    sparse_keys = {k for k in keys if k.startswith(b"GNU.sparse.")}
    if not sparse_keys:
        return None
    if b"GNU.sparse.map" in records:
        version = "0.1"
    elif b"GNU.sparse.size" in records:
        version = "0.0"
    elif records.get(b"GNU.sparse.major") == b"1" and records.get(b"GNU.sparse.minor") == b"0":
        version = "1.0"
    else:
        raise ArchiveError(f"{label}: PAX header of a GNU sparse format neither tar reads alike; refusing it")
    if not sparse_keys <= _PAX_KEYS_BY_VERSION[version]:
        raise ArchiveError(f"{label}: PAX header mixes GNU sparse formats; refusing it")
    if b"size" in records:
        raise ArchiveError(f"{label}: a GNU sparse PAX header with a size record; refusing an ambiguous member")
    return version


def pax_0x_map(version: str, records: dict[bytes, bytes], pairs: list[tuple[bytes, bytes]], label: object) -> SparseMap:
    """The map of a PAX 0.0 member (offset and numbytes records, in order) or 0.1 (one map record)."""
    real = number(records[b"GNU.sparse.size"], "GNU.sparse.size", label)
    if version == "0.1":
        numbers = [number(n, "GNU.sparse.map entry", label) for n in records[b"GNU.sparse.map"].split(b",")]
    else:
        wanted = (b"GNU.sparse.offset", b"GNU.sparse.numbytes")
        fields = [(k, v) for k, v in pairs if k in wanted]
        if [k for k, _ in fields] != [wanted[i % 2] for i in range(len(fields))]:
            raise ArchiveError(f"{label}: GNU sparse offset and numbytes records out of turn; refusing it")
        numbers = [number(v, k.decode(), label) for k, v in fields]
    if len(numbers) % 2:
        raise ArchiveError(f"{label}: GNU sparse map with an offset and no size; refusing it")
    extents = list(zip(numbers[::2], numbers[1::2], strict=True))
    stated = records.get(b"GNU.sparse.numblocks")
    if stated is not None and number(stated, "GNU.sparse.numblocks", label) != len(extents):
        raise ArchiveError(f"{label}: GNU sparse map holds another number of extents than it says")
    return SparseMap(real, extents)


def pax_10_map(
    records: dict[bytes, bytes], read: Callable[[int], bytes], stored: int, label: object
) -> tuple[SparseMap, int]:
    """The map at the start of a PAX 1.0 member's data (its count on the first line, then an offset and a size
    per line, padded to a block), read a block at a time with `read`, and the bytes it took."""
    real = number(records.get(b"GNU.sparse.realsize", b""), "GNU.sparse.realsize", label)
    text, consumed = b"", 0
    numbers: list[int] = []
    while not numbers or len(numbers) < 1 + 2 * numbers[0]:
        if b"\n" not in text:
            if len(text) > 20:
                raise UnreadableError(f"{label}: malformed GNU sparse 1.0 map")
            if consumed + BLOCK > min(stored, MAX_MAP_BYTES):
                raise ArchiveError(f"{label}: GNU sparse 1.0 map runs past its member; refusing it")
            block = read(BLOCK)
            if len(block) < BLOCK:
                raise UnreadableError(f"{label}: the archive ends inside a sparse map; it is truncated")
            consumed += BLOCK
            text += block
            continue
        line, text = text.split(b"\n", 1)
        numbers.append(number(line, "GNU sparse 1.0 map entry", label))
        if numbers[0] > MAX_EXTENTS:
            raise ArchiveError(f"{label}: GNU sparse map of {numbers[0]} extents; refusing it")
    return SparseMap(real, list(zip(numbers[1::2], numbers[2::2], strict=True))), consumed


def check_map(found: SparseMap, stored: int, name: str, label: object) -> None:
    """Refuse a map GNU tar calls invalid, or one tarfile would read differently from GNU tar: extents out of
    order or overlapping, past the real size, an empty one before the last, or lengths that do not add up to
    the `stored` bytes."""
    if len(found.extents) > MAX_EXTENTS:
        raise ArchiveError(f"{label}: member '{name}' has a sparse map of more than {MAX_EXTENTS} extents")
    end = total = 0
    for i, (offset, size) in enumerate(found.extents):
        if offset < end:
            problem = "extents out of order or overlapping"
        elif offset + size > found.real_size:
            problem = f"data past its real size of {found.real_size} bytes"
        elif size == 0 and i != len(found.extents) - 1:
            problem = "an empty extent inside it"
        else:
            end, total = offset + size, total + size
            continue
        raise ArchiveError(f"{label}: member '{name}' has an invalid sparse map ({problem}); refusing it")
    if total != stored:
        raise ArchiveError(
            f"{label}: member '{name}' has an invalid sparse map (it maps {total} bytes, the archive stores "
            f"{stored}); refusing it"
        )
