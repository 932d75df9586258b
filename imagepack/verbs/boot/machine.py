"""The virtual machine a boot test runs: qemu-system-x86_64's command line for a launch mode's devices and a
firmware (SeaBIOS, or OVMF with a throw-away copy of its variables), under KVM when /dev/kvm is usable, else TCG."""

from __future__ import annotations

import errno
import fcntl
import json
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from imagepack.core.errors import BootError
from imagepack.formats.partitions import Firmware
from imagepack.oci.metadata import LaunchOptions, NetworkType, VolumeType
from imagepack.tools import qemu_img as qemu
from imagepack.tools.programs import Program, find_program

KVM_DEVICE = Path("/dev/kvm")
KVM_GET_API_VERSION = 0xAE00  # _IO(KVMIO, 0x00)
KVM_API_VERSION = 12  # the only stable version since Linux 2.6.22
QEMU_SYSTEM = Program(("qemu-system-x86_64",), variable="IMAGEPACK_QEMU_SYSTEM", missing="is missing")
INSTALL_HINT = "install it with 'apt-get install qemu-system-x86 ovmf' (Debian/Ubuntu)"

# OVMF's code and the template of its variable store, as distributions install them (4 MiB builds first).
OVMF_PAIRS = (
    ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),  # Debian, Ubuntu
    ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"),
    ("/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"),  # Fedora, RHEL
    ("/usr/share/edk2/x64/OVMF_CODE.4m.fd", "/usr/share/edk2/x64/OVMF_VARS.4m.fd"),  # Arch
)


class Accelerator(StrEnum):
    KVM = "kvm"
    TCG = "tcg"  # qemu's own CPU emulation: slower, works anywhere


class DiskBus(StrEnum):
    VIRTIO_BLK = "virtio-blk"
    IDE = "ide"
    NVME = "nvme"
    VIRTIO_SCSI = "virtio-scsi"


class Nic(StrEnum):
    VIRTIO_NET = "virtio-net"
    E1000 = "e1000"
    E1000E = "e1000e"


@dataclass(frozen=True)
class Devices:
    disk: DiskBus
    nic: Nic

    def describe(self) -> str:
        return f"boot disk on {self.disk.value}, network {self.nic.value}"


# The boot volume type OCI attaches, and the closest device qemu has: iSCSI and VFIO volumes reach a NATIVE
# instance as a local NVMe-like disk with the guest's own driver, never through virtio.
_DISK_FOR = {
    VolumeType.PARAVIRTUALIZED: DiskBus.VIRTIO_BLK,
    VolumeType.IDE: DiskBus.IDE,
    VolumeType.ISCSI: DiskBus.NVME,
    VolumeType.VFIO: DiskBus.NVME,
    VolumeType.SCSI: DiskBus.VIRTIO_SCSI,
}
# VFIO is a host NIC's virtual function (Mellanox, Intel): no local equivalent; an Intel NIC at least needs the
# guest's own driver rather than virtio.
_NIC_FOR = {
    NetworkType.PARAVIRTUALIZED: Nic.VIRTIO_NET,
    NetworkType.ACCELERATEDPV: Nic.VIRTIO_NET,
    NetworkType.E1000: Nic.E1000,
    NetworkType.VFIO: Nic.E1000E,
}


def devices_for(launch: LaunchOptions) -> Devices:
    return Devices(_DISK_FOR[launch.boot_volume_type], _NIC_FOR[launch.network_type])


def kvm_unusable_reason() -> str | None:
    """Why KVM cannot be used here, or None when /dev/kvm opens read-write and answers the stable API version."""
    try:
        fd = os.open(KVM_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return f"{KVM_DEVICE} does not exist (no hardware virtualisation, or the kvm module is not loaded)"
        return f"{KVM_DEVICE} cannot be opened: {e.strerror}"
    try:
        version = fcntl.ioctl(fd, KVM_GET_API_VERSION)
    except OSError as e:
        return f"{KVM_DEVICE} does not answer: {e.strerror}"
    finally:
        os.close(fd)
    if version != KVM_API_VERSION:
        return f"{KVM_DEVICE} speaks KVM API {version}, not {KVM_API_VERSION}"
    return None


def find_qemu_system() -> Path:
    """qemu-system-x86_64 (IMAGEPACK_QEMU_SYSTEM wins over PATH)."""
    return Path(find_program(QEMU_SYSTEM, _missing))


def _missing(where: str) -> BootError:
    return BootError(f"cannot boot the image: {where}; {INSTALL_HINT}", code="boot.no-qemu-system")


@dataclass(frozen=True)
class Ovmf:
    code: Path
    vars_template: Path


def find_ovmf() -> Ovmf:
    for code, variables in OVMF_PAIRS:
        if os.access(code, os.R_OK) and os.access(variables, os.R_OK):
            return Ovmf(Path(code), Path(variables))
    raise BootError(
        f"cannot boot under UEFI_64: no OVMF firmware (looked for {OVMF_PAIRS[0][0]}); {INSTALL_HINT}",
        code="boot.no-ovmf",
    )


@dataclass(frozen=True)
class Machine:
    """Everything one run of the virtual machine needs; all paths but the disk's are in a temporary directory."""

    disk: qemu.ImageRef  # the input, read-only
    overlay: Path  # a qcow2 without a backing file of its own: the disk becomes its backing when qemu starts
    firmware: Firmware
    devices: Devices
    accelerator: Accelerator
    serial_log: Path
    firmware_log: Path  # SeaBIOS's messages (its debug port); OVMF writes its own to the serial console
    ovmf: Ovmf | None = None
    ovmf_vars: Path | None = None  # the throw-away copy of the variable store
    seed: Path | None = None
    memory_mib: int = 1024


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))


def _escape(path: Path) -> str:
    return str(path).replace(",", ",,")  # qemu's option syntax doubles a literal comma


# Every drive the guest must see has a place in the firmware's boot order, the boot disk first: OVMF connects
# only the devices the boot order names when qemu gives it one, and leaves every other controller as it was.
DISK_BOOTINDEX = 0
SEED_BOOTINDEX = 1


def _disk_args(bus: DiskBus) -> list[str]:
    boot = f"drive=disk,bootindex={DISK_BOOTINDEX}"
    if bus is DiskBus.VIRTIO_BLK:
        return ["-device", f"virtio-blk-pci,{boot}"]
    if bus is DiskBus.IDE:
        return ["-device", f"ide-hd,bus=ide.0,{boot}"]
    if bus is DiskBus.NVME:
        return ["-device", f"nvme,serial=imagepack-boot,{boot}"]  # an NVMe controller must have a serial number
    return ["-device", "virtio-scsi-pci,id=scsi0", "-device", f"scsi-hd,bus=scsi0.0,{boot}"]


def command_line(machine: Machine, qemu_system: Path) -> list[str]:
    firmware_nodes: list[str] = []
    machine_type = "pc"  # i440FX: it has the IDE controller EMULATED mode needs, and boots SeaBIOS and OVMF alike
    if machine.firmware is Firmware.UEFI_64:
        assert machine.ovmf is not None and machine.ovmf_vars is not None
        code = {"driver": "file", "filename": str(machine.ovmf.code), "node-name": "ovmf-code", "read-only": True}
        variables = {"driver": "file", "filename": str(machine.ovmf_vars), "node-name": "ovmf-vars"}
        firmware_nodes = ["-blockdev", _json(code), "-blockdev", _json(variables)]
        machine_type += ",pflash0=ovmf-code,pflash1=ovmf-vars"
    overlay = {
        "driver": "qcow2",
        "node-name": "disk",
        "file": {"driver": "file", "filename": str(machine.overlay)},
        "backing": "base",  # the input, as the read-only node below: every write of the guest lands in the overlay
    }
    nic = {Nic.VIRTIO_NET: "virtio-net-pci", Nic.E1000: "e1000", Nic.E1000E: "e1000e"}[machine.devices.nic]
    seed: list[str] = []
    if machine.seed is not None:
        node = {
            "driver": "raw",
            "node-name": "seed",
            "read-only": True,
            "file": {"driver": "file", "filename": str(machine.seed), "read-only": True},
        }
        # A CD-ROM on the second IDE channel whatever the launch mode: cloud-init finds it by its label, late in
        # the boot, when every driver is loaded; it is the test's, not part of how OCI attaches the boot disk.
        # It has a place in the boot order, after the disk: OVMF sets up only the devices of the boot order
        # (with bootindex on any device, qemu hands it one), and a guest's IDE driver never finds a drive on a
        # channel the firmware left alone. SeaBIOS would only try it after the disk, and it boots nothing.
        seed = ["-blockdev", _json(node), "-device", f"ide-cd,bus=ide.1,drive=seed,bootindex={SEED_BOOTINDEX}"]
    return [
        str(qemu_system),
        "-nodefaults",  # only the devices listed here
        "-no-user-config",
        "-machine",
        machine_type,
        "-accel",
        machine.accelerator.value,
        "-cpu",
        # KVM: the host's CPU, as an instance has it (x86-64-v2 and later images need more than qemu64), without
        # IA32_ARCH_CAPABILITIES, which nested hypervisors may refuse to set (qemu then aborts at start).
        # TCG: every feature qemu can emulate.
        "host,-arch-capabilities" if machine.accelerator is Accelerator.KVM else "max",
        "-m",
        str(machine.memory_mib),
        "-display",
        "none",
        "-monitor",
        "none",
        "-no-reboot",  # a guest that reboots ends the test: the test is one boot
        # The image is untrusted: qemu may not start programs, raise its privileges or use obsolete system calls.
        "-sandbox",
        "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
        "-chardev",
        f"file,id=serial0,path={_escape(machine.serial_log)}",
        "-serial",
        "chardev:serial0",  # COM1: where cloud images put their console (console=ttyS0)
        "-chardev",
        f"file,id=firmware-log,path={_escape(machine.firmware_log)}",
        "-device",
        "isa-debugcon,iobase=0x402,chardev=firmware-log",  # SeaBIOS's debug port
        *firmware_nodes,
        "-blockdev",
        _json(machine.disk.blockdev("base")),
        "-blockdev",
        _json(overlay),
        *_disk_args(machine.devices.disk),
        # User-mode networking, cut off from the host and the outside (restrict=on); no option ROM, so that the
        # firmware does not try a network boot the instance would never make.
        "-netdev",
        "user,id=net0,restrict=on",
        "-device",
        f"{nic},netdev=net0,romfile=",
        *seed,
    ]
