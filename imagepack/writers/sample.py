"""A small, real sample disk for the demo, the tests and the benchmarks: sparse raw, with a GPT holding an
EFI system partition and a Linux partition, and recognisable data scattered at odd offsets."""

from __future__ import annotations

import os
import struct
import uuid
import zlib
from pathlib import Path

from imagepack.formats.partitions import ESP_GUID

LINUX_GUID = uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4")
SECTOR = 512


def _gpt_entries(size: int) -> bytes:
    last = size // SECTOR - 34
    esp_end = min(2048 + 2047, last)
    entries = [
        (ESP_GUID, 2048, esp_end, "EFI System"),
        (LINUX_GUID, esp_end + 1, last, "root"),
    ]
    table = b""
    for type_guid, first, final, name in entries:
        if first > final:
            continue
        table += struct.pack(
            "<16s16sQQQ72s",
            type_guid.bytes_le,
            uuid.uuid5(type_guid, name).bytes_le,
            first,
            final,
            0,
            name.encode("utf-16-le"),
        )
    return table.ljust(128 * 128, b"\0")


def _gpt_header(size: int, entries: bytes, *, primary: bool) -> bytes:
    sectors = size // SECTOR
    current, backup = (1, sectors - 1) if primary else (sectors - 1, 1)
    entries_lba = 2 if primary else sectors - 33
    fields = struct.pack(
        "<8sIIIIQQQQ16sQIII",
        b"EFI PART",
        0x00010000,
        92,
        0,
        0,
        current,
        backup,
        34,
        sectors - 34,
        uuid.UUID("5a3b1c2d-0000-4000-8000-696d61676570").bytes_le,
        entries_lba,
        128,
        128,
        zlib.crc32(entries),
    )
    crc = zlib.crc32(fields)
    return fields[:16] + struct.pack("<I", crc) + fields[20:]


def write_sample_disk(path: Path, size: int = 64 * 1024**2, *, gpt: bool = True, seed: int = 7) -> None:
    """Write a sparse raw disk of `size` bytes (a multiple of 512) at `path`."""
    if size % SECTOR:
        raise ValueError("size must be a multiple of 512")
    with open(path, "wb") as f:
        f.truncate(size)
        if gpt and size >= 64 * 1024:
            mbr = bytearray(512)
            mbr[446:462] = struct.pack(
                "<B3sB3sII", 0, b"\0\x02\0", 0xEE, b"\xff\xff\xff", 1, min(size // SECTOR - 1, 0xFFFFFFFF)
            )
            mbr[510:512] = b"\x55\xaa"
            entries = _gpt_entries(size)
            f.seek(0)
            f.write(mbr + _gpt_header(size, entries, primary=True).ljust(SECTOR, b"\0") + entries)
            f.seek(size - 33 * SECTOR)
            f.write(entries + _gpt_header(size, entries, primary=False).ljust(SECTOR, b"\0"))
        # Data at odd offsets: unaligned to sectors and clusters, so a converter that drops or shifts a
        # partial cluster is caught by a byte-wise compare.
        step = max(size // 37, 4096)
        for i, offset in enumerate(range(70_001, size - 80_000, step)):
            f.seek(offset)
            f.write(bytes((seed + i + j) % 251 for j in range(3_000 + 997 * (i % 5))))


def write_data_disk(path: Path, size: int, data_bytes: int, *, chunk: int = 4 * 1024**2) -> None:
    """A sparse raw disk with about `data_bytes` of incompressible data spread across it (for benchmarks)."""
    with open(path, "wb") as f:
        f.truncate(size)
        written = 0
        stride = max(size // max(data_bytes // chunk, 1), chunk)
        offset = 1024**2
        while written < data_bytes and offset + chunk <= size:
            f.seek(offset)
            f.write(os.urandom(chunk))
            written += chunk
            offset += stride
