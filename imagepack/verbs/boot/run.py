"""A boot test: the input's disk booted read-only in a virtual machine as OCI would launch it (the firmware and
the launch mode's devices from the .oci metadata, or as asked), its console watched until the marker, an ending
message, the machine's own end or the timeout; and a report of how far it got and how long each stage took."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from imagepack.core.errors import BootError, InputError, InvalidValueError
from imagepack.core.openfile import require_regular_file
from imagepack.core.problems import Remedy
from imagepack.core.process import Running, spawn
from imagepack.files.atomic import atomic_output, check_target
from imagepack.formats import ImageFormat, SafetyPolicy
from imagepack.formats.partitions import Firmware, PartitionLayout, PartitionTable
from imagepack.oci.metadata import LaunchMode, LaunchOptions, launch_options_for
from imagepack.sources.open import OpenOptions, Source, open_source
from imagepack.tools import qemu_img as qemu
from imagepack.verbs.boot.console import Console, Ending, Stage
from imagepack.verbs.boot.machine import (
    Accelerator,
    Devices,
    Machine,
    command_line,
    devices_for,
    find_ovmf,
    find_qemu_system,
    kvm_unusable_reason,
)
from imagepack.verbs.seed import default_user_data, make_seed_iso

# What the default seed's user-data makes cloud-init print on the console when it has run (a marker the seed's
# user-data can carry: letters, digits and ._:=-).
DEFAULT_MARKER = "imagepack-boot-test:cloud-init-done"
DEFAULT_TIMEOUT = 300.0
POLL_SECONDS = 0.05
_KVM_FAILED = re.compile(r"KVM internal error|kvm run failed|failed to set MSR")


class Outcome(StrEnum):
    BOOTED = "booted"
    NO_BOOT_LOADER = Ending.NO_BOOT_LOADER.value
    NO_ROOT = Ending.NO_ROOT.value
    KERNEL_PANIC = Ending.KERNEL_PANIC.value
    NO_NETWORK = "no-network"  # cloud-init ran, and no interface came up with an address
    STOPPED = "stopped"  # the machine powered off, rebooted or crashed before the marker
    TIMEOUT = "timeout"


# Told as the boot goes: once with no stage when the machine starts (the report says how it boots and what it
# waits for), then with each stage as the console first shows it, and the seconds since the start.
BootWatcher = Callable[["BootReport", Stage | None, float], None]


@dataclass(frozen=True)
class BootRequest:
    """How to boot. None means: from the .oci metadata (launch mode, firmware), the disk's partition table
    (firmware of a plain disk), KVM when usable, the default seed and its marker."""

    launch_mode: LaunchMode | None = None
    firmware: Firmware | None = None
    seed: Path | None = None
    expect: str | None = None  # a regular expression the console must print; default: the default seed's marker
    timeout: float = DEFAULT_TIMEOUT
    console_log: Path | None = None  # where to keep the serial console's output
    replace_console_log: bool = False
    accelerator: Accelerator | None = None
    on_stage: BootWatcher | None = field(default=None, compare=False, repr=False)

    def pattern(self) -> re.Pattern[str]:
        text = self.expect if self.expect is not None else re.escape(DEFAULT_MARKER)
        try:
            return re.compile(text)
        except re.error as e:
            raise InvalidValueError(f"expected output {text!r} is not a regular expression: {e}") from None


@dataclass
class BootReport:
    source: Path
    launch_mode: LaunchMode
    firmware: Firmware
    devices: Devices
    accelerator: Accelerator
    accelerator_note: str | None  # why not KVM, or why KVM was left for TCG
    outcome: Outcome
    message: str
    times: dict[Stage, float] = field(default_factory=dict)  # seconds from the machine's start
    timeout: float = DEFAULT_TIMEOUT
    network: str | None = None  # the interface seen with an address ("eth0 10.0.2.15"), if any
    network_checked: bool = False  # whether success required the network (cloud-init's marker) or it was seen
    remedy: Remedy | None = None  # what may make the next run go further
    expect: str = ""  # the regular expression waited for, or the default seed's marker (plain text)
    seed: Path | None = None  # the seed given
    default_seed: bool = False  # whether the default seed was attached
    console_log: Path | None = None
    seconds: float = 0.0
    last_lines: list[str] = field(default_factory=list)

    @property
    def booted(self) -> bool:
        return self.outcome is Outcome.BOOTED

    @property
    def reached(self) -> Stage | None:
        return max(self.times, key=list(Stage).index) if self.times else None

    def to_json(self) -> dict[str, Any]:
        return {
            "source": str(self.source),
            "booted": self.booted,
            "outcome": self.outcome.value,
            "message": self.message,
            "reached": self.reached.value if self.reached else None,
            "launch_mode": self.launch_mode.value,
            "firmware": self.firmware.value,
            "disk_bus": self.devices.disk.value,
            "nic": self.devices.nic.value,
            "accelerator": self.accelerator.value,
            "accelerator_note": self.accelerator_note,
            "seconds_to": {stage.value: self.times.get(stage) for stage in Stage},
            "network": self.network,
            "network_checked": self.network_checked,
            "remedy": self.remedy.value if self.remedy else None,
            "timeout": self.timeout,
            "expect": self.expect,
            "seed": str(self.seed) if self.seed else "default" if self.default_seed else None,
            "console_log": str(self.console_log) if self.console_log else None,
            "seconds": round(self.seconds, 2),
            "last_lines": self.last_lines,
        }


def boot_test(path: Path, request: BootRequest = BootRequest(), *, policy: SafetyPolicy = SafetyPolicy()) -> BootReport:
    """Open `path` through every check of an input (any disk format, a .oci, compressed) and boot it."""
    request.pattern()  # a bad expression is refused before anything is read
    with open_source(path, OpenOptions(policy=policy)) as source:
        return boot_source(source, request)


def default_seed(directory: Path, marker: str) -> Path:
    """The one place the default seed is made: a NoCloud seed ISO in `directory` whose user-data makes cloud-init
    print `marker` on the console once it has run."""
    path = directory / "seed.iso"
    make_seed_iso(path, user_data=default_user_data(marker))
    return path


def launch_for(source: Source, request: BootRequest) -> tuple[LaunchMode, LaunchOptions]:
    """The launch mode and options to boot with: the request's, over the archive's metadata, over the defaults
    for a plain disk (PARAVIRTUALIZED, the firmware its partition table implies)."""
    layout = source.disk.layout
    if source.archive is not None:
        metadata = source.archive.metadata
        mode, launch = metadata.launch_mode, metadata.launch
        firmware = request.firmware or launch.firmware
        if request.launch_mode is not None and request.launch_mode is not LaunchMode.CUSTOM:
            mode, launch = request.launch_mode, launch_options_for(request.launch_mode, firmware)
        return mode, dataclasses.replace(launch, firmware=firmware)
    mode = request.launch_mode or LaunchMode.PARAVIRTUALIZED
    if mode is LaunchMode.CUSTOM:
        raise InvalidValueError(
            "launch mode CUSTOM takes its devices from a .oci archive's launch options; boot a plain disk as "
            "NATIVE, PARAVIRTUALIZED or EMULATED"
        )
    guessed = request.firmware or (layout.firmware_guess if layout else None)
    if guessed is None:
        raise InputError(
            f"{source.path}: the disk has no partition table to tell its firmware from",
            code="boot.firmware-unknown",
            remedy=Remedy.STATE_FIRMWARE,
        )
    return mode, launch_options_for(mode, guessed)


def boot_source(source: Source, request: BootRequest) -> BootReport:
    """Boot an opened input. Raises BootError when no machine could run (no qemu-system or firmware, qemu
    refused to start); every boot that ran, however far it got, is a report."""
    pattern = request.pattern()
    if request.seed is not None:
        require_regular_file(request.seed)
    mode, launch = launch_for(source, request)
    devices = devices_for(launch)
    firmware = launch.firmware
    qemu_system = find_qemu_system()
    ovmf = find_ovmf() if firmware is Firmware.UEFI_64 else None
    accelerator, note = _accelerator(request.accelerator)
    expect = request.expect if request.expect is not None else DEFAULT_MARKER
    report = BootReport(source.path, mode, firmware, devices, accelerator, note, Outcome.TIMEOUT, "", expect=expect)
    report.timeout = request.timeout
    layout = source.disk.layout or PartitionLayout(PartitionTable.NONE)
    if firmware is Firmware.BIOS and not layout.mbr_boot_code:
        # SeaBIOS would jump into a sector of zeroes (or refuse one without a signature): nothing to wait for.
        report.outcome, report.message = Outcome.NO_BOOT_LOADER, _no_boot_loader(firmware, layout)
        return report
    if request.console_log is not None:
        check_target(request.console_log, force=request.replace_console_log, inputs=(source.path,))
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="imagepack-boot-") as tmp,
        _serial_log(request.console_log, Path(tmp)) as serial_log,
    ):
        seed = request.seed
        if seed is None and request.expect is None:
            # Success is the default seed's marker: the machine needs that seed. With --expect the image's own
            # output is the test, and the image gets no seed it did not ask for.
            seed = default_seed(Path(tmp), DEFAULT_MARKER)
            report.default_seed = True
        report.seed = request.seed
        overlay = Path(tmp, "overlay.qcow2")
        qemu.create(overlay, ImageFormat.QCOW2, source.disk.virtual_size)
        machine = Machine(
            disk=source.disk.ref,
            overlay=overlay,
            firmware=firmware,
            devices=devices,
            accelerator=accelerator,
            serial_log=serial_log,
            firmware_log=Path(tmp, "firmware.log"),
            ovmf=ovmf,
            ovmf_vars=Path(tmp, "OVMF_VARS.fd") if ovmf else None,
            seed=seed,
        )
        deadline = started + request.timeout
        watch = _watcher(report, request.on_stage)
        watch(None)
        while True:
            console, ended = _run(machine, qemu_system, pattern, deadline, watch)
            if ended != "kvm-failed":
                break
            # KVM that cannot run this guest (a nested hypervisor without some instruction) says so at once:
            # the same boot again under TCG, with the time it has left.
            report.accelerator = Accelerator.TCG
            report.accelerator_note = "KVM could not run this guest (KVM internal error); ran under TCG"
            machine = dataclasses.replace(machine, accelerator=Accelerator.TCG)
        report.times = dict(console.reached)
        report.last_lines = [line for line in console.lines if line.strip()][-20:]
        report.network = console.network
        report.outcome, report.message = _verdict(console, ended, report, layout, request)
        report.console_log = request.console_log
    report.seconds = time.monotonic() - started
    return report


@contextlib.contextmanager
def _serial_log(keep: Path | None, tmp: Path) -> Iterator[Path]:
    """Where qemu writes the serial console: straight into the kept log's temporary name, which takes its own
    name when the test is over, or into the temporary directory."""
    if keep is None:
        yield tmp / "serial.log"
        return
    with atomic_output(keep) as temp:
        yield temp


def _accelerator(wanted: Accelerator | None) -> tuple[Accelerator, str | None]:
    reason = kvm_unusable_reason()
    if wanted is Accelerator.KVM and reason is not None:
        raise BootError(f"cannot boot under KVM: {reason}", code="boot.no-kvm")
    if wanted is not None:
        return wanted, None
    if reason is not None:
        return Accelerator.TCG, f"{reason}; ran under TCG (slower)"
    return Accelerator.KVM, None


def _watcher(report: BootReport, on_stage: BootWatcher | None) -> Callable[[Console | None], None]:
    """Tells the request's watcher the start (no console yet), then each stage the console has reached, once
    (a run again under TCG does not tell them twice)."""
    told: set[Stage] = set()

    def watch(console: Console | None) -> None:
        if on_stage is None:
            return
        if console is None:
            on_stage(report, None, 0.0)
            return
        report.network = console.network
        for stage, seconds in sorted(console.reached.items(), key=lambda item: item[1]):
            if stage not in told:
                told.add(stage)
                on_stage(report, stage, seconds)

    return watch


def _run(
    machine: Machine,
    qemu_system: Path,
    pattern: re.Pattern[str],
    deadline: float,
    watch: Callable[[Console | None], None],
) -> tuple[Console, str]:
    """One run of the machine, until the console says it is finished, the machine ends, or the deadline.
    Returns the console and how it ended: "console", "exited", "timeout" or "kvm-failed"."""
    console = Console(pattern)
    if machine.ovmf is not None and machine.ovmf_vars is not None:
        shutil.copyfile(machine.ovmf.vars_template, machine.ovmf_vars)  # fresh variables for every run
    for log in (machine.serial_log, machine.firmware_log):
        log.write_bytes(b"")
    argv = command_line(machine, qemu_system)
    # The firmware's log first: a boot loader that prints its marker at once still has its stage noted first.
    offsets = {machine.firmware_log: 0, machine.serial_log: 0}
    with spawn(argv) as vm:
        start = time.monotonic()
        while True:
            status = vm.poll()  # before reading, so that all the output of a machine that has ended is read
            now = time.monotonic() - start
            for log, offset in offsets.items():
                with open(log, "rb") as f:
                    f.seek(offset)
                    data = f.read()
                offsets[log] = offset + len(data)
                if data:
                    console.feed(data.decode("utf-8", "replace"), now, firmware_port=log == machine.firmware_log)
            watch(console)
            if console.finished:
                return console, "console"
            if machine.accelerator is Accelerator.KVM and _KVM_FAILED.search(vm.stderr()):
                return console, "kvm-failed"
            if status is not None:
                if status != 0 and not any(offsets.values()):
                    raise _qemu_failed(vm, status)
                return console, "exited"
            if time.monotonic() >= deadline:
                return console, "timeout"
            time.sleep(POLL_SECONDS)


def _qemu_failed(vm: Running, status: int) -> BootError:
    lines = [line.strip() for line in vm.stderr().splitlines() if line.strip() and "warning" not in line]
    why = lines[-1].removeprefix("qemu-system-x86_64: ") if lines else f"exit status {status}"
    return BootError(
        f"qemu-system-x86_64 could not start the machine: {why}",
        code="boot.qemu-failed",
        detail=f"{' '.join(vm.argv)}\n{vm.stderr()}",
    )


def _no_boot_loader(firmware: Firmware, layout: PartitionLayout) -> str:
    start = f"no boot loader under {firmware.value}"
    if firmware is Firmware.UEFI_64:
        if not layout.has_esp:
            return f"{start}: the disk has no EFI system partition"
        return f"{start}: the firmware found no EFI boot loader it could start in the EFI system partition"
    if layout.table is PartitionTable.NONE:
        return f"{start}: the disk has no boot sector (no MBR signature)"
    if not layout.mbr_boot_code:
        why = f"{start}: the disk's MBR holds no boot code"
        if layout.has_esp and not layout.has_bios_boot:
            why += " (a GPT disk with an EFI system partition and no BIOS boot partition boots only under UEFI_64)"
        return why
    return f"{start}: the firmware found nothing it could start on the disk"


_REACHED = {
    None: "nothing was printed on the console",
    Stage.FIRMWARE: "the firmware started, no boot loader",
    Stage.BOOT_LOADER: "the boot loader started, no kernel message",
    Stage.KERNEL: "the kernel started",
    Stage.USERSPACE: "the kernel started its first program (user space)",
    Stage.CLOUD_INIT: "cloud-init started",
    Stage.NETWORK: "the network came up",
    Stage.MARKER: "the marker was printed",
}


def _verdict(
    console: Console, ended: str, report: BootReport, layout: PartitionLayout, request: BootRequest
) -> tuple[Outcome, str]:
    mode = f"{report.launch_mode.value} ({report.devices.describe()})"
    if Stage.MARKER in console.reached:
        return _reached_marker(console, report, mode, request)
    reached = _REACHED[console.last_stage]
    if console.ending is Ending.NO_BOOT_LOADER:
        return Outcome.NO_BOOT_LOADER, _no_boot_loader(report.firmware, layout)
    if console.ending is Ending.NO_ROOT:
        return Outcome.NO_ROOT, (
            f"the kernel started but found no root file system under {mode}; a missing driver for this launch "
            f"mode is the usual cause (console: {console.ending_line})"
        )
    if console.ending is Ending.KERNEL_PANIC:
        return Outcome.KERNEL_PANIC, f"the kernel panicked under {mode} (console: {console.ending_line})"
    if ended == "exited":
        return Outcome.STOPPED, f"the machine stopped (powered off, rebooted or crashed) before the marker; {reached}"
    message = f"no marker within {request.timeout:g} s; {reached}"
    if report.accelerator is Accelerator.KVM and Stage.KERNEL not in console.reached:
        # Seen on some hosts (nested virtualisation): KVM stops making progress in the boot loader, where the
        # same disk boots under TCG.
        report.remedy = Remedy.USE_TCG
        message += "; KVM may hang at the boot loader on this host"
    return Outcome.TIMEOUT, message


def _reached_marker(console: Console, report: BootReport, mode: str, request: BootRequest) -> tuple[Outcome, str]:
    """A boot that printed its marker works only with a network: cloud-init's marker (the default) comes after
    its table of interfaces, so it must show one with an address; an expected output of the image's own need
    not, and the report then says the network was not checked."""
    booted = f"booted under {report.firmware.value}, {mode}"
    if console.network is not None:
        report.network_checked = True
        return Outcome.BOOTED, f"{booted}; network up ({console.network})"
    if request.expect is None:
        report.network_checked = True
        return Outcome.NO_NETWORK, (
            f"cloud-init ran, but no network interface came up with an address under {mode}; the guest most "
            f"likely has no driver for the {report.devices.nic.value} network device"
        )
    return Outcome.BOOTED, f"{booted}; network NOT checked: no interface with an address was seen on the console"
