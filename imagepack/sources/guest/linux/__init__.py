"""What a Linux guest's own configuration says about booting in a cloud: its kernels and their drivers, its
boot entries and command lines, fstab, hard-coded MAC addresses, cloud-init and encrypted volumes, each
finding with the guest path and line it was read from. Pure readers over the guest file view."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from imagepack.sources.guest.guestfs import GuestFiles
from imagepack.sources.guest.linux.bootloader import BootLoader, read_boot_loader
from imagepack.sources.guest.linux.cloudinit import CloudInit, read_cloud_init
from imagepack.sources.guest.linux.crypttab import CrypttabEntry, read_crypttab
from imagepack.sources.guest.linux.fstab import (
    DiskFileSystem,
    FstabEntry,
    Resolution,
    Resolved,
    find_filesystem,
    fstab_of,
    mount_plan,
    read_fstab,
    resolve_fstab,
)
from imagepack.sources.guest.linux.kernels import Kernel, read_kernels
from imagepack.sources.guest.linux.macs import MacAddress, read_macs
from imagepack.sources.guest.linux.reading import Evidence, GuestReader, Note, jsonable

__all__ = [
    "DiskFileSystem",
    "FstabEntry",
    "LinuxReport",
    "Resolution",
    "Resolved",
    "analyse_linux",
    "find_filesystem",
    "fstab_of",
    "mount_plan",
    "read_fstab",
    "resolve_fstab",
]


@dataclass
class LinuxReport:
    kernels: list[Kernel]
    default_kernel: str | None
    default_kernel_evidence: Evidence | None  # the boot entry's line, or None when chosen as the newest
    boot: BootLoader
    fstab: list[FstabEntry] | None  # None: there is no readable /etc/fstab
    fstab_resolution: list[Resolved] | None  # None: the caller gave no file systems to resolve against
    macs: list[MacAddress]
    cloud_init: CloudInit
    crypttab: list[CrypttabEntry]
    notes: list[Note] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = jsonable(self)
        data["cloud_init"]["oracle_allowed"] = self.cloud_init.oracle_allowed
        for shown, entry in zip(data["fstab"] or [], self.fstab or [], strict=True):
            shown["nofail"] = entry.nofail
        for shown, resolved in zip(data["fstab_resolution"] or [], self.fstab_resolution or [], strict=True):
            shown["entry"] = resolved.entry.evidence.line
        return data

    def kernel(self, version: str | None) -> Kernel | None:
        return next((k for k in self.kernels if k.version == version), None)


def analyse_linux(files: GuestFiles, filesystems: Sequence[DiskFileSystem] | None = None) -> LinuxReport:
    """Read a Linux guest's boot-relevant configuration. `filesystems`, when given, are the file systems found on
    the disk, against which the fstab entries are resolved."""
    reader = GuestReader(files)
    boot = read_boot_loader(reader)
    kernels = read_kernels(reader, boot.default.version if boot.default else None)
    default, evidence = _default_kernel(kernels, boot)
    fstab = read_fstab(reader)
    resolution = resolve_fstab(fstab, filesystems) if fstab is not None and filesystems is not None else None
    return LinuxReport(
        kernels=kernels,
        default_kernel=default,
        default_kernel_evidence=evidence,
        boot=boot,
        fstab=fstab,
        fstab_resolution=resolution,
        macs=read_macs(reader),
        cloud_init=read_cloud_init(reader),
        crypttab=read_crypttab(reader),
        notes=reader.notes,
    )


def _default_kernel(kernels: list[Kernel], boot: BootLoader) -> tuple[str | None, Evidence | None]:
    """The default boot entry's kernel when it is one installed here, else the newest kernel."""
    installed = {k.version for k in kernels}
    if boot.default is not None and boot.default.version in installed:
        return boot.default.version, boot.default.evidence
    return (kernels[0].version if kernels else None), None
