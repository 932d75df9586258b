"""A corpus of hostile disk images for the "untrusted images" acceptance tests, and benign controls.

Every builder writes one small file into a folder with the real qemu-img, then patches header bytes with
struct: the layouts were read from qemu 7.2's own output, not from memory. A canary file (random bytes in
the same folder) stands for a secret that a backing file, data file or extent could leak into an output."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests import luks
from tests.conftest import qemu_img

KiB = 1024
MiB = 1024**2
TiB = 1024**4
SECTOR = 512
CANARY_NAME = "canary.raw"
CANARY_SIZE = 64 * KiB


def write_canary(folder: Path) -> Path:
    """Random bytes no image in the corpus holds: finding them in an output means something was followed."""
    path = folder / CANARY_NAME
    path.write_bytes(os.urandom(CANARY_SIZE))
    return path


def patch(path: Path, offset: int, fmt: str, *values: object) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack(fmt, *values))


def read_at(path: Path, offset: int, fmt: str) -> tuple[Any, ...]:
    with open(path, "rb") as f:
        f.seek(offset)
        return struct.unpack(fmt, f.read(struct.calcsize(fmt)))


# --- qcow2 (big-endian; v3 header fields verified against `qemu-img create` output) ---------------------------
Q_VERSION = 4
Q_CLUSTER_BITS = 20
Q_SIZE = 24
Q_CRYPT_METHOD = 32
Q_L1_SIZE = 36
Q_REFCOUNT_TABLE_OFFSET = 48
Q_REFCOUNT_CLUSTERS = 56
Q_NB_SNAPSHOTS = 60
Q_INCOMPATIBLE = 72
Q_REFCOUNT_ORDER = 96
Q_HEADER_LENGTH = 100
Q_CRYPT_LUKS = 2
Q_EXT_CRYPTO_HEADER = 0x0537BE77  # full disk encryption header: offset and length of the LUKS area


def qcow2(folder: Path, name: str, *options: str, size: str | None = "64K") -> Path:
    path = folder / name
    qemu_img("create", "-q", "-f", "qcow2", *options, str(path), *([size] if size else []))
    return path


def qcow2_backing_canary(folder: Path, canary: Path) -> Path:
    return qcow2(folder, "backing.qcow2", "-b", str(canary), "-F", "raw", size=None)


def qcow2_backing_json(folder: Path, canary: Path) -> Path:
    # A pseudo-protocol name: qemu parses it as options, so it can reach any driver, not only a file.
    spec = f'json:{{"driver":"raw","file":{{"driver":"file","filename":"{canary}"}}}}'
    return qcow2(folder, "backing-json.qcow2", "-u", "-b", spec, "-F", "raw")


def qcow2_data_file(folder: Path, canary: Path) -> Path:
    return qcow2(folder, "data-file.qcow2", "-o", f"data_file={canary},data_file_raw=on")


def qcow2_header_extensions(path: Path, start: int) -> bytes:
    """The raw header extensions from `start` up to and including the end marker."""
    extensions = b""
    while True:
        at = start + len(extensions)
        magic, length = read_at(path, at, ">II")
        extension: bytes = read_at(path, at, f"{8 + -(-length // 8) * 8}s")[0]  # data padded to 8 bytes
        extensions += extension
        if magic == 0:
            return extensions


def qcow2_luks(folder: Path, canary: Path) -> Path:
    """A LUKS-encrypted qcow2 as `qemu-img create -o encrypt.format=luks` writes it, without its PBKDF timing: the
    LUKS header goes in clusters appended to a plain image, named by a full-disk-encryption header extension."""
    path = qcow2(folder, "luks.qcow2")
    (cluster_bits,) = read_at(path, Q_CLUSTER_BITS, ">I")
    (header_length,) = read_at(path, Q_HEADER_LENGTH, ">I")
    (refcount_order,) = read_at(path, Q_REFCOUNT_ORDER, ">I")
    (refcount_table,) = read_at(path, Q_REFCOUNT_TABLE_OFFSET, ">Q")
    (refcount_block,) = read_at(path, refcount_table, ">Q")
    cluster = 1 << cluster_bits
    first = -(-path.stat().st_size // cluster)  # the next free cluster: qcow2 wants the LUKS area cluster aligned
    count = -(-luks.HEADER_AREA // cluster)
    assert refcount_order == 4 and first + count <= cluster // 2, "the new clusters must fit the first refblock"

    # The extension goes first, as qemu puts it; the ones qemu-img wrote (feature names, end marker) move behind.
    extensions = qcow2_header_extensions(path, header_length)
    crypto = struct.pack(">IIQQ", Q_EXT_CRYPTO_HEADER, 16, first * cluster, luks.HEADER_AREA)
    assert header_length + len(crypto) + len(extensions) <= cluster, "header extensions must fit in cluster 0"
    patch(path, header_length, f"{len(crypto) + len(extensions)}s", crypto + extensions)
    patch(path, Q_CRYPT_METHOD, ">I", Q_CRYPT_LUKS)
    for index in range(first, first + count):  # one reference each, so `qemu-img check` finds no leak
        patch(path, refcount_block + 2 * index, ">H", 1)
    luks.write_luks_area(path, first * cluster)
    os.truncate(path, (first + count) * cluster)
    return path


def qcow2_legacy_aes(folder: Path, canary: Path) -> Path:
    return qcow2(folder, "aes.qcow2", "--object", "secret,id=s,data=x", "-o", "encrypt.format=aes,encrypt.key-secret=s")


def qcow2_patched(name: str, offset: int, fmt: str, value: int) -> Callable[[Path, Path], Path]:
    def build(folder: Path, canary: Path) -> Path:
        path = qcow2(folder, name)
        patch(path, offset, fmt, value)
        return path

    return build


def qcow2_claims_512_tib(folder: Path, canary: Path) -> Path:
    """A 64 KiB file whose header claims 512 TiB, with an L1 table size that matches the claim."""
    path = qcow2(folder, "claims-512T.qcow2")
    patch(path, Q_SIZE, ">Q", 512 * TiB)
    patch(path, Q_L1_SIZE, ">I", 512 * TiB // (8192 * 64 * KiB))  # one entry per 512 MiB at 64 KiB clusters
    os.truncate(path, 64 * KiB)
    return path


def qcow2_corrupt_bit(folder: Path, canary: Path) -> Path:
    path = qcow2(folder, "corrupt.qcow2")
    patch(path, Q_INCOMPATIBLE, ">Q", 1 << 1)
    return path


# --- vmdk (little-endian sparse header after the 'KDMV' magic; descriptor text at sector 1) -------------------
V_CAPACITY = 12
V_DESC_OFFSET = 28
V_DESC_SIZE = 36
V_GD_OFFSET = 56
GD_AT_END = 0xFFFFFFFFFFFFFFFF
MARKER_FOOTER = 3


def descriptor(create_type: str, extent: str) -> str:
    return (
        "# Disk DescriptorFile\n"
        "version=1\n"
        "CID=fffffffe\n"
        "parentCID=ffffffff\n"
        f'createType="{create_type}"\n'
        "\n# Extent description\n"
        f"{extent}\n"
    )


def vmdk_text(name: str, text: str) -> Callable[[Path, Path], Path]:
    def build(folder: Path, canary: Path) -> Path:
        path = folder / name
        path.write_text(text.replace("CANARY", str(canary)))
        return path

    return build


def vmdk_two_gb_descriptor(folder: Path, canary: Path) -> Path:
    path = folder / "split.vmdk"
    qemu_img("create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse", str(path), "1M")
    return path


def vmdk_two_gb_extent(folder: Path, canary: Path) -> Path:
    """An extent file alone: qemu writes it with an empty descriptor area, and cannot open it without one."""
    return vmdk_two_gb_descriptor(folder, canary).with_name("split-s001.vmdk")


def vmdk_sparse(folder: Path, name: str, source: Path, subformat: str = "monolithicSparse") -> Path:
    path = folder / name
    qemu_img("convert", "-f", "raw", "-O", "vmdk", "-o", f"subformat={subformat}", str(source), str(path))
    return path


def vmdk_delta_of_canary(folder: Path, canary: Path) -> Path:
    """A real delta disk made by qemu-img: its embedded descriptor has parentFileNameHint naming a vmdk of the
    canary, so following it would copy the canary into the output."""
    vmdk_sparse(folder, "parent.vmdk", canary)
    path = folder / "delta.vmdk"
    qemu_img("create", "-q", "-f", "vmdk", "-b", "parent.vmdk", "-F", "vmdk", str(path))
    return path


def empty_vmdk(folder: Path, name: str) -> Path:
    path = folder / name
    qemu_img("create", "-q", "-f", "vmdk", str(path), str(CANARY_SIZE))
    return path


def vmdk_hint_without_descriptor(folder: Path, canary: Path) -> Path:
    """The header says there is no descriptor, but qemu still searches sector 1 onwards for a parent hint,
    even inside a comment: qemu-img info then reports a backing file (test_second_layer_... checks it)."""
    vmdk_sparse(folder, "parent.vmdk", canary)
    path = empty_vmdk(folder, "hidden-hint.vmdk")
    patch(path, V_DESC_OFFSET, "<QQ", 0, 0)
    text = b'CID=fffffffe\nparentCID=ffffffff\n# parentFileNameHint="parent.vmdk"\n'
    with open(path, "r+b") as f:
        f.seek(SECTOR)
        f.write(text.ljust(20 * SECTOR, b"\0"))
    return path


def vmdk_capacity_zero(folder: Path, canary: Path) -> Path:
    """Capacity 0 makes qemu open the embedded descriptor as a descriptor file, extents and all. This one reads
    as a harmless monolithicSparse to a line parser; qemu finds 'createType' in the comment first (strstr),
    and follows both extents: a vmdk of the canary and the canary itself."""
    vmdk_sparse(folder, "parent.vmdk", canary)
    path = empty_vmdk(folder, "capacity-zero.vmdk")
    patch(path, V_CAPACITY, "<Q", 0)
    text = descriptor(
        "monolithicSparse",
        f'RW {CANARY_SIZE // SECTOR} SPARSE "parent.vmdk"\n  RW {CANARY_SIZE // SECTOR} FLAT "{CANARY_NAME}" 0',
    ).replace("version=1\n", '#createType="monolithicFlat"\nversion=1\n')
    with open(path, "r+b") as f:
        f.seek(SECTOR)
        f.write(text.encode().ljust(20 * SECTOR, b"\0"))
    return path


def vmdk_huge_embedded_descriptor(folder: Path, canary: Path) -> Path:
    path = vmdk_sparse(folder, "huge-descriptor.vmdk", canary)
    patch(path, V_DESC_SIZE, "<Q", 4 * MiB // SECTOR)
    return path


def vmdk_oversize_text_descriptor(folder: Path, canary: Path) -> Path:
    path = folder / "oversize-descriptor.vmdk"
    path.write_text(descriptor("monolithicFlat", 'RW 128 FLAT "missing-flat.vmdk" 0'))
    os.truncate(path, 2 * MiB)  # sparse: the tail is a hole
    return path


def vmware_stream(folder: Path, name: str, source: Path) -> Path:
    """A streamOptimized vmdk as VMware writes it: the header's grain directory offset says 'at the end', and a
    footer (marker, header copy, end-of-stream marker) closes the file. qemu 7.2 writes the offset in the
    header and no footer, so the footer is added here to qemu's own output."""
    path = vmdk_sparse(folder, name, source, "streamOptimized")
    header = bytearray(path.read_bytes()[:SECTOR])
    with open(path, "r+b") as f:
        f.seek(0, os.SEEK_END)
        assert f.tell() % SECTOR == 0
        f.write(struct.pack("<QII", 1, 0, MARKER_FOOTER).ljust(SECTOR, b"\0"))
        f.write(bytes(header))
        f.write(bytes(SECTOR))  # end-of-stream marker: all zero
    patch(path, V_GD_OFFSET, "<Q", GD_AT_END)
    return path


def vmdk_stream_truncated(folder: Path, canary: Path) -> Path:
    path = vmware_stream(folder, "stream-truncated.vmdk", canary)
    os.truncate(path, path.stat().st_size - 2 * SECTOR)
    return path


def vmdk_stream_footer_claims_more(folder: Path, canary: Path) -> Path:
    """qemu trusts the footer over the header: a footer claiming 512 TiB must not slip past the size cap."""
    path = vmware_stream(folder, "stream-footer-mismatch.vmdk", canary)
    patch(path, path.stat().st_size - 2 * SECTOR + V_CAPACITY, "<Q", 512 * TiB // SECTOR)
    return path


# --- vhd (big-endian footer; at the start and end of a dynamic disk, only at the end of a fixed one) ----------
H_ORIGINAL_SIZE = 40
H_DISK_TYPE = 60
H_CHECKSUM = 64
DYN = SECTOR  # qemu puts the dynamic header right after the first footer copy
D_MAX_ENTRIES = 28
D_CHECKSUM = 36


def vhd_checksum(block: bytes, field_at: int) -> int:
    """The VHD spec's checksum, written out here rather than imported from the code under test."""
    total = sum(block[:field_at]) + sum(block[field_at + 4 :])
    return ~total & 0xFFFFFFFF


def fix_checksum(path: Path, offset: int, length: int, field_at: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        block = f.read(length)
        f.seek(offset + field_at)
        f.write(struct.pack(">I", vhd_checksum(block, field_at)))


def vhd(folder: Path, name: str, subformat: str = "dynamic") -> Path:
    path = folder / name
    qemu_img("create", "-q", "-f", "vpc", "-o", f"subformat={subformat}", str(path), "1M")
    return path


def vhd_footers(path: Path) -> list[int]:
    size = path.stat().st_size
    with open(path, "rb") as f:
        starts_with_footer = f.read(8) == b"conectix"
    return [0, size - SECTOR] if starts_with_footer else [size - SECTOR]


def vhd_differencing(folder: Path, canary: Path) -> Path:
    path = vhd(folder, "differencing.vhd")
    for at in vhd_footers(path):
        patch(path, at + H_DISK_TYPE, ">I", 4)
        fix_checksum(path, at, SECTOR, H_CHECKSUM)
    return path


def vhd_bad_footer_checksum(folder: Path, canary: Path) -> Path:
    path = vhd(folder, "bad-checksum.vhd", "fixed")
    (checksum,) = read_at(path, path.stat().st_size - SECTOR + H_CHECKSUM, ">I")
    patch(path, path.stat().st_size - SECTOR + H_CHECKSUM, ">I", checksum ^ 1)
    return path


def vhd_bad_dynamic_header_checksum(folder: Path, canary: Path) -> Path:
    path = vhd(folder, "bad-header-checksum.vhd")
    (checksum,) = read_at(path, DYN + D_CHECKSUM, ">I")
    patch(path, DYN + D_CHECKSUM, ">I", checksum ^ 1)
    return path


def vhd_claims_1_tib(folder: Path, canary: Path) -> Path:
    path = vhd(folder, "claims-1T.vhd", "fixed")
    footer = path.stat().st_size - SECTOR
    patch(path, footer + H_ORIGINAL_SIZE, ">QQ", TiB, TiB)  # original and current size
    fix_checksum(path, footer, SECTOR, H_CHECKSUM)
    return path


def vhd_block_table(name: str, entries: int, block_size: int) -> Callable[[Path, Path], Path]:
    def build(folder: Path, canary: Path) -> Path:
        path = vhd(folder, name)
        patch(path, DYN + D_MAX_ENTRIES, ">II", entries, block_size)  # block size follows the count
        fix_checksum(path, DYN, 1024, D_CHECKSUM)
        return path

    return build


# --- vdi (little-endian header after a 64-byte banner) -----------------------------------------------------------
I_IMAGE_TYPE = 0x4C
I_DISK_SIZE = 0x170
I_BLOCK_SIZE = 0x178
I_BLOCKS = 0x180
I_UUID_LINK = 0x1A8
I_UUID_PARENT = 0x1B8


def vdi_patched(name: str, offset: int, fmt: str, *values: object) -> Callable[[Path, Path], Path]:
    def build(folder: Path, canary: Path) -> Path:
        path = folder / name
        qemu_img("create", "-q", "-f", "vdi", str(path), "1M")
        patch(path, offset, fmt, *values)
        return path

    return build


def vdi_claims_1_tib(folder: Path, canary: Path) -> Path:
    path = vdi_patched("claims-1T.vdi", I_DISK_SIZE, "<Q", TiB)(folder, canary)
    patch(path, I_BLOCKS, "<I", TiB // MiB)  # a block map that matches the claim
    return path


# --- anything else ------------------------------------------------------------------------------------------------


def qcow2_named(name: str) -> Callable[[Path, Path], Path]:
    def build(folder: Path, canary: Path) -> Path:
        return qcow2(folder, name)

    return build


def qcow2_with_vhd_footer(folder: Path, canary: Path) -> Path:
    """Starts like a qcow2, ends like a fixed vhd: two formats claim the same bytes."""
    path = qcow2(folder, "two-faced.qcow2")
    footer = vhd(folder, "donor.vhd", "fixed").read_bytes()[-SECTOR:]
    with open(path, "ab") as f:
        f.write(footer)
    return path


def fifo(folder: Path, canary: Path) -> Path:
    path = folder / "pipe.qcow2"
    os.mkfifo(path)
    return path


def directory(folder: Path, canary: Path) -> Path:
    path = folder / "folder.qcow2"
    path.mkdir()
    return path


def dev_zero_link(folder: Path, canary: Path) -> Path:
    path = folder / "zero.raw"
    path.symlink_to("/dev/zero")
    return path


@dataclass(frozen=True)
class Hostile:
    """One crafted input, the words its refusal must contain, and the option that would allow it (if any)."""

    id: str
    build: Callable[[Path, Path], Path]
    expect: str
    allow: str | None = None
    args: tuple[str, ...] = ()
    regular: bool = True  # False for FIFOs, devices and directories: never hash those
    info: str = "refused"  # what `imagepack info --json` does: "refused" (exit 0, safe false) or "error"


HOSTILE: tuple[Hostile, ...] = (
    # qcow2
    Hostile("qcow2-backing-file-is-canary", qcow2_backing_canary, "backing file", "--allow-backing"),
    Hostile("qcow2-backing-json-pseudo-protocol", qcow2_backing_json, "backing file", "--allow-backing"),
    Hostile("qcow2-external-data-file", qcow2_data_file, "external data file"),
    Hostile("qcow2-luks-encrypted", qcow2_luks, "encrypted"),
    Hostile("qcow2-legacy-aes-encrypted", qcow2_legacy_aes, "encrypted"),
    Hostile("qcow2-version-4", qcow2_patched("v4.qcow2", Q_VERSION, ">I", 4), "version 4"),
    Hostile(
        "qcow2-unknown-incompatible-bit",
        qcow2_patched("bit5.qcow2", Q_INCOMPATIBLE, ">Q", 1 << 5),
        "unknown incompatible features 0x20",
    ),
    Hostile("qcow2-corrupt-bit", qcow2_corrupt_bit, "marked corrupt"),
    Hostile("qcow2-cluster-bits-8", qcow2_patched("cb8.qcow2", Q_CLUSTER_BITS, ">I", 8), "cluster_bits 8"),
    Hostile("qcow2-cluster-bits-22", qcow2_patched("cb22.qcow2", Q_CLUSTER_BITS, ">I", 22), "cluster_bits 22"),
    Hostile("qcow2-huge-l1-table", qcow2_patched("l1.qcow2", Q_L1_SIZE, ">I", 0x1000_0000), "L1 table"),
    Hostile(
        "qcow2-huge-refcount-table",
        qcow2_patched("reftable.qcow2", Q_REFCOUNT_CLUSTERS, ">I", 0x10_0000),
        "refcount table",
    ),
    Hostile("qcow2-too-many-snapshots", qcow2_patched("snaps.qcow2", Q_NB_SNAPSHOTS, ">I", 70_000), "snapshots"),
    Hostile("qcow2-64KiB-file-claims-512TiB", qcow2_claims_512_tib, "above the limit", "--max-size"),
    # vmdk
    Hostile(
        "vmdk-flat-descriptor-extent-is-canary",
        vmdk_text("flat.vmdk", descriptor("monolithicFlat", f'RW 128 FLAT "{CANARY_NAME}" 0')),
        "other files",
        "--allow-backing",
    ),
    Hostile(
        "vmdk-flat-descriptor-absolute-canary",
        vmdk_text("flat-abs.vmdk", descriptor("monolithicFlat", 'RW 128 FLAT "CANARY" 0')),
        "other files",
        "--allow-backing",
    ),
    Hostile(
        "vmdk-flat-descriptor-etc-passwd",
        vmdk_text("passwd.vmdk", descriptor("monolithicFlat", 'RW 8 FLAT "/etc/passwd" 0')),
        "other files",
        "--allow-backing",
    ),
    Hostile(
        "vmdk-flat-descriptor-indented-extent",  # qemu's sscanf skips the indent; a line regex may not
        vmdk_text("indented.vmdk", descriptor("monolithicFlat", f'   RW 128 FLAT "{CANARY_NAME}" 0')),
        "other files",
        "--allow-backing",
    ),
    Hostile("vmdk-twoGbMaxExtentSparse-descriptor", vmdk_two_gb_descriptor, "other files", "--allow-backing"),
    Hostile("vmdk-lone-extent-of-a-split-disk", vmdk_two_gb_extent, "split disk"),
    Hostile("vmdk-sparse-delta-with-parentFileNameHint", vmdk_delta_of_canary, "parent", "--allow-backing"),
    Hostile("vmdk-parent-hint-without-descriptor", vmdk_hint_without_descriptor, "parent", "--allow-backing"),
    Hostile("vmdk-capacity-zero-embedded-descriptor", vmdk_capacity_zero, "descriptor", "--allow-backing"),
    Hostile("vmdk-embedded-descriptor-4MiB", vmdk_huge_embedded_descriptor, "too large"),
    Hostile("vmdk-text-descriptor-2MiB", vmdk_oversize_text_descriptor, "larger than 1 MiB"),
    Hostile("vmdk-stream-footer-truncated", vmdk_stream_truncated, "footer"),
    Hostile("vmdk-stream-footer-claims-512TiB", vmdk_stream_footer_claims_more, "footer"),
    # vhd
    Hostile("vhd-differencing", vhd_differencing, "differencing"),
    Hostile("vhd-bad-footer-checksum", vhd_bad_footer_checksum, "checksum"),
    Hostile("vhd-bad-dynamic-header-checksum", vhd_bad_dynamic_header_checksum, "header checksum"),
    Hostile("vhd-fixed-claims-1TiB", vhd_claims_1_tib, "above the limit", "--max-size"),
    Hostile("vhd-block-table-of-1G-entries", vhd_block_table("bat-2m.vhd", 0x3FFF_FFFF, 2 * MiB), "block table"),
    Hostile("vhd-block-table-2GiB-in-512B-blocks", vhd_block_table("bat-512.vhd", 0x1FFF_FFFF, SECTOR), "block table"),
    # vdi
    Hostile("vdi-differencing", vdi_patched("diff.vdi", I_IMAGE_TYPE, "<I", 4), "differencing"),
    Hostile("vdi-link-uuid", vdi_patched("link.vdi", I_UUID_LINK, "16s", os.urandom(16)), "parent"),
    Hostile("vdi-parent-uuid", vdi_patched("parent.vdi", I_UUID_PARENT, "16s", os.urandom(16)), "parent"),
    Hostile("vdi-claims-1TiB", vdi_claims_1_tib, "above the limit", "--max-size"),
    Hostile("vdi-block-size-4KiB", vdi_patched("bs.vdi", I_BLOCK_SIZE, "<I", 4096), "block size"),
    # whatever the bytes or the name say
    Hostile(
        "raw-claimed-but-qcow2", qcow2_named("claimed.raw"), "content is qcow2", args=("--from", "raw"), info="error"
    ),
    Hostile("name-says-vmdk-content-is-qcow2", qcow2_named("renamed.vmdk"), "the name says vmdk", "--from qcow2"),
    Hostile("qcow2-and-vhd-at-once", qcow2_with_vhd_footer, "ambiguous", info="error"),
    Hostile("fifo", fifo, "regular file", regular=False, info="error"),
    Hostile("directory", directory, "directory", regular=False, info="error"),
    Hostile("symlink-to-dev-zero", dev_zero_link, "regular file", regular=False, info="error"),
)


@dataclass(frozen=True)
class Benign:
    """A well-formed image qemu-img writes itself: it must still convert, bit for bit the same disk."""

    id: str
    fmt: str
    options: str | None = None
    compress: bool = False
    vmware_footer: bool = False


BENIGN: tuple[Benign, ...] = (
    Benign("raw", "raw"),
    Benign("qcow2-compat-0.10", "qcow2", "compat=0.10"),
    Benign("qcow2-compat-1.1-lazy-refcounts", "qcow2", "compat=1.1,lazy_refcounts=on"),
    Benign("qcow2-zstd-compressed-clusters", "qcow2", "compression_type=zstd", compress=True),
    Benign("qcow2-extended-l2", "qcow2", "extended_l2=on,cluster_size=128k"),
    Benign("vmdk-monolithicSparse", "vmdk", "subformat=monolithicSparse"),
    Benign("vmdk-streamOptimized", "vmdk", "subformat=streamOptimized"),
    Benign("vmdk-streamOptimized-vmware-footer", "vmdk", vmware_footer=True),
    Benign("vhd-dynamic", "vhd", "subformat=dynamic"),
    Benign("vhd-fixed", "vhd", "subformat=fixed"),
    Benign("vdi-dynamic", "vdi"),
    Benign("vdi-static", "vdi", "static=on"),
)


def build_benign(case: Benign, folder: Path, source: Path) -> Path:
    if case.vmware_footer:
        return vmware_stream(folder, f"{case.id}.vmdk", source)
    path = folder / f"{case.id}.{case.fmt}"
    driver = "vpc" if case.fmt == "vhd" else case.fmt
    qemu_img(
        "convert",
        *(["-c"] if case.compress else []),
        "-f",
        "raw",
        "-O",
        driver,
        *(["-o", case.options] if case.options else []),
        str(source),
        str(path),
    )
    return path
