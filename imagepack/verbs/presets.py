"""Per-cloud presets: for each platform a disk is shipped to, the file it takes (format, options, name) and the
checks of what the platform refuses and imagepack cannot fix: the container's (size, partition table) and, for a
cloud with readiness rules (verbs/inspect/rules), the guest's. A preset is a library value that maps onto a
target.Target, so `convert --for` and a batch of conversions use the same ones (build.make takes one)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagepack.compression import codec_named
from imagepack.core.errors import InputError, InvalidValueError
from imagepack.core.problems import Problem, Remedy, Severity
from imagepack.formats import DEFAULT_MAX_SIZE, ImageFormat
from imagepack.formats.create_options import option_value
from imagepack.formats.partitions import PartitionTable
from imagepack.sources.disk import partition_layout
from imagepack.sources.open import Source
from imagepack.verbs.inspect.rules import Target as RulesFor
from imagepack.verbs.inspect.rules import Wanted
from imagepack.verbs.inspect.run import readiness
from imagepack.verbs.target import ArchiveKind, Target, TargetKind, disk_format, inner_path
from imagepack.writers.oci.pack import MetadataRequest

MiB = 1024**2
GiB = 1024**3
TiB = 1024**4
# ESXi 7.0's virtual hardware version: the newest that ESXi 7.0 and 8.0 both run (8.0 brought 20, 8.0 U2 21).
ESXI_HWVERSION = "17"


@dataclass(frozen=True)
class Output:
    """One file a preset can write, chosen by how the output's name ends."""

    suffix: str  # ".vhd", ".tar.gz"
    kind: TargetKind
    options: Mapping[str, str] = field(default_factory=dict)  # what the platform needs: not to be changed
    defaults: Mapping[str, str] = field(default_factory=dict)  # what it is written with unless told otherwise

    def describe(self) -> str:
        settings = ", ".join(f"{key}={value}" for key, value in {**self.options, **self.defaults}.items())
        what = "GCE image tarball (disk.raw, sparse GNU tar)" if self.kind is ArchiveKind.GCE else self.kind.value
        return f"{self.suffix}: {what}{' ' + settings if settings else ''}"


@dataclass(frozen=True)
class Checked:
    """What a preset found in a source it takes: its notes and warnings (the guest's findings among them), and what
    it says of the guest (None: a preset with no guest rules)."""

    problems: list[Problem]
    guest: dict[str, Any] | None = None


@dataclass(frozen=True)
class Preset:
    name: str
    platform: str
    outputs: tuple[Output, ...]  # the first is what the preset writes; the others when the name asks for them
    align: int | None = None  # the virtual size must be a whole number of these bytes
    min_size: int | None = None
    max_size: int | None = None
    boot_max_size: int | None = None  # larger still uploads, but only as a data disk (a warning)
    needs_partition_table: bool = False
    checks: str = "—"  # what `--for list` says is checked
    guest_rules: RulesFor | None = None  # the readiness rules the guest inside is checked against

    def output_for(self, path: Path) -> Output:
        """The output `path`'s name asks for; a name the preset does not write is refused, naming one it does."""
        name = path.name.lower()
        found = next((output for output in self.outputs if name.endswith(output.suffix)), None)
        if found is None:
            stem = inner_path(path).stem if codec_named(path) else path.stem
            takes = " or ".join(output.suffix for output in self.outputs)
            raise InvalidValueError(
                f"{path}: {self.platform} takes {takes}, which the name does not end in; "
                f"name it {stem}{self.outputs[0].suffix}",
                code="preset.name-disagrees",
            )
        return found

    def needed_size(self, virtual_size: int) -> int:
        """The smallest virtual size the platform takes that is not smaller than `virtual_size`."""
        size = virtual_size
        if self.align:
            size = -(-size // self.align) * self.align
        return max(size, self.min_size or 0)

    def check(self, source: Source, *, resize_up: bool = False) -> list[Problem]:
        """What the platform would refuse in `source` (errors), and what the output will differ in (notes)."""
        problems: list[Problem] = []
        size = source.virtual_size
        needed = self.needed_size(size)
        layout = partition_layout(source.disk)
        if needed != size and resize_up:
            moved = "; its GPT's backup header moves to the new end" if layout.table is PartitionTable.GPT else ""
            problems.append(
                Problem(
                    "preset.resized",
                    f"the output's virtual size grows by {needed - size:,} bytes to {needed:,} "
                    f"({_human(needed)}), as {self.platform} needs{moved}; the input is unchanged",
                    severity=Severity.NOTE,
                )
            )
        elif needed != size:
            problems.append(
                Problem(
                    "preset.size-unaligned" if size >= (self.min_size or 0) else "preset.too-small",
                    f"virtual size {size:,} bytes is {self._size_rule(size)}; "
                    f"the output would need {needed:,} bytes ({_human(needed)})",
                    remedy=Remedy.RESIZE_UP,
                    value=str(needed),
                )
            )
        if self.max_size is not None and needed > self.max_size:
            problems.append(
                Problem(
                    "preset.too-large",
                    f"virtual size {needed:,} bytes is above {self.platform}'s limit of {_human(self.max_size)}",
                )
            )
        elif self.boot_max_size is not None and needed > self.boot_max_size:
            problems.append(
                Problem(
                    "preset.too-large-to-boot",
                    f"virtual size {needed:,} bytes is above the {_human(self.boot_max_size)} {self.platform} "
                    "boots from: the disk can only be a data disk",
                    severity=Severity.WARNING,
                )
            )
        if self.needs_partition_table and layout.table is PartitionTable.NONE:
            problems.append(
                Problem(
                    "preset.no-partition-table",
                    f"the disk has no MBR or GPT partition table; {self.platform} boots only a disk with one",
                )
            )
        return problems

    def refuse(self, source: Source, *, resize_up: bool = False) -> Checked:
        """`check`, and the guest against the preset's readiness rules (read once, through the source as opened),
        with every error the platform would refuse raised in one refusal: a rule's error is a guest that does not
        boot there; a guest not found or not readable is a warning. The notes and warnings are returned, for the
        result to carry."""
        problems = self.check(source, resize_up=resize_up)
        guest = None
        if self.guest_rules is not None:
            checked = readiness(source, str(source.path), Wanted(self.guest_rules))
            problems, guest = [*problems, *checked.problems], checked.guest
        errors = [problem for problem in problems if problem.severity is Severity.ERROR]
        if errors:
            raise InputError.from_problems(errors, subject=source.path)
        return Checked(problems, guest)

    def _size_rule(self, size: int) -> str:
        if self.min_size is not None and size < self.min_size:
            return f"below the {_human(self.min_size)} {self.platform} takes"
        unit = _human(self.align or 1).removeprefix("1 ")
        return f"not a whole number of {unit}, which {self.platform} needs"

    def target_for(self, target: Target, source: Source | None = None, *, resize_up: bool = False) -> Target:
        """`target` as this platform takes it: the kind its name asks of the preset, the preset's options over the
        target's own (which may add options, not change the preset's), grown to the size the platform needs
        (from `source`'s) with `resize_up`. The target's other settings (force, level, checksum...) are kept."""
        output = self.output_for(target.path)
        for key, value in target.options.items():
            value = option_value(disk_format(output.kind), key, value)  # what it may be, before what it must be
            if key in output.options and output.options[key].casefold() != value.casefold():
                raise InvalidValueError(
                    f"-o {key}={value}: {self.platform} needs {key}={output.options[key]}",
                    code="preset.option-conflicts",
                )
        if target.metadata is not None and output.kind is not ArchiveKind.OCI:
            raise InvalidValueError(
                f"{target.path}: image metadata applies only to a .oci target, not {output.kind.value}"
            )
        grow_to = None
        if resize_up and source is not None and self.needed_size(source.virtual_size) != source.virtual_size:
            grow_to = self.needed_size(source.virtual_size)
        return dataclasses.replace(
            target,
            kind=output.kind,
            options={**output.defaults, **target.options, **output.options},
            metadata=(target.metadata or MetadataRequest()) if output.kind is ArchiveKind.OCI else None,
            compression=codec_named(target.path) if output.kind is ArchiveKind.GCE else None,
            grow_to=grow_to,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "platform": self.platform,
            "outputs": [
                {"suffix": o.suffix, "kind": o.kind.value, "options": {**o.options, **o.defaults}} for o in self.outputs
            ],
            "align": self.align,
            "min_size": self.min_size,
            "max_size": self.max_size,
            "checks": self.checks,
        }


def _human(n: int) -> str:
    for unit, size in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n:,} bytes"


_STREAM_VMDK = Output(".vmdk", ImageFormat.VMDK, {"subformat": "streamOptimized"})

PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            "oci",
            "Oracle Cloud",
            (Output(".oci", ArchiveKind.OCI), Output(".qcow2", ImageFormat.QCOW2), _STREAM_VMDK),
            max_size=DEFAULT_MAX_SIZE,
            needs_partition_table=True,
            checks="≤ 400 GiB; a partition table; a .oci's OS on OCI's list",
        ),
        Preset(
            "azure",
            "Azure",
            (Output(".vhd", ImageFormat.VHD, {"subformat": "fixed", "force_size": "on"}),),
            align=MiB,
            # A managed disk upload is 20 MiB to 32 TiB (plus the footer); an OS disk at most 4095 GiB.
            min_size=20 * MiB,
            max_size=32 * TiB,
            boot_max_size=4095 * GiB,
            checks="a whole number of MiB, ≥ 20 MiB (or grown to it); ≤ 32 TiB, ≤ 4095 GiB to boot; "
            "the guest: a boot loader, Hyper-V drivers, console=ttyS0",
            guest_rules=RulesFor.AZURE,
        ),
        Preset(
            "aws",
            "AWS",
            (_STREAM_VMDK,),
            needs_partition_table=True,
            checks="a partition table; the guest: a boot loader, NVMe and ENA drivers",
            guest_rules=RulesFor.AWS,
        ),
        *(
            Preset(
                name,
                "ESXi",
                (
                    Output(
                        ".vmdk",
                        ImageFormat.VMDK,
                        {"subformat": "streamOptimized"},
                        {"adapter_type": "lsilogic", "hwversion": ESXI_HWVERSION},
                    ),
                ),
            )
            for name in ("esxi", "vsphere")
        ),
        Preset(
            "gcp",
            "Google Compute Engine",
            (Output(".tar.gz", ArchiveKind.GCE),),
            align=GiB,
            checks="a whole number of GiB (or grown to it); the guest: a boot loader, virtio-scsi and virtio-net "
            "drivers, console=ttyS0",
            guest_rules=RulesFor.GCP,
        ),
        Preset("virtualbox", "VirtualBox", (Output(".vdi", ImageFormat.VDI),)),
        Preset("hyperv", "Hyper-V", (Output(".vhdx", ImageFormat.VHDX, {"subformat": "dynamic"}),)),
    )
}


def preset_named(name: str) -> Preset:
    found = PRESETS.get(name.strip().lower())
    if found is None:
        raise InvalidValueError(f"unknown target '{name}': use one of {', '.join(PRESETS)}", code="preset.unknown")
    return found
