"""The guest's tree put together as its own boot would: the root file system (the one holding /etc/fstab and an
os-release or an older release file), then the file systems its fstab mounts (/boot, /boot/efi, /usr, ...) found
on this disk by UUID=, LABEL=, PARTUUID=, /dev/mapper/VG-LV or /dev/VG/LV. A mount naming nothing on this disk is
left out and said."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from imagepack.sources.guest.linux.fstab import DiskFileSystem, FstabEntry, Resolved, SpecKind, fstab_of, mount_plan
from imagepack.sources.guest.storage import Block
from imagepack.sources.guest.tree import GuestTree, split
from imagepack.sources.guest.volumes import Volume, VolumeError

MAX_MOUNTS = 64
# What states a Linux system: os-release, or on older ones (RHEL 6 and its kin) their own release file.
RELEASE_FILES = ("/etc/os-release", "/usr/lib/os-release", "/etc/oracle-release", "/etc/redhat-release",
                 "/etc/centos-release")  # fmt: skip


@dataclass
class Opened:
    """The file systems that could be opened, by block name, and why the others could not."""

    volumes: dict[str, tuple[Block, Volume]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def open_volumes(found: list[Block]) -> Opened:
    opened = Opened()
    for block in found:
        if not block.found.readable:
            continue
        try:
            opened.volumes[block.name] = (block, Volume(block.found.type, block.window()))
        except VolumeError as e:
            opened.errors[block.name] = str(e)
    return opened


def _holds_linux_root(volume: Volume) -> bool:
    tree = GuestTree(volume)
    return tree.kind("/etc/fstab") is not None and any(tree.kind(p) is not None for p in RELEASE_FILES)


def disk_filesystems(blocks: Iterable[Block]) -> list[DiskFileSystem]:
    """What each block is named by (UUID, label, PARTUUID, partition name, VG/LV), as the fstab reader resolves
    the guest's names against them: one resolution for mounting the guest and for checking its fstab."""
    found = []
    for block in blocks:
        lvm = block.facts.get("volume_group"), block.facts.get("logical_volume")
        found.append(
            DiskFileSystem(
                ref=block.name,
                uuid=block.found.uuid,
                label=block.found.label,
                partuuid=block.facts.get("partuuid"),
                partlabel=block.facts.get("partition_name"),
                lvm=f"{lvm[0]}/{lvm[1]}" if all(lvm) else None,
            )
        )
    return found


def _left_out(entries: list[FstabEntry], plan: list[Resolved], opened: Opened) -> list[dict[str, Any]]:
    """The fstab's disk mounts that are not assembled, and why."""
    planned = {id(r.entry): r.filesystem for r in plan}
    left = []
    for entry in entries:
        if entry.is_swap or entry.kind in (SpecKind.NONE, SpecKind.NETWORK) or not entry.mountpoint.startswith("/"):
            continue
        if id(entry) in planned:
            name = planned[id(entry)]
            if ".." in split(entry.mountpoint):
                why = "a mount point with '..'"
            elif name not in opened.volumes:
                why = f"{name} cannot be read" + (f": {opened.errors[name]}" if name in opened.errors else "")
            else:
                continue
        elif entry.kind in (SpecKind.DEVICE, SpecKind.MAPPER):
            why = "a device name, which only the running guest resolves"
        else:
            why = "not mounted at boot (noauto)" if "noauto" in entry.options else "not found on this disk"
        left.append({"path": entry.mountpoint, "device": entry.spec, "why": why})
    return left


def assemble_linux(opened: Opened, blocks: list[Block]) -> tuple[GuestTree, dict[str, Any]] | None:
    """The Linux guest's tree and how it was put together, or None when no file system is a Linux root. The
    mounts are the fstab reader's mount plan (linux/fstab.py) against every block on the disk."""
    roots = [name for name, (_, volume) in opened.volumes.items() if _holds_linux_root(volume)]
    if not roots:
        return None
    root_block, root_volume = opened.volumes[roots[0]]
    tree = GuestTree(root_volume)
    mounts: list[dict[str, Any]] = [{"path": "/", "block": root_block.name, "filesystem": root_block.found.type}]
    entries = (fstab_of(tree) or [])[:MAX_MOUNTS]
    plan = mount_plan(entries, disk_filesystems(blocks))
    facts: dict[str, Any] = {"root": root_block.name, "other_roots": roots[1:], "mounts": mounts}
    facts["unmounted"] = _left_out(entries, plan, opened)
    for resolved in plan:
        parts, name = split(resolved.entry.mountpoint), resolved.filesystem
        if ".." in parts or not parts or name is None or name == root_block.name or name not in opened.volumes:
            continue
        block, volume = opened.volumes[name]
        tree.mount(resolved.entry.mountpoint, volume)
        mounts.append({"path": "/" + "/".join(parts), "block": block.name, "filesystem": block.found.type})
    return tree, facts
