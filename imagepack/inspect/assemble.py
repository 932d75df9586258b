"""The guest's tree put together as its own boot would: the root file system (the one holding /etc/fstab and an
os-release or an older release file), then the file systems its fstab mounts (/boot, /boot/efi, /usr, ...) found
on this disk by UUID=, LABEL=, PARTUUID=, /dev/mapper/VG-LV or /dev/VG/LV. A mount naming nothing on this disk is
left out and said."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from imagepack.inspect.guestfs import TooLarge
from imagepack.inspect.storage import Block
from imagepack.inspect.tree import GuestTree, split
from imagepack.inspect.volumes import Volume, VolumeError

FSTAB_LIMIT = 256 * 1024
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


def fstab_entries(text: str) -> list[tuple[str, str, str, str]]:
    """(device, mount point, type, options) of each entry; comments, blank and short lines left out."""
    entries = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 3:
            entries.append((fields[0], fields[1], fields[2], fields[3] if len(fields) > 3 else "defaults"))
    return entries


def _device_names(block: Block) -> set[str]:
    fs = block.found
    names = set(block.devices)
    if fs.uuid:
        names |= {f"UUID={fs.uuid}", f"UUID={fs.uuid.lower()}", f"/dev/disk/by-uuid/{fs.uuid}"}
    if fs.label:
        names |= {f"LABEL={fs.label}", f"/dev/disk/by-label/{fs.label}"}
    return names


def _unquoted(device: str) -> str:
    key, sep, value = device.partition("=")
    return f"{key}={value.strip(chr(34) + chr(39))}" if sep else device


def assemble_linux(opened: Opened) -> tuple[GuestTree, dict[str, Any]] | None:
    """The Linux guest's tree and how it was put together, or None when no file system is a Linux root."""
    roots = [name for name, (_, volume) in opened.volumes.items() if _holds_linux_root(volume)]
    if not roots:
        return None
    root_block, root_volume = opened.volumes[roots[0]]
    tree = GuestTree(root_volume)
    mounts: list[dict[str, Any]] = [{"path": "/", "block": root_block.name, "filesystem": root_block.found.type}]
    facts: dict[str, Any] = {"root": root_block.name, "other_roots": roots[1:], "mounts": mounts, "unmounted": []}
    try:
        raw = tree.read("/etc/fstab", FSTAB_LIMIT) or b""
    except TooLarge as e:
        facts["fstab_error"] = str(e)
        raw = b""
    by_name = {name: block for block, _ in opened.volumes.values() for name in _device_names(block)}
    for device, point, fstype, _options in fstab_entries(raw.decode("utf-8", "replace"))[:MAX_MOUNTS]:
        parts = split(point)
        if not point.startswith("/") or not parts or fstype in ("swap", "none", "proc", "sysfs", "tmpfs"):
            continue
        if ".." in parts:
            facts["unmounted"].append({"path": point, "device": device, "why": "a mount point with '..'"})
            continue
        block = by_name.get(_unquoted(device))
        if block is None:
            facts["unmounted"].append({"path": point, "device": device, "why": "not found on this disk"})
            continue
        if block.name == root_block.name:
            continue
        tree.mount(point, opened.volumes[block.name][1])
        mounts.append({"path": "/" + "/".join(parts), "block": block.name, "filesystem": block.found.type})
    return tree, facts
