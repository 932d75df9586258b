"""Reading a booting machine's output as it comes: the serial console (OVMF, the boot loader, the kernel, the
guest) and SeaBIOS's debug port. It notes when each stage is reached (firmware, boot loader, kernel, user space,
cloud-init, network, marker) and the messages that end a boot early (no boot loader, no root file system, a kernel
panic)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum


class Stage(StrEnum):
    FIRMWARE = "firmware"  # the first output of the machine
    BOOT_LOADER = "boot_loader"
    KERNEL = "kernel"
    USERSPACE = "userspace"  # the kernel started the first program (init, systemd)
    CLOUD_INIT = "cloud_init"
    NETWORK = "network"  # an interface other than loopback has an address
    MARKER = "marker"


class Ending(StrEnum):
    """What the console said that means the boot will go no further."""

    NO_BOOT_LOADER = "no-boot-loader"
    NO_ROOT = "no-root-file-system"
    KERNEL_PANIC = "kernel-panic"


# The firmware handed over to code from the disk. SeaBIOS says so on its debug port once it has read a boot
# sector with a signature; OVMF on the console when it starts a boot option that is not one of its own (Fv(...)).
_BOOT_LOADER_STARTED = (
    re.compile(r"^Booting from [0-9a-f]{4}:[0-9a-f]{4}"),
    re.compile(r'BdsDxe: starting Boot[0-9A-F]{4} ".*" from (?!Fv\()'),
    re.compile(r"Welcome to GRUB|^GRUB |SYSLINUX|ISOLINUX|systemd-boot"),
)
# The firmware found nothing it could start on the disk. OVMF falls back to its built-in shell.
_NO_BOOT_LOADER = (
    re.compile(r"^No bootable device"),  # SeaBIOS
    re.compile(r'BdsDxe: (loading|starting) Boot[0-9A-F]{4} "EFI Internal Shell"'),
    re.compile(r"UEFI Interactive Shell|No bootable option or device was found"),
)
_KERNEL = re.compile(r"Linux version \d")
# What initramfs-tools (Debian, Ubuntu), dracut (Oracle Linux, RHEL), systemd and the kernel itself print when the
# root file system's device never appears or cannot be mounted.
_NO_ROOT = (
    re.compile(r"Gave up waiting for root (file system )?device"),
    re.compile(r"ALERT!\s+\S+ does not exist"),
    re.compile(r"dracut-initqueue.*[Tt]imeout"),
    re.compile(r"dracut Warning: Could not boot"),
    re.compile(r"Warning: /dev/\S+ does not exist"),
    re.compile(r"Timed out waiting for device .*(root|sysroot)"),
    re.compile(r"VFS: Unable to mount root fs"),
    re.compile(r"VFS: Cannot open root device"),
)
_PANIC = re.compile(r"Kernel panic - not syncing")
_USERSPACE = re.compile(r"Run /\S* as init process|systemd\[1\]: |Welcome to .*!|INIT: version")
_CLOUD_INIT = re.compile(r"cloud-init\[\d+\]: Cloud-init v\.|ci-info: ")
_IPV4 = r"\d{1,3}(?:\.\d{1,3}){3}"
# An interface with an address: a row of cloud-init's "Net device info" table (device, up, address, ..., scope),
# which cloud-init writes on the console whatever its output settings, or a DHCP client's lease.
_ROW = r"ci-info: \|\s*(?P<dev>(?!lo\s)[^|\s]+)\s*\|\s*True\s*\|\s*"  # an interface that is up, not loopback
_NETWORK = (
    re.compile(rf"{_ROW}(?P<addr>(?!127\.){_IPV4})\s*\|"),
    re.compile(rf"{_ROW}(?P<addr>[0-9a-f]*:[0-9a-f:]+)\S*\s*\|.*\|\s*global\s*\|"),  # IPv6, global scope
    re.compile(rf"udhcpc: lease of (?P<addr>{_IPV4}) obtained"),
    re.compile(rf"dhclient.*: bound to (?P<addr>{_IPV4})"),
    re.compile(rf"dhcp4 \((?P<dev>[^)]+)\):.*address (?P<addr>{_IPV4})"),  # NetworkManager
)
_ESCAPES = re.compile(r"\x1b\[[0-9;?=]*[A-Za-z]|\x1b[()][A-Z0-9]")  # terminal control sequences (OVMF, GRUB)


@dataclass
class Console:
    """Fed with the text of both logs as it arrives, with the seconds since the machine started."""

    expect: re.Pattern[str]
    reached: dict[Stage, float] = field(default_factory=dict)
    network: str | None = None  # the first interface seen with an address: "eth0 10.0.2.15"
    ending: Ending | None = None
    ending_line: str | None = None
    lines: list[str] = field(default_factory=list)  # the serial console's, for the report's last lines
    _pending: dict[str, str] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return Stage.MARKER in self.reached or self.ending is not None

    @property
    def last_stage(self) -> Stage | None:
        for stage in reversed(Stage):
            if stage in self.reached:
                return stage
        return None

    def feed(self, text: str, seconds: float, *, firmware_port: bool = False) -> None:
        key = "firmware" if firmware_port else "serial"
        data = self._pending.get(key, "") + _ESCAPES.sub("", text)
        *complete, rest = re.split(r"\r\n|\r|\n", data)
        self._pending[key] = rest
        for line in complete:
            self._line(line, seconds, serial=not firmware_port)
        # A marker need not end its line (a prompt); only the marker is looked for in an unfinished line.
        if rest and not firmware_port and self.expect.search(rest):
            self._reach(Stage.MARKER, seconds)

    def _reach(self, stage: Stage, seconds: float) -> None:
        self.reached.setdefault(stage, seconds)

    def _end(self, ending: Ending, line: str) -> None:
        if self.ending is None and Stage.MARKER not in self.reached:
            self.ending, self.ending_line = ending, line.strip()

    def _line(self, line: str, seconds: float, *, serial: bool) -> None:
        if serial:
            self.lines.append(line)
            del self.lines[:-200]
        if self.finished:
            return
        if line.strip():
            self._reach(Stage.FIRMWARE, seconds)  # the machine said something: its firmware at least has run
        if serial and self.expect.search(line):
            self._reach(Stage.MARKER, seconds)
            return
        if any(p.search(line) for p in _BOOT_LOADER_STARTED):
            self._reach(Stage.BOOT_LOADER, seconds)
        elif Stage.BOOT_LOADER not in self.reached and any(p.search(line) for p in _NO_BOOT_LOADER):
            self._end(Ending.NO_BOOT_LOADER, line)
        if not serial:
            return
        if _KERNEL.search(line):
            self._reach(Stage.BOOT_LOADER, seconds)  # a kernel was loaded by something
            self._reach(Stage.KERNEL, seconds)
        elif Stage.KERNEL in self.reached and any(p.search(line) for p in _NO_ROOT):
            self._end(Ending.NO_ROOT, line)
        elif Stage.KERNEL in self.reached and _PANIC.search(line):
            self._end(Ending.KERNEL_PANIC, line)
        elif Stage.KERNEL in self.reached:
            self._guest(line, seconds)

    def _guest(self, line: str, seconds: float) -> None:
        """What the guest's own programs print: init, cloud-init, the network."""
        if _USERSPACE.search(line):
            self._reach(Stage.USERSPACE, seconds)
        if _CLOUD_INIT.search(line):
            self._reach(Stage.USERSPACE, seconds)
            self._reach(Stage.CLOUD_INIT, seconds)
        for pattern in _NETWORK:
            found = pattern.search(line)
            if found and self.network is None:
                parts = found.groupdict()
                self.network = " ".join(v for v in (parts.get("dev"), parts["addr"]) if v)
                self._reach(Stage.USERSPACE, seconds)
                self._reach(Stage.NETWORK, seconds)
