"""The pieces a real test guest's disk is made of, written without mounting anything (this test set-up runs as
root, but a machine's kernel may lack device-mapper, vfat and partition-table parsers): ext4 populated by
`mkfs.ext4 -d`, XFS by `mkfs.xfs -p` from a prototype file, an EFI system partition with mtools, an LVM2 physical
volume whose logical volume is found at its offset in the PV, GRUB images made with the guest's own GRUB modules,
and a sparse copy of each into the disk at its partition's offset."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import uuid
from pathlib import Path

from tests.bootdisks import MIB, SECTOR, _fat_image, _mtools_env

# GRUB modules built into the images, so that they find /boot/grub by UUID on any of the layouts (ext2 reads
# ext4; lvm and xfs for the LVM guest) and read a grub.cfg that boots Linux on the serial console.
GRUB_MODULES = (
    *("part_gpt", "part_msdos", "fat", "ext2", "xfs", "lvm", "search", "search_fs_uuid", "normal", "linux"),
    *("configfile", "echo", "serial", "terminal", "test", "gzio", "boot"),
)


def place(disk: Path, offset: int, part: Path) -> None:
    """Copy `part` into `disk` at `offset`, its holes left as holes: the disk stays sparse."""
    with open(part, "rb") as src, open(disk, "r+b") as dst:
        size = os.fstat(src.fileno()).st_size
        pos = 0
        while pos < size:
            try:
                data = os.lseek(src.fileno(), pos, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            hole = os.lseek(src.fileno(), data, os.SEEK_HOLE)
            src.seek(data)
            dst.seek(offset + data)
            left = hole - data
            while left:
                chunk = src.read(min(left, 8 * MIB))
                dst.write(chunk)
                left -= len(chunk)
            pos = hole


def _run(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


def ext4(path: Path, size: int, tree: Path, fs_uuid: uuid.UUID, label: str) -> None:
    """An ext4 file system of `size` bytes holding `tree` (owners, modes and links as they are there)."""
    path.unlink(missing_ok=True)
    _run("mkfs.ext4", "-q", "-F", "-d", str(tree), "-U", str(fs_uuid), "-L", label, str(path), str(size // 1024) + "k")


def _proto_line(name: str, st: os.stat_result, rest: str) -> str:
    kind = {stat.S_IFREG: "-", stat.S_IFDIR: "d", stat.S_IFLNK: "l", stat.S_IFCHR: "c", stat.S_IFBLK: "b"}
    kind.update({stat.S_IFIFO: "p"})
    mode = kind[stat.S_IFMT(st.st_mode)]
    mode += "u" if st.st_mode & stat.S_ISUID else "-"
    mode += "g" if st.st_mode & stat.S_ISGID else "-"
    # A prototype file has no sticky bit: systemd-tmpfiles gives /tmp and /var/tmp theirs at boot.
    mode += f"{st.st_mode & 0o777:03o}"
    return f"{name} {mode} {st.st_uid} {st.st_gid}{rest}"


def _proto_entries(folder: Path, skip: set[Path], out: list[str]) -> None:
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        path = Path(entry.path)
        name = entry.name
        # The prototype file's tokens are separated by white space, and a token that starts with ':' is a comment.
        if any(c.isspace() for c in name) or name.startswith(":"):
            raise RuntimeError(f"{path}: a name mkfs.xfs's prototype file cannot hold")
        st = os.lstat(path)
        kind = stat.S_IFMT(st.st_mode)
        if kind == stat.S_IFDIR:
            out.append(_proto_line(name, st, ""))
            if path not in skip:
                _proto_entries(path, skip, out)
            out.append("$")
        elif kind == stat.S_IFREG:
            out.append(_proto_line(name, st, f" {path}"))
        elif kind == stat.S_IFLNK:
            out.append(_proto_line(name, st, f" {os.readlink(path)}"))
        elif kind in (stat.S_IFCHR, stat.S_IFBLK):
            out.append(_proto_line(name, st, f" {os.major(st.st_rdev)} {os.minor(st.st_rdev)}"))
        elif kind == stat.S_IFIFO:
            out.append(_proto_line(name, st, ""))
        # sockets are not kept (a tree fresh from the package manager has none)


def xfs(path: Path, size: int, tree: Path, fs_uuid: uuid.UUID, label: str, *, empty: tuple[str, ...] = ()) -> None:
    """An XFS file system holding `tree`, the folders named in `empty` left empty (mounted from elsewhere)."""
    lines = ["imagepack-test-guest", "0 0", _proto_line("", os.lstat(tree), "").lstrip()]
    _proto_entries(tree, {tree / name for name in empty}, lines)
    lines.append("$")
    proto = path.with_suffix(".proto")
    proto.write_text("\n".join(lines) + "\n")
    path.unlink(missing_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
    _run("mkfs.xfs", "-q", "-f", "-m", f"uuid={fs_uuid}", "-L", label, "-p", str(proto), str(path))
    proto.unlink()


def esp(path: Path, size: int, files: dict[str, Path], serial: str) -> None:
    """A FAT EFI system partition holding `files`, with volume serial `serial` (fstab's UUID=XXXX-XXXX)."""
    path.unlink(missing_ok=True)
    _fat_image(path, size, files, label="EFI")
    _run("mlabel", "-i", str(path), "-N", serial.replace("-", ""), "::EFI", env=_mtools_env())


def grub_images(tree: Path, workdir: Path, boot_uuid: uuid.UUID, prefix: str) -> tuple[Path, Path]:
    """GRUB for UEFI (x86_64-efi) and for BIOS (i386-pc core.img), made from the guest's own GRUB modules, each
    finding the file system of /boot by UUID and reading `prefix`/grub.cfg there."""
    early = workdir / "early.cfg"
    early.write_text(f"search --no-floppy --fs-uuid --set=root {boot_uuid}\nset prefix=($root){prefix}\n")
    made = []
    for target, name in (("x86_64-efi", "grubx64.efi"), ("i386-pc", "core.img")):
        out = workdir / name
        extra = ["biosdisk"] if target == "i386-pc" else []
        folder = tree / "usr" / "lib" / "grub" / target
        _run("grub-mkimage", "-d", str(folder), "-O", target, "-o", str(out), "-p", prefix, "-c", str(early),
             *GRUB_MODULES, *extra)  # fmt: skip
        made.append(out)
    return made[0], made[1]


def install_bios_grub(disk: Path, tree: Path, core: Path, core_sector: int) -> None:
    """GRUB's boot.img as the MBR's boot code (the partition table kept) and core.img at `core_sector`: the gap
    after an MBR (sector 1) or a GPT's BIOS boot partition."""
    boot = (tree / "usr" / "lib" / "grub" / "i386-pc" / "boot.img").read_bytes()
    data = bytearray(core.read_bytes())
    # diskboot (core.img's first sector) loads the rest from the blocklist at its end: first sector, then count.
    blocklist = SECTOR - 12
    assert int.from_bytes(data[blocklist : blocklist + 8], "little") == 2, "unexpected diskboot.img layout"
    data[blocklist : blocklist + 8] = (core_sector + 1).to_bytes(8, "little")
    code = bytearray(boot[:440])
    code[0x5C:0x64] = core_sector.to_bytes(8, "little")  # boot.img's kernel_sector: where diskboot is
    with open(disk, "r+b") as f:
        f.write(code)
        f.seek(core_sector * SECTOR)
        f.write(data)


def lvm_pv(path: Path, size: int, vg: str, lv: str) -> int:
    """An LVM2 physical volume in `path` holding volume group `vg` with one linear logical volume `lv` filling it.
    Made with the LVM tools on a loop device, activation off (no device-mapper needed); returns the LV's offset in
    the PV, where its file system is to be written."""
    path.unlink(missing_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
    loop = _run("losetup", "--find", "--show", str(path)).strip()
    # Nothing of it kept in the host's LVM configuration (backups, archives), nothing activated.
    config = "global{activation=0} backup{backup=0 archive=0} devices{use_devicesfile=0}"
    env = {**os.environ, "LVM_SUPPRESS_FD_WARNINGS": "1"}
    common = ["--config", config, "--devices", loop]
    try:
        _run("pvcreate", *common, "-ff", "-y", loop, env=env)
        _run("vgcreate", *common, vg, loop, env=env)
        _run("lvcreate", *common, "-an", "-Zn", "-y", "-l", "100%FREE", "-n", lv, vg, env=env)
        in_bytes = ["--noheadings", "--nosuffix", "--units", "b"]
        pe_start = int(_run("pvs", *common, *in_bytes, "-o", "pe_start", loop, env=env))
        extent = int(_run("vgs", *common, *in_bytes, "-o", "vg_extent_size", vg, env=env))
        ranges = _run("lvs", *common, "--noheadings", "-o", "seg_pe_ranges", f"{vg}/{lv}", env=env).strip()
    finally:
        subprocess.run(["losetup", "-d", loop], check=False, capture_output=True)
    first_pe = int(ranges.rsplit(":", 1)[1].split("-")[0])
    return pe_start + first_pe * extent


def copy_grub_modules(tree: Path) -> None:
    """What grub-install puts in /boot/grub: the modules `normal` loads on demand."""
    for target in ("i386-pc", "x86_64-efi"):
        dest = tree / "boot" / "grub" / target
        if not dest.exists():
            shutil.copytree(tree / "usr" / "lib" / "grub" / target, dest)
