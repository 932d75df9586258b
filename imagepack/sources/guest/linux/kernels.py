"""The kernels installed in a Linux guest (/boot/vmlinuz-VER), the initramfs each boots with, and where each
driver a cloud boot needs comes from: built into the kernel, in the initramfs, only on the root file system
(too late to find the root disk), or nowhere."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from imagepack.sources.guest.linux.cpio import read_initramfs
from imagepack.sources.guest.linux.entries import version_key
from imagepack.sources.guest.linux.reading import Evidence, GuestReader

# Each driver with the kernel configuration symbol that builds it.
DRIVERS: dict[str, str] = {
    "virtio_blk": "CONFIG_VIRTIO_BLK",
    "virtio_scsi": "CONFIG_SCSI_VIRTIO",
    "virtio_net": "CONFIG_VIRTIO_NET",
    "virtio_pci": "CONFIG_VIRTIO_PCI",
    "nvme": "CONFIG_BLK_DEV_NVME",
    "e1000": "CONFIG_E1000",
    "ata_piix": "CONFIG_ATA_PIIX",
    "ahci": "CONFIG_SATA_AHCI",
    "hv_vmbus": "CONFIG_HYPERV",  # Azure's Hyper-V bus, storage and network
    "hv_storvsc": "CONFIG_HYPERV_STORAGE",
    "hv_netvsc": "CONFIG_HYPERV_NET",
    "ena": "CONFIG_ENA_ETHERNET",  # AWS's network adapter
}
INITRAMFS_LIMIT = 256 * 1024 * 1024
MODULE_LISTS_LIMIT = 16 * 1024 * 1024  # modules.builtin, modules.dep
KERNELS_MOST = 64
INITRAMFS_MOST = 4  # initramfs images opened in one analysis: the default kernel's and the newest others
MODULE = re.compile(r"(?:^|/)(?P<name>[^/]+)\.ko(?:\.(?:xz|zst|gz))?$")
CONFIG = re.compile(r"^(?P<symbol>CONFIG_[A-Z0-9_]+)=(?P<value>[ym])$")


class _Incomplete(dict[str, Evidence]):
    """The modules of an initramfs read only in part: a module not among them may still be there."""


class Where(StrEnum):
    BUILT_IN = "built-in"
    INITRAMFS = "initramfs"
    ROOT_ONLY = "module-not-in-initramfs"  # a module on the root file system: loadable only once root is found
    ABSENT = "absent"
    UNKNOWN = "unknown"  # nothing that says was readable


@dataclass(frozen=True)
class Driver:
    name: str
    where: Where
    evidence: Evidence | None


@dataclass
class Kernel:
    version: str
    image: str
    major_minor: tuple[int, int] | None
    modules_dir: str | None
    initramfs: str | None
    initramfs_segments: list[str] = field(default_factory=list)
    initramfs_problem: str | None = None
    drivers: list[Driver] = field(default_factory=list)


def module_name(path: str) -> str | None:
    found = MODULE.search(path)
    return found.group("name").replace("-", "_") if found else None


def read_kernels(reader: GuestReader, default: str | None = None) -> list[Kernel]:
    """Every /boot/vmlinuz-VER, newest first. The initramfs is opened for the boot loader's default kernel
    and the newest others, INITRAMFS_MOST of them in all."""
    versions = [n.removeprefix("vmlinuz-") for n in reader.names("/boot") if n.startswith("vmlinuz-")]
    versions.sort(key=version_key, reverse=True)
    if len(versions) > KERNELS_MOST:
        reader.note("/boot", f"only the newest {KERNELS_MOST} of {len(versions)} kernels were read")
        versions = versions[:KERNELS_MOST]
    opened = ([default] if default in versions else []) + [v for v in versions if v != default]
    return [read_kernel(reader, v, open_initramfs=v in opened[:INITRAMFS_MOST]) for v in versions]


def read_kernel(reader: GuestReader, version: str, *, open_initramfs: bool = True) -> Kernel:
    modules = f"/lib/modules/{version}"
    initramfs = next(
        (
            p
            for p in (f"/boot/initrd.img-{version}", f"/boot/initramfs-{version}.img", f"/boot/initrd-{version}")
            if reader.is_file(p)
        ),
        None,
    )
    numbers = re.match(r"(\d+)\.(\d+)", version)
    kernel = Kernel(
        version,
        f"/boot/vmlinuz-{version}",
        (int(numbers.group(1)), int(numbers.group(2))) if numbers else None,
        modules if reader.exists(modules) else None,
        initramfs,
    )
    if open_initramfs:
        in_initramfs = _initramfs_modules(reader, kernel)
    elif kernel.initramfs is not None:
        kernel.initramfs_problem = f"not opened: only the initramfs of {INITRAMFS_MOST} kernels is read"
        in_initramfs = _Incomplete()
    else:
        in_initramfs = None
    builtin = _listed_modules(reader, f"{modules}/modules.builtin")
    on_root = _listed_modules(reader, f"{modules}/modules.dep")
    config = _config(reader, f"/boot/config-{version}")
    for name, symbol in DRIVERS.items():
        kernel.drivers.append(_driver(name, symbol, in_initramfs, builtin, on_root, config))
    return kernel


def _driver(
    name: str,
    symbol: str,
    in_initramfs: dict[str, Evidence] | None,
    builtin: dict[str, Evidence] | None,
    on_root: dict[str, Evidence] | None,
    config: dict[str, tuple[str, Evidence]] | None,
) -> Driver:
    setting = config.get(symbol) if config is not None else None
    if builtin is not None and name in builtin:
        return Driver(name, Where.BUILT_IN, builtin[name])
    if setting is not None and setting[0] == "y":
        return Driver(name, Where.BUILT_IN, setting[1])
    if in_initramfs is not None and name in in_initramfs:
        return Driver(name, Where.INITRAMFS, in_initramfs[name])
    if isinstance(in_initramfs, _Incomplete):
        return Driver(name, Where.UNKNOWN, None)  # the initramfs could not be read to its end
    if on_root is not None and name in on_root:
        return Driver(name, Where.ROOT_ONLY, on_root[name])
    if setting is not None:
        return Driver(name, Where.ROOT_ONLY, setting[1])
    if config is not None or (builtin is not None and on_root is not None):
        return Driver(name, Where.ABSENT, None)
    return Driver(name, Where.UNKNOWN, None)


def _initramfs_modules(reader: GuestReader, kernel: Kernel) -> dict[str, Evidence] | None:
    """The modules for this kernel's version in its initramfs, each with the member that holds it."""
    if kernel.initramfs is None:
        return None
    data = reader.data(kernel.initramfs, INITRAMFS_LIMIT, counted=False)
    if data is None:
        kernel.initramfs_problem = f"larger than {INITRAMFS_LIMIT // 1024**2} MiB: not read"
        return _Incomplete()
    found = read_initramfs(data)
    kernel.initramfs_segments, kernel.initramfs_problem = found.segments, found.problem
    modules: dict[str, Evidence] = _Incomplete() if found.problem else {}
    for member in found.names:
        name = module_name(member)
        if name is not None and f"modules/{kernel.version}/" in member:
            modules.setdefault(name, Evidence(kernel.initramfs, None, member))
    return modules


def _listed_modules(reader: GuestReader, path: str) -> dict[str, Evidence] | None:
    """modules.builtin or modules.dep: a module path at the start of each line."""
    lines = reader.lines(path, MODULE_LISTS_LIMIT)
    if lines is None:
        return None
    modules: dict[str, Evidence] = {}
    for number, line in lines:
        name = module_name(line.split(":", 1)[0].strip())
        if name is not None:
            modules.setdefault(name, Evidence(path, number, line.strip()))
    return modules


def _config(reader: GuestReader, path: str) -> dict[str, tuple[str, Evidence]] | None:
    lines = reader.lines(path)
    if lines is None:
        return None
    settings = {}
    for number, line in lines:
        found = CONFIG.match(line.strip())
        if found:
            settings[found.group("symbol")] = (found.group("value"), Evidence(path, number, line.strip()))
    return settings
