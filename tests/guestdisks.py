"""Synthetic guest disks for the inspect tests, made with the real tools (mkfs.*, sgdisk, sfdisk, mtools, LVM,
cryptsetup) on plain files: nothing is mounted and no partition device is needed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

MIB = 1024**2


def sh(*args: str | Path, **kwargs: object) -> str:
    done = subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    return str(done.stdout)


def tree(root: Path, files: dict[str, str | bytes], links: dict[str, str] | None = None) -> Path:
    """A directory holding `files` (path -> content) and `links` (path -> symlink target)."""
    for name, content in files.items():
        path = root / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    for name, target in (links or {}).items():
        path = root / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)
    return root


def ext4(path: Path, source: Path, size_mib: int, *, uuid: str, label: str) -> Path:
    sh("truncate", "-s", f"{size_mib}M", path)
    sh("mkfs.ext4", "-q", "-F", "-U", uuid, "-L", label, "-d", source, path)
    return path


def xfs(path: Path, source: Path, size_mib: int, *, uuid: str, label: str) -> Path:
    """An XFS file system populated from `source` by a mkfs.xfs prototype file (no mount)."""
    lines = ["/dev/null", "0 0", "d--755 0 0"]

    def walk(folder: Path, depth: int) -> None:
        for entry in sorted(folder.iterdir()):
            pad = " " * depth
            if entry.is_symlink():
                lines.append(f"{pad}{entry.name} l--777 0 0 {os.readlink(entry)}")
            elif entry.is_dir():
                lines.append(f"{pad}{entry.name} d--755 0 0")
                walk(entry, depth + 1)
                lines.append(f"{pad}$")
            else:
                lines.append(f"{pad}{entry.name} ---644 0 0 {entry}")

    walk(source, 1)
    lines.append("$")
    proto = path.with_suffix(".proto")
    proto.write_text("\n".join(lines) + "\n")
    sh("truncate", "-s", f"{size_mib}M", path)
    sh("mkfs.xfs", "-q", "-f", "-m", f"uuid={uuid}", "-L", label, "-p", proto, path)
    return path


def fat(path: Path, files: dict[str, bytes], size_mib: int, *, label: str) -> Path:
    """A FAT file system holding `files` (DOS paths with '/'), written by mtools."""
    sh("mkfs.fat", "-C", "-n", label, path, str(size_mib * 1024))
    made: set[str] = set()
    for name, content in files.items():
        parts = name.strip("/").split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder not in made:
                sh("mmd", "-i", path, f"::/{folder}")
                made.add(folder)
        local = path.parent / "fat-member"
        local.write_bytes(content)
        sh("mcopy", "-i", path, local, f"::/{name.strip('/')}")
    return path


def gpt_disk(path: Path, parts: list[tuple[str, Path | int]], *, size_mib: int) -> Path:
    """A GPT disk: each part (sgdisk type code, a file system image or a size in MiB) in order from 1 MiB."""
    sh("truncate", "-s", f"{size_mib}M", path)
    args: list[str] = []
    at = 1
    placed = []
    for number, (code, content) in enumerate(parts, 1):
        mib = content if isinstance(content, int) else -(-content.stat().st_size // MIB)
        args += [f"-n{number}:{at}M:+{mib}M", f"-t{number}:{code}"]
        placed.append((at, content))
        at += mib
    sh("sgdisk", *args, path)
    for start, content in placed:
        if not isinstance(content, int):
            sh("dd", f"if={content}", f"of={path}", "bs=1M", f"seek={start}", "conv=notrunc,sparse", "status=none")
    return path


def mbr_disk(path: Path, parts: list[tuple[str, Path]], *, size_mib: int, boot_code: bytes | None = None) -> Path:
    """An MBR disk: each part (sfdisk type, file system image) in order from 1 MiB; `boot_code` its first 440
    bytes (GRUB's boot.img, say)."""
    sh("truncate", "-s", f"{size_mib}M", path)
    at, script, placed = 1, ["label: dos"], []
    for code, content in parts:
        mib = -(-content.stat().st_size // MIB)
        script.append(f"start={at * 2048}, size={mib * 2048}, type={code}")
        placed.append((at, content))
        at += mib
    sh("sfdisk", "-q", path, input="\n".join(script) + "\n")
    for start, content in placed:
        sh("dd", f"if={content}", f"of={path}", "bs=1M", f"seek={start}", "conv=notrunc,sparse", "status=none")
    if boot_code is not None:
        with open(path, "r+b") as f:
            f.write(boot_code[:440])
    return path


def qcow2_of(raw: Path) -> Path:
    out = raw.with_suffix(".qcow2")
    sh("qemu-img", "convert", "-O", "qcow2", raw, out)
    return out


LVM_CONFIG = "global { activation = 0 }"  # no device-mapper here: metadata only, nothing activated


def lvm_pv(path: Path, group: str, volumes: dict[str, tuple[int, Path | None]], *, size_mib: int) -> Path:
    """A physical volume file holding volume group `group` with linear logical volumes (name -> (MiB, file
    system image or None)), each image written where the LVM metadata places the volume (needs root and a loop
    device; nothing is activated)."""
    sh("truncate", "-s", f"{size_mib}M", path)
    loop = sh("losetup", "-f", "--show", path).strip()
    env = {**os.environ, "LVM_SUPPRESS_FD_WARNINGS": "1"}
    try:
        sh("pvcreate", "-q", "--config", LVM_CONFIG, loop, env=env)
        sh("vgcreate", "-q", "--config", LVM_CONFIG, group, loop, env=env)
        for name, (mib, _) in volumes.items():
            sh("lvcreate", "-q", "--config", LVM_CONFIG, "--zero", "n", "--activate", "n", "-L", f"{mib}M",
               "-n", name, group, env=env)  # fmt: skip
        rows = sh("lvs", "--config", LVM_CONFIG, "--noheadings", "--units", "b", "--nosuffix", "-o",
                  "lv_name,seg_pe_ranges,vg_extent_size", group, env=env)  # fmt: skip
        pe_start = sh("pvs", "--config", LVM_CONFIG, "--noheadings", "--units", "b", "--nosuffix", "-o",
                      "pe_start", loop, env=env).strip()  # fmt: skip
        sh("vgchange", "-q", "--config", LVM_CONFIG, "-an", group, env=env)
    finally:
        sh("losetup", "-d", loop)
    for row in rows.splitlines():
        name, ranges, extent = row.split()
        first = int(ranges.rsplit(":", 1)[1].split("-")[0])
        image = volumes[name][1]
        if image is not None:
            seek = (int(pe_start) + first * int(extent)) // 1024
            sh("dd", f"if={image}", f"of={path}", "bs=1K", f"seek={seek}", "conv=notrunc,sparse", "status=none")
    return path


def ntfs(path: Path, files: dict[str, bytes], size_mib: int, *, label: str) -> Path:
    """An NTFS volume (mkntfs on a file) holding `files` at their paths. ntfscp copies a file into an existing
    folder only, so folders are made by ntfs-3g (FUSE) when there are any; the tests run as root."""
    sh("truncate", "-s", f"{size_mib}M", path)
    sh("mkntfs", "-q", "-F", "-L", label, path)
    staged = path.parent / "ntfs-member"
    folders = {str(Path(name).parent) for name in files} - {"."}
    if folders:
        mount = path.parent / "ntfs-mount"
        mount.mkdir(exist_ok=True)
        sh("ntfs-3g", path, mount)
        try:
            for name, content in files.items():
                (mount / name).parent.mkdir(parents=True, exist_ok=True)
                (mount / name).write_bytes(content)
        finally:
            sh("umount", mount)
        return path
    for name, content in files.items():
        staged.write_bytes(content)
        sh("ntfscp", "-q", path, staged, name)
    return path
