"""Hand-made GNU sparse tar members, lying or not, in each format GNU tar reads: old GNU (the map in the header
and its extension blocks) and PAX 0.0, 0.1 and 1.0 (the map in PAX records, or at the start of the data)."""

from __future__ import annotations

import tarfile

BLOCK = 512
Extent = tuple[int, int]  # (offset in the file, bytes stored for it)


def _padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def _octal(value: int, width: int) -> bytes:
    """Octal where it fits, else GNU's base-256 (a first byte of 0x80)."""
    if value < 8 ** (width - 1):
        return f"{value:0{width - 1}o}".encode() + b"\0"
    return b"\x80" + value.to_bytes(width - 1, "big")


def _header(
    name: str, size: int, kind: bytes, *, magic: bytes = b"ustar\x0000", extra: dict[int, bytes] | None = None
) -> bytearray:
    block = bytearray(BLOCK)
    block[0 : len(name)] = name.encode()
    block[100:108] = _octal(0o644, 8)
    block[108:116] = _octal(0, 8)
    block[116:124] = _octal(0, 8)
    block[124:136] = _octal(size, 12)
    block[136:148] = _octal(0, 12)
    block[156:157] = kind
    block[257:265] = magic
    for at, value in (extra or {}).items():
        block[at : at + len(value)] = value
    block[148:156] = b" " * 8
    block[148:156] = f"{sum(block):06o}".encode() + b"\0 "
    return block


def _entry(offset: int, numbytes: int) -> bytes:
    return _octal(offset, 12) + _octal(numbytes, 12)


def old_gnu(name: str, real_size: int, extents: list[Extent], data: bytes) -> bytes:
    """An old-GNU sparse member ('S'): four extents in the header, the rest in extension blocks of 21."""
    head, rest = extents[:4], extents[4:]
    extra = {386 + 24 * i: _entry(*e) for i, e in enumerate(head)}
    extra[482] = b"\1" if rest else b"\0"
    extra[483] = _octal(real_size, 12)
    out = bytes(_header(name, len(data), b"S", magic=b"ustar  \0", extra=extra))
    while rest:
        chunk, rest = rest[:21], rest[21:]
        block = bytearray(BLOCK)
        for i, e in enumerate(chunk):
            block[24 * i : 24 * i + 24] = _entry(*e)
        block[504] = 1 if rest else 0
        out += bytes(block)
    return out + _padded(data)


def _pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    length = len(body) + 1
    while len(str(length).encode() + body) != length:
        length += 1
    return str(length).encode() + body


def pax(version: str, name: str, real_size: int, extents: list[Extent], data: bytes) -> bytes:
    """A PAX sparse member of GNU's format `version` ("0.0", "0.1" or "1.0")."""
    records = [("GNU.sparse.name", name)] if version != "0.0" else []
    if version == "1.0":
        records += [("GNU.sparse.major", "1"), ("GNU.sparse.minor", "0"), ("GNU.sparse.realsize", str(real_size))]
        numbers = [len(extents)] + [n for e in extents for n in e]
        data = _padded("".join(f"{n}\n" for n in numbers).encode()) + data
    else:
        records.append(("GNU.sparse.size", str(real_size)))
        if version == "0.1":
            records += [("GNU.sparse.numblocks", str(len(extents)))]
            records += [("GNU.sparse.map", ",".join(str(n) for e in extents for n in e))]
        else:
            records += [("GNU.sparse.numblocks", str(len(extents)))]
            records += [r for o, n in extents for r in (("GNU.sparse.offset", str(o)), ("GNU.sparse.numbytes", str(n)))]
    body = b"".join(_pax_record(k, v) for k, v in records)
    stored_name = name if version == "0.0" else f"GNUSparseFile.0/{name}"
    return (
        bytes(_header("././@PaxHeader", len(body), tarfile.XHDTYPE))
        + _padded(body)
        + bytes(_header(stored_name, len(data), tarfile.REGTYPE))
        + _padded(data)
    )


def plain(name: str, data: bytes) -> bytes:
    return bytes(_header(name, len(data), tarfile.REGTYPE)) + _padded(data)


def archive(*members: bytes) -> bytes:
    """The members, the end marker, padded to tar's 10 KiB record."""
    out = b"".join(members) + bytes(2 * BLOCK)
    return out + bytes(-len(out) % (20 * BLOCK))
