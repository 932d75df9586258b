"""LUKS1 headers written with struct, so a test gets an encrypted volume without `qemu-img create` timing PBKDF2.

qemu measures the CPU time of key derivation while it creates a LUKS volume and fails at random on a busy machine
("Unable to get accurate CPU usage"); nothing here derives a key. The layout is the one qemu 7.2 writes with its
defaults (aes-256 xts-plain64, sha256, eight key slots of 4000 stripes, everything 4096-byte aligned), and the
header passes every check qemu runs when it opens a volume without reading data (crypto/block-luks.c,
qcrypto_block_luks_check_header), which is what `qemu-img info` does. The key material is left as a hole: no
password unlocks these volumes, and no test needs one to."""

from __future__ import annotations

import os
import struct
from pathlib import Path

MAGIC = b"LUKS\xba\xbe"
SECTOR = 512
ALIGN_SECTORS = 4096 // SECTOR  # qemu and cryptsetup start key material and payload on 4096-byte boundaries
KEY_BYTES = 64  # aes-256 in xts mode: two 32-byte keys
STRIPES = 4000  # qemu refuses any other count
KEY_SLOTS = 8
SLOT_ENABLED = 0x00AC71F3
SLOT_DISABLED = 0x0000DEAD
ITERATIONS = 1000  # the fewest qemu ever writes; only read when unlocking, which never happens here
SALT = bytes(range(32))  # fixed: a test corpus must build the same bytes every time
DIGEST = bytes(range(0x80, 0x80 + 20))  # of no master key: compared only after a slot is unlocked
UUID = b"6c756b73-0000-4000-8000-000000000001"

# A slot's anti-forensic split key, rounded up to the alignment; the slots follow the header back to back.
SLOT_SECTORS = -(-KEY_BYTES * STRIPES // (ALIGN_SECTORS * SECTOR)) * ALIGN_SECTORS
PAYLOAD_SECTORS = ALIGN_SECTORS + KEY_SLOTS * SLOT_SECTORS
HEADER_AREA = PAYLOAD_SECTORS * SECTOR  # header and key material: 2068480 bytes, as qemu writes them

HEADER_FORMAT = ">6sH32s32s32sII20s32sI40s"  # magic .. uuid; struct pads the strings with NULs
SLOT_FORMAT = ">II32sII"  # active, iterations, salt, first sector of key material, stripes
HEADER_SIZE = struct.calcsize(HEADER_FORMAT) + KEY_SLOTS * struct.calcsize(SLOT_FORMAT)


def key_slot(index: int) -> bytes:
    """Slot 0 in use, the others disabled with zero salt and iterations, as qemu leaves them."""
    active = index == 0
    return struct.pack(
        SLOT_FORMAT,
        SLOT_ENABLED if active else SLOT_DISABLED,
        ITERATIONS if active else 0,
        SALT if active else bytes(32),
        ALIGN_SECTORS + index * SLOT_SECTORS,
        STRIPES,
    )


def luks_header() -> bytes:
    """The 592-byte LUKS1 header (big-endian) for a volume whose payload starts HEADER_AREA bytes in."""
    header = struct.pack(
        HEADER_FORMAT,
        MAGIC,
        1,  # LUKS version
        b"aes",
        b"xts-plain64",
        b"sha256",
        PAYLOAD_SECTORS,
        KEY_BYTES,
        DIGEST,
        SALT,
        ITERATIONS,
        UUID,
    ) + b"".join(key_slot(index) for index in range(KEY_SLOTS))
    assert len(header) == HEADER_SIZE == 592
    return header


def write_luks_area(path: Path, offset: int) -> None:
    """Header at `offset`, key material as a hole up to offset + HEADER_AREA (the file grows to at least that)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(luks_header())
        f.truncate(max(os.fstat(f.fileno()).st_size, offset + HEADER_AREA))


def luks_container(folder: Path, *, name: str = "container.luks", size: int = 64 * 1024) -> Path:
    """A raw LUKS1 volume as `qemu-img create -f luks` or cryptsetup writes it: header, key material, then `size`
    bytes of payload (zeros: no key decrypts them into anything meaningful)."""
    path = folder / name
    path.touch()
    write_luks_area(path, 0)
    os.truncate(path, HEADER_AREA + size)
    return path
