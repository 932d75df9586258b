"""Guest trees that look like the root of real Linux installations (Debian 12, Ubuntu 22.04, Oracle Linux 8,
CentOS 7), with initramfs images made by the real cpio and the real compressors, for the Linux readers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

MODULE_PATHS = {
    "virtio_blk": "kernel/drivers/block/virtio_blk.ko",
    "virtio_scsi": "kernel/drivers/scsi/virtio_scsi.ko",
    "virtio_net": "kernel/drivers/net/virtio_net.ko",
    "virtio_pci": "kernel/drivers/virtio/virtio_pci.ko",
    "nvme": "kernel/drivers/nvme/host/nvme.ko",
    "e1000": "kernel/drivers/net/ethernet/intel/e1000/e1000.ko",
    "ata_piix": "kernel/drivers/ata/ata_piix.ko",
    "ahci": "kernel/drivers/ata/ahci.ko",
}
COMPRESSORS = {
    "gzip": ["gzip", "-c", "-n", "-9"],
    "xz": ["xz", "-c", "--check=crc32"],
    "zstd": ["zstd", "-c", "-q", "-19"],
    "lz4": ["lz4", "-l", "-c", "-q"],
    "bzip2": ["bzip2", "-c"],
}
VIRTIO = ["virtio_blk", "virtio_scsi", "virtio_net", "virtio_pci"]


def write(root: Path, path: str, content: str | bytes) -> Path:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        target.write_text(content)
    else:
        target.write_bytes(content)
    return target


def link(root: Path, path: str, points_to: str) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(points_to)


def cpio(work: Path, members: dict[str, bytes]) -> bytes:
    """A newc archive of `members`, written by the real cpio."""
    work.mkdir(parents=True)
    names: set[str] = set()
    for name, content in members.items():
        write(work, name, content)
        parts = name.split("/")
        names.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    listing = "".join(f"{n}\n" for n in sorted(names))
    done = subprocess.run(
        ["cpio", "-o", "-H", "newc", "--quiet"], input=listing.encode(), cwd=work, capture_output=True, check=True
    )
    return done.stdout


def compress(data: bytes, how: str) -> bytes:
    return subprocess.run(COMPRESSORS[how], input=data, capture_output=True, check=True).stdout


def initramfs(work: Path, version: str, modules: list[str], how: str, *, microcode: bool = True) -> bytes:
    """An initramfs as dracut and initramfs-tools write them: an uncompressed early-microcode archive, then the
    main archive compressed, holding `modules` (as .ko.xz) for kernel `version`."""
    main: dict[str, bytes] = {"init": b"#!/bin/sh\nexec /sbin/init\n", "usr/bin/busybox": os.urandom(3000)}
    for name in modules:
        main[f"usr/lib/modules/{version}/{MODULE_PATHS[name]}.xz"] = os.urandom(2000)
    main[f"usr/lib/modules/{version}/modules.dep"] = b"".join(f"{MODULE_PATHS[m]}.xz:\n".encode() for m in modules)
    image = compress(cpio(work / "main", main), how)
    if microcode:
        early = cpio(work / "early", {"kernel/x86/microcode/GenuineIntel.bin": os.urandom(4000)})
        image = early + image
    return image


def kernel(root: Path, version: str, *, initrd: str, image: bytes, builtin: list[str], on_root: list[str]) -> None:
    write(root, f"/boot/vmlinuz-{version}", os.urandom(1000))
    write(root, f"/boot/{initrd}", image)
    modules = f"/lib/modules/{version}"
    write(root, f"{modules}/modules.builtin", "".join(f"{MODULE_PATHS[m]}\n" for m in builtin))
    write(root, f"{modules}/modules.dep", "".join(f"{MODULE_PATHS[m]}.xz:\n" for m in on_root))


def grubenv(values: dict[str, str]) -> str:
    block = "# GRUB Environment Block\n" + "".join(f"{k}={v}\n" for k, v in values.items())
    return block + "#" * (1024 - len(block))
