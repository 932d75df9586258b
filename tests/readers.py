"""Checking what imagepack wrote: qemu-img with every format stated (it never probes), and dissect.hypervisor as
an independent reader of the guest bytes and the headers, with no qemu code involved."""

from __future__ import annotations

import hashlib
import json
import re
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from dissect.hypervisor import qcow2, vdi, vhd, vhdx, vmdk  # type: ignore[import-untyped]
from dissect.hypervisor.disk.c_qcow2 import c_qcow2  # type: ignore[import-untyped]

from tests.conftest import QEMU_IMG

FORMATS = ("raw", "qcow2", "vmdk", "vdi", "vhd", "vhdx")
SECTOR = 512
CHUNK = 1024**2
VMDK_FLAG_COMPRESSED = 1 << 16
VMDK_FLAG_MARKERS = 1 << 17
VHD_FIXED, VHD_DYNAMIC = 2, 3
VDI_DYNAMIC, VDI_STATIC = 1, 2


def driver(fmt: str) -> str:
    """qemu-img's name for a format: VHD is 'vpc'."""
    return "vpc" if fmt == "vhd" else fmt


# --- qemu-img, always told the format -------------------------------------------------------------------------


def qemu_compare(a: Path, a_fmt: str, b: Path, b_fmt: str) -> subprocess.CompletedProcess[str]:
    """`qemu-img compare`: exit 0 when the guest data is the same; a size difference counts only if the larger
    image holds data past the smaller one's end (check sizes separately)."""
    return subprocess.run(
        [QEMU_IMG, "compare", "-f", driver(a_fmt), "-F", driver(b_fmt), str(a), str(b)],
        capture_output=True,
        text=True,
        check=False,
    )


def qemu_info(path: Path, fmt: str) -> dict[str, Any]:
    done = subprocess.run(
        [QEMU_IMG, "info", "--output=json", "-f", driver(fmt), str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# --- dissect.hypervisor: the guest disk ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GuestDisk:
    """What an independent reader sees inside an image: the disk's size and a hash of every byte of it."""

    virtual_size: int
    sha256: str


def _chunks_of_stream(stream: BinaryIO, size: int) -> Iterator[bytes]:
    stream.seek(0)
    done = 0
    while done < size:
        chunk = stream.read(min(CHUNK, size - done))
        if not chunk:
            raise AssertionError(f"reader stopped at byte {done} of {size}")
        done += len(chunk)
        yield chunk


def _chunks_of_sectors(disk: Any, size: int) -> Iterator[bytes]:
    # dissect's VMDK stream reads a whole 8 KiB block past the last sector and fails on a disk that does not
    # end on one; asking for sectors avoids that without changing what is read.
    if size % SECTOR:
        raise AssertionError(f"vmdk capacity {size} is not whole sectors")
    sector, total = 0, size // SECTOR
    while sector < total:
        count = min(CHUNK // SECTOR, total - sector)
        chunk = disk.read_sectors(sector, count)
        if len(chunk) != count * SECTOR:
            raise AssertionError(f"reader returned {len(chunk)} bytes for {count} sectors at sector {sector}")
        sector += count
        yield chunk


def _digest(chunks: Iterator[bytes]) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


def read_guest_disk(path: Path, fmt: str) -> GuestDisk:
    """Every byte of the guest disk in `path`, read by dissect.hypervisor (raw: the file itself)."""
    with open(path, "rb") as f:
        if fmt == "raw":
            size = path.stat().st_size
            return GuestDisk(size, _digest(_chunks_of_stream(f, size)))
        if fmt == "qcow2":
            image = qcow2.QCow2(f)
            return GuestDisk(image.size, _digest(_chunks_of_stream(image.open(), image.size)))
        if fmt == "vmdk":
            disk = vmdk.VMDK(f)
            return GuestDisk(disk.size, _digest(_chunks_of_sectors(disk, disk.size)))
        if fmt == "vdi":
            image = vdi.VDI(f)
            return GuestDisk(image.size, _digest(_chunks_of_stream(image.open(), image.size)))
        if fmt == "vhd":
            disk = vhd.VHD(f)
            return GuestDisk(disk.size, _digest(_chunks_of_stream(disk, disk.size)))
        if fmt == "vhdx":
            disk = vhdx.VHDX(f)
            return GuestDisk(disk.size, _digest(_chunks_of_stream(disk, disk.size)))
    raise ValueError(f"no reader for {fmt}")


# --- dissect.hypervisor: the headers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Qcow2Header:
    version: int
    compression_type: int  # 0 zlib, 1 zstd
    compressed_clusters: int
    allocated_clusters: int


def read_qcow2_header(path: Path) -> Qcow2Header:
    """The header fields, and how many mapped clusters its L2 tables mark as compressed."""
    with open(path, "rb") as f:
        image = qcow2.QCow2(f)
        compressed = allocated = 0
        for l1_entry in image.l1_table:
            l2_offset = l1_entry & c_qcow2.L1E_OFFSET_MASK
            if not l2_offset:
                continue
            table = image.l2_table(l2_offset)
            for index in range(image.l2_size):
                entry = table.entry(index)
                if entry:
                    allocated += 1
                    compressed += bool(entry & c_qcow2.QCOW_OFLAG_COMPRESSED)
        return Qcow2Header(image.header.version, image.compression_type, compressed, allocated)


@dataclass(frozen=True)
class VmdkHeader:
    create_type: str
    adapter_type: str | None
    flags: int
    compress_algorithm: int  # 0 none, 1 deflate
    capacity: int


def read_vmdk_header(path: Path) -> VmdkHeader:
    with open(path, "rb") as f:
        disk = vmdk.VMDK(f)
        (extent,) = disk.disks
        descriptor = extent.descriptor
        return VmdkHeader(
            create_type=descriptor.attr["createType"],
            adapter_type=descriptor.ddb.get("ddb.adapterType"),
            flags=extent.header.flags,
            compress_algorithm=extent.header.compress_algorithm,
            capacity=extent.header.capacity * SECTOR,
        )


def read_vmdk_extent_names(path: Path) -> list[str]:
    """The file names the embedded descriptor's extent lines give (`RW 4194304 SPARSE "name"`), read from the
    sparse header's own descriptor offset and size (both in sectors), without any vmdk library."""
    with open(path, "rb") as f:
        header = f.read(SECTOR)
        magic, _version, _flags, _capacity, _grain, desc_offset, desc_size = struct.unpack_from("<4sIIQQQQ", header)
        if magic != b"KDMV":
            raise AssertionError(f"{path}: no sparse vmdk header")
        f.seek(desc_offset * SECTOR)
        descriptor = f.read(desc_size * SECTOR).split(b"\0", 1)[0].decode()
    return re.findall(r'^(?:RW|RDONLY|NOACCESS) \d+ \w+ "([^"]*)"', descriptor, re.MULTILINE)


@dataclass(frozen=True)
class VhdFooter:
    disk_type: int  # 2 fixed, 3 dynamic
    current_size: int
    creator: bytes


def read_vhd_footer(path: Path) -> VhdFooter:
    with open(path, "rb") as f:
        footer = vhd.read_footer(f)
        if footer.cookie != b"conectix":
            raise AssertionError(f"{path}: no VHD footer in the last 512 bytes")
        return VhdFooter(footer.disk_type, footer.current_size, footer.creator_application.to_bytes(4, "big"))


def read_vdi_image_type(path: Path) -> int:
    with open(path, "rb") as f:
        return int(vdi.VDI(f).type)


def read_guest_disk_libvmdk(path: Path) -> GuestDisk:
    """Every byte of a vmdk's guest disk, read by libvmdk (C, no qemu or dissect code)."""
    import pyvmdk  # type: ignore[import-not-found]

    handle = pyvmdk.handle()
    handle.open(str(path))
    handle.open_extent_data_files()
    try:
        size = handle.get_media_size()
        h = hashlib.sha256()
        done = 0
        while done < size:
            chunk = handle.read_buffer_at_offset(min(CHUNK, size - done), done)
            if not chunk:
                raise AssertionError(f"libvmdk stopped at byte {done} of {size}")
            h.update(chunk)
            done += len(chunk)
        return GuestDisk(size, h.hexdigest())
    finally:
        handle.close()


def read_guest_disk_7zip(path: Path, work: Path) -> GuestDisk:
    """The guest disk as 7-Zip extracts it (`7zz x`): one file, the disk's bytes."""
    out = work / f"7z-{path.name}"
    subprocess.run(["7zz", "x", "-y", f"-o{out}", str(path)], capture_output=True, check=True)
    (extracted,) = list(out.iterdir())
    size = extracted.stat().st_size
    with open(extracted, "rb") as f:
        return GuestDisk(size, _digest(_chunks_of_stream(f, size)))
