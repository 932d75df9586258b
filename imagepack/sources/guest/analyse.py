"""The whole reading of a guest disk, in the child process (child.py): storage, the file systems opened, the guest
assembled, its OS and boot set-up, and the configuration readers of its OS family (linux/, windows/). Every
string the guest states leaves here through printable()."""

from __future__ import annotations

import dataclasses
from typing import Any

from imagepack.formats.partitions import HEAD_BYTES
from imagepack.sources.guest.assemble import Opened, assemble_linux, disk_filesystems, open_volumes
from imagepack.sources.guest.blockio import CachedDisk, Reader
from imagepack.sources.guest.firmware import boot_setup
from imagepack.sources.guest.guestfs import GuestFiles, Kind
from imagepack.sources.guest.linux import analyse_linux
from imagepack.sources.guest.osinfo import linux_os
from imagepack.sources.guest.storage import Block, blocks
from imagepack.sources.guest.tree import GuestTree
from imagepack.sources.guest.windows import analyse_windows, ntfs_volume_dirty

WINDOWS_SYSTEM_HIVE = "/Windows/System32/config/SYSTEM"


def _esps(opened: Opened) -> dict[str, GuestFiles]:
    """The FAT file systems an EFI loader may be on: the EFI system partitions, and any other FAT one with /EFI."""
    found: dict[str, GuestFiles] = {}
    for name, (block, volume) in opened.volumes.items():
        if block.found.type != "vfat":
            continue
        tree = GuestTree(volume)
        if block.facts.get("esp") or tree.kind("/EFI") is Kind.DIRECTORY:
            found[name] = tree
    return found


def _windows(opened: Opened) -> tuple[Block, GuestTree] | None:
    for block, volume in opened.volumes.values():
        if block.found.type == "ntfs":
            tree = GuestTree(volume)
            if tree.kind(WINDOWS_SYSTEM_HIVE) is Kind.FILE:
                return block, tree
    return None


MAX_TEXT = 1024  # characters of one string the guest states (a label, a name): a person reads the report


def printable(value: Any) -> Any:
    """`value` with every string the guest wrote made safe to print: control characters (a terminal's escape
    sequences, line breaks) written as escapes, and bounded in length."""
    if isinstance(value, str):
        text = value if value.isprintable() else "".join(c if c.isprintable() else ascii(c)[1:-1] for c in value)
        return text[:MAX_TEXT]
    if isinstance(value, dict):
        return {printable(key): printable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [printable(item) for item in value]
    return value


def analyse(reader: Reader) -> dict[str, Any]:
    """The report on the disk `reader` reads (the NBD export)."""
    disk = CachedDisk(reader)
    head = disk.read(0, HEAD_BYTES)
    storage, found = blocks(disk)
    opened = open_volumes(found)
    for block, volume in opened.volumes.values():
        if block.found.label is None and volume.label:  # NTFS keeps its label in a file, not the boot sector
            block.found = dataclasses.replace(block.found, label=volume.label)
    storage["blocks"] = [
        {**block.to_json(), **({"error": opened.errors[block.name]} if block.name in opened.errors else {})}
        for block in found
    ]
    system: dict[str, Any] = {"family": None}
    guest: GuestFiles | None = None
    config: dict[str, Any] | None = None
    linux = assemble_linux(opened, found)
    windows = _windows(opened) if linux is None else None
    if linux is not None:
        tree, facts = linux
        guest = tree
        system = {**linux_os(tree), **facts}
        config = analyse_linux(tree, disk_filesystems(found)).to_json()
    elif windows is not None:
        block, tree = windows
        guest = tree
        system = {"family": "windows", "root": block.name}
        config = {**analyse_windows(tree).to_json(), "ntfsDirty": ntfs_volume_dirty(block.window())}
    boot = boot_setup(head, storage["partition_table"], found, _esps(opened), guest, windows is not None)
    encrypted = [b.name for b in found if b.found.type in ("crypto_LUKS", "BitLocker")]
    unreadable = [b.name for b in found if b.found.unread]
    return {
        "storage": printable(storage),
        "os": printable(system),
        "boot": printable(boot),
        "config": printable(config),
        "encrypted": encrypted,
        "unreadable": unreadable,
        "bytes_read": disk.bytes_read,
    }
