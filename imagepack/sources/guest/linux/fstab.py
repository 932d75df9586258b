"""/etc/fstab as mount(8) reads it, and whether each entry names a file system that is on this disk: by UUID,
LABEL, PARTUUID, PARTLABEL or LVM name (stable whatever the launch mode), or by a device name such as /dev/sdb1
or /dev/vda1 (which changes between launch modes)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from imagepack.sources.guest.guestfs import GuestFiles
from imagepack.sources.guest.linux.reading import Evidence, GuestReader

FSTAB = "/etc/fstab"
ENTRIES_MOST = 4096
ESCAPE = re.compile(r"\\([0-7]{3})")
PSEUDO = {
    "proc",
    "sysfs",
    "devpts",
    "tmpfs",
    "devtmpfs",
    "cgroup",
    "cgroup2",
    "securityfs",
    "debugfs",
    "hugetlbfs",
    "mqueue",
    "pstore",
    "efivarfs",
    "configfs",
    "binfmt_misc",
    "fusectl",
    "tracefs",
    "bpf",
    "autofs",
    "ramfs",
}
NETWORK = {"nfs", "nfs4", "cifs", "smbfs", "sshfs", "glusterfs", "ceph", "9p", "davfs", "fuse.sshfs"}
BY = {"by-uuid": "uuid", "by-label": "label", "by-partuuid": "partuuid", "by-partlabel": "partlabel"}


class SpecKind(StrEnum):
    UUID = "uuid"
    LABEL = "label"
    PARTUUID = "partuuid"
    PARTLABEL = "partlabel"
    LVM = "lvm"  # /dev/mapper/VG-LV or /dev/VG/LV
    MAPPER = "mapper"  # /dev/mapper/NAME that is not VG-LV shaped (an encrypted volume, multipath)
    DEVICE = "device"  # /dev/sdb1, /dev/vda1, /dev/nvme0n1p1, /dev/disk/by-id/...: a name the launch mode decides
    NONE = "none"  # a pseudo file system (proc, tmpfs) or a bind mount: no disk
    NETWORK = "network"


@dataclass(frozen=True)
class FstabEntry:
    spec: str
    mountpoint: str
    fstype: str
    options: tuple[str, ...]
    kind: SpecKind
    value: str  # what the spec names: the UUID, the label, "VG/LV", the device path
    evidence: Evidence

    @property
    def nofail(self) -> bool:
        return "nofail" in self.options or "noauto" in self.options

    @property
    def is_swap(self) -> bool:
        return self.fstype == "swap"


@dataclass(frozen=True)
class DiskFileSystem:
    """A file system found on the disk, as the caller identified it (any field may be unknown)."""

    ref: str  # the caller's name for it, e.g. a partition or logical volume
    uuid: str | None = None
    label: str | None = None
    partuuid: str | None = None
    partlabel: str | None = None
    lvm: str | None = None  # "VG/LV"


class Resolution(StrEnum):
    RESOLVES = "resolves"
    MISSING = "missing"  # names a file system that is not on this disk
    DEVICE_NAME = "device-name"  # cannot be resolved offline; fragile across launch modes
    NOT_A_DISK = "not-a-disk"


@dataclass(frozen=True)
class Resolved:
    entry: FstabEntry
    resolution: Resolution
    filesystem: str | None  # the matching DiskFileSystem's ref


def unescape(field: str) -> str:
    return ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def read_fstab(reader: GuestReader, path: str = FSTAB) -> list[FstabEntry] | None:
    lines = reader.lines(path)
    if lines is None:
        return None
    entries: list[FstabEntry] = []
    for number, line in lines:
        fields = line.split()
        if not fields or fields[0].startswith("#") or len(fields) < 2:
            continue
        if len(entries) >= ENTRIES_MOST:
            reader.note(path, f"only the first {ENTRIES_MOST} entries were read")
            break
        spec, mountpoint = unescape(fields[0]), unescape(fields[1])
        fstype = unescape(fields[2]) if len(fields) > 2 else "auto"
        options = tuple(unescape(fields[3]).split(",")) if len(fields) > 3 else ("defaults",)
        kind, value = spec_kind(spec, fstype, options)
        entries.append(FstabEntry(spec, mountpoint, fstype, options, kind, value, Evidence(path, number, line.strip())))
    return entries


def spec_kind(spec: str, fstype: str = "auto", options: Sequence[str] = ()) -> tuple[SpecKind, str]:
    """What an fstab (or crypttab) first field names, and the name itself."""
    tag, _, tagged = spec.partition("=")
    if tagged and tag.upper() in ("UUID", "LABEL", "PARTUUID", "PARTLABEL"):
        return SpecKind(tag.lower()), tagged.strip("\"'")
    if "bind" in options or "rbind" in options or fstype in PSEUDO or spec in ("none", "proc", "tmpfs"):
        return SpecKind.NONE, spec
    if fstype in NETWORK or spec.startswith("//") or re.match(r"^[^/]+:/", spec):
        return SpecKind.NETWORK, spec
    parts = spec.split("/")
    if spec.startswith("/dev/disk/") and len(parts) == 5 and parts[3] in BY:
        return SpecKind(BY[parts[3]]), parts[4]
    if spec.startswith("/dev/mapper/"):
        name = spec.removeprefix("/dev/mapper/")
        lvm = _mapper_lvm(name)
        return (SpecKind.LVM, lvm) if lvm else (SpecKind.MAPPER, name)
    if len(parts) == 4 and parts[1] == "dev" and parts[2] not in ("disk", "mapper", "md", "block", "by-id"):
        return SpecKind.LVM, f"{parts[2]}/{parts[3]}"
    if spec.startswith("/dev/"):
        return SpecKind.DEVICE, spec
    return SpecKind.NONE, spec


def _mapper_lvm(name: str) -> str | None:
    """device-mapper's VG-LV name, with the doubled dashes of a name that holds one: 'my--vg-root' is my-vg/root."""
    pieces = re.split(r"(?<!-)-(?!-)", name)
    if len(pieces) != 2 or not all(pieces):
        return None
    return "/".join(p.replace("--", "-") for p in pieces)


def find_filesystem(entry: FstabEntry, filesystems: Sequence[DiskFileSystem]) -> DiskFileSystem | None:
    """The file system on the disk an fstab entry names by a stable name, for mounting the guest as it would."""
    for fs in filesystems:
        if entry.kind is SpecKind.UUID and fs.uuid and fs.uuid.lower() == entry.value.lower():
            return fs
        if entry.kind is SpecKind.PARTUUID and fs.partuuid and fs.partuuid.lower() == entry.value.lower():
            return fs
        if entry.kind is SpecKind.LABEL and fs.label == entry.value:
            return fs
        if entry.kind is SpecKind.PARTLABEL and fs.partlabel == entry.value:
            return fs
        if entry.kind is SpecKind.LVM and fs.lvm == entry.value:
            return fs
    return None


def resolve_fstab(entries: Sequence[FstabEntry], filesystems: Sequence[DiskFileSystem]) -> list[Resolved]:
    """Each entry: resolves to a file system on the disk, names one that is missing, names a device, or no disk."""
    resolved = []
    for entry in entries:
        if entry.kind in (SpecKind.NONE, SpecKind.NETWORK):
            resolved.append(Resolved(entry, Resolution.NOT_A_DISK, None))
        elif entry.kind in (SpecKind.DEVICE, SpecKind.MAPPER):
            resolved.append(Resolved(entry, Resolution.DEVICE_NAME, None))
        else:
            fs = find_filesystem(entry, filesystems)
            resolved.append(Resolved(entry, Resolution.RESOLVES if fs else Resolution.MISSING, fs.ref if fs else None))
    return resolved


def mount_plan(entries: Sequence[FstabEntry], filesystems: Sequence[DiskFileSystem]) -> list[Resolved]:
    """The disk file systems the guest mounts at boot, where it mounts them, parents before children: what a
    reader assembles to see the guest's tree as it would. Swap, `noauto`, bind, pseudo and network entries,
    and entries that do not resolve to a file system on this disk, are left out."""
    plan = [
        r
        for r in resolve_fstab(entries, filesystems)
        if r.resolution is Resolution.RESOLVES
        and not r.entry.is_swap
        and "noauto" not in r.entry.options
        and r.entry.mountpoint.startswith("/")
    ]
    return sorted(plan, key=lambda r: len([p for p in r.entry.mountpoint.split("/") if p]))


def fstab_of(files: GuestFiles) -> list[FstabEntry] | None:
    """The guest's /etc/fstab entries, read through the guest view with the usual bounds."""
    return read_fstab(GuestReader(files))
