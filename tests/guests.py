"""Real Debian 12 test guests, built from Debian's packages and cached outside the clone.

One root file system tree is installed with `mmdebstrap` (Debian's cloud kernel and its initramfs, GRUB for BIOS
and UEFI, cloud-init with the NoCloud and Oracle data sources, LVM and XFS tools) and written into three sparse
raw disks of 3 GiB, each with `console=ttyS0` on the kernel command line:

- `uefi-ext4`: GPT, an EFI system partition (GRUB at \\EFI\\BOOT\\BOOTX64.EFI and \\EFI\\debian\\grubx64.efi), an
  ext4 root; UEFI only (no boot code in its protective MBR).
- `bios-ext4`: MBR, an ext4 root; GRUB's boot.img in the MBR and core.img in the gap after it; BIOS only.
- `lvm-xfs`: GPT with a BIOS boot partition (core.img) and an EFI system partition, /boot on ext4, and an LVM2
  physical volume whose volume group `guestvg` holds the XFS root `root` (fstab: /dev/mapper/guestvg-root);
  boots under both firmwares.

The guests are cached in `${XDG_CACHE_HOME:-~/.cache}/imagepack-tests/guests/KEY/`, KEY a hash of this builder's
sources and its package list, so that neither a second run nor a fresh clone on the same machine rebuilds them.
A build goes to a temporary folder renamed into place when whole; a lock lets one build run at a time.
Building needs root (a loop device for the LVM tools, device nodes and owners in the tree), `mmdebstrap`,
`mkfs.ext4`, `mkfs.xfs`, the LVM tools, mtools and `grub-mkimage`: `scripts/setup` with IMAGEPACK_TEST_TOOLS=1
installs them and builds the guests. `python -m tests.guests` builds them (or says where they are).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests import bootdisks, guestfs
from tests.bootdisks import ESP_TYPE, LINUX_DATA_TYPE, MIB, SECTOR, _gpt, _mbr

NAMES = ("uefi-ext4", "bios-ext4", "lvm-xfs")
DISK_SIZE = 3 * 1024 * MIB
SUITE = "bookworm"
MIRRORS = (
    f"deb http://deb.debian.org/debian {SUITE} main",
    f"deb http://deb.debian.org/debian {SUITE}-updates main",
    f"deb http://deb.debian.org/debian-security {SUITE}-security main",
)
PACKAGES = (
    "linux-image-cloud-amd64",
    "initramfs-tools",
    "grub-pc-bin",
    "grub-efi-amd64-bin",
    "grub2-common",
    "cloud-init",
    "systemd-sysv",
    "udev",
    "ifupdown",
    "isc-dhcp-client",
    "lvm2",
    "xfsprogs",
    "e2fsprogs",
    "netbase",
)
TOOLS = ("mmdebstrap", "mkfs.ext4", "mkfs.xfs", "pvcreate", "losetup", "mformat", "mlabel", "grub-mkimage")
CMDLINE = "console=tty0 console=ttyS0,115200"
VG, LV = "guestvg", "root"

BIOS_BOOT_TYPE = uuid.UUID("21686148-6449-6e6f-744e-656564454649")
LVM_TYPE = uuid.UUID("e6d6d379-f507-44c2-a23c-238f2a3df928")


def fs_uuid(guest: str, what: str) -> uuid.UUID:
    """The fixed UUID of a guest's file system (the same in every build): tests may name them."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"imagepack-test-guest/{guest}/{what}")


def esp_serial(guest: str) -> str:
    value = fs_uuid(guest, "esp").hex[:8].upper()
    return f"{value[:4]}-{value[4:]}"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imagepack-tests" / "guests"


def cache_key() -> str:
    h = hashlib.sha256()
    for module in (bootdisks, guestfs, sys.modules[__name__]):
        h.update(Path(str(module.__file__)).read_bytes())
    h.update("\n".join((SUITE, *MIRRORS, *PACKAGES)).encode())
    return h.hexdigest()[:16]


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


# --- the root file system tree ---------------------------------------------------------------------------------

CLOUD_CFG = """\
# The test guests' data sources: a NoCloud seed (the boot test's CD), or Oracle Cloud's metadata service.
datasource_list: [ NoCloud, Oracle, None ]
# No locale to generate (no locales package) and no SSH host keys (no SSH server): each only costs boot time.
locale: false
ssh_genkeytypes: []
"""

# No resume device: a tree built on a machine with swap would otherwise wait for that machine's swap at boot.
ESSENTIAL_HOOK = 'mkdir -p "$1/etc/initramfs-tools/conf.d" && echo RESUME=none > "$1/etc/initramfs-tools/conf.d/resume"'


def build_tree(tree: Path) -> str:
    """Install the guests' root file system into `tree`; returns the kernel version."""
    args = ["mmdebstrap", "--variant=minbase", "--mode=root", f"--include={','.join(PACKAGES)}"]
    args += [f"--essential-hook={ESSENTIAL_HOOK}", SUITE, str(tree), *MIRRORS]
    done = subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"mmdebstrap failed ({done.returncode}): {done.stderr.strip()[-3000:]}")
    (tree / "etc" / "cloud" / "cloud.cfg.d" / "90_datasources.cfg").write_text(CLOUD_CFG)
    (tree / "etc" / "hostname").write_text("debian\n")
    default = tree / "etc" / "default" / "grub"
    default.parent.mkdir(parents=True, exist_ok=True)
    default.write_text(
        f'GRUB_DEFAULT=0\nGRUB_TIMEOUT=0\nGRUB_CMDLINE_LINUX_DEFAULT=""\nGRUB_CMDLINE_LINUX="{CMDLINE}"\n'
        'GRUB_TERMINAL="serial"\nGRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"\n'
    )
    guestfs.copy_grub_modules(tree)
    shutil.rmtree(tree / "var" / "cache" / "apt", ignore_errors=True)
    (tree / "var" / "cache" / "apt").mkdir()
    kernels = sorted(p.name.removeprefix("vmlinuz-") for p in (tree / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1 or not (tree / "boot" / f"initrd.img-{kernels[0]}").exists():
        raise RuntimeError(f"expected one kernel with its initramfs in the tree, found {kernels}")
    return kernels[0]


def grub_cfg(version: str, boot_uuid: uuid.UUID, prefix: str, root: str) -> str:
    """As update-grub would write it for one kernel, on the serial console."""
    return f"""\
set default=0
set timeout=0
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
menuentry 'Debian GNU/Linux' {{
    search --no-floppy --fs-uuid --set=root {boot_uuid}
    echo 'Loading Linux {version} ...'
    linux {prefix}/vmlinuz-{version} root={root} ro {CMDLINE}
    echo 'Loading initial ramdisk ...'
    initrd {prefix}/initrd.img-{version}
}}
"""


def _fstab(lines: list[str]) -> str:
    return "# <file system> <mount point> <type> <options> <dump> <pass>\n" + "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Layout:
    tree: Path
    version: str
    work: Path


def _disk(path: Path) -> None:
    path.unlink(missing_ok=True)
    with open(path, "wb") as f:
        f.truncate(DISK_SIZE)


def _write_gpt(path: Path, parts: list[tuple[uuid.UUID, int, int, str]]) -> None:
    head, tail, _ = _gpt(DISK_SIZE // SECTOR, parts)
    with open(path, "r+b") as f:
        f.write(head)
        f.seek(DISK_SIZE - len(tail))
        f.write(tail)


def _esp_files(loader: Path) -> dict[str, Path]:
    return {"EFI/BOOT/BOOTX64.EFI": loader, "EFI/debian/grubx64.efi": loader}


def write_uefi_ext4(path: Path, lay: Layout) -> None:
    name, root = "uefi-ext4", fs_uuid("uefi-ext4", "root")
    esp_first, esp_sectors = 2048, 64 * MIB // SECTOR
    root_first = esp_first + esp_sectors
    root_last = DISK_SIZE // SECTOR - 34
    fstab = [f"UUID={root} / ext4 errors=remount-ro 0 1", f"UUID={esp_serial(name)} /boot/efi vfat umask=0077 0 1"]
    (lay.tree / "etc" / "fstab").write_text(_fstab(fstab))
    (lay.tree / "boot" / "grub" / "grub.cfg").write_text(grub_cfg(lay.version, root, "/boot", f"UUID={root}"))
    loader, _ = guestfs.grub_images(lay.tree, lay.work, root, "/boot/grub")
    _disk(path)
    _write_gpt(path, [(ESP_TYPE, esp_first, root_first - 1, "EFI"), (LINUX_DATA_TYPE, root_first, root_last, "root")])
    part = lay.work / "part.img"
    guestfs.esp(part, esp_sectors * SECTOR, _esp_files(loader), esp_serial(name))
    guestfs.place(path, esp_first * SECTOR, part)
    guestfs.ext4(part, (root_last + 1 - root_first) * SECTOR, lay.tree, root, "root")
    guestfs.place(path, root_first * SECTOR, part)
    part.unlink()


def write_bios_ext4(path: Path, lay: Layout) -> None:
    root = fs_uuid("bios-ext4", "root")
    first = 2048
    sectors = DISK_SIZE // SECTOR - first
    (lay.tree / "etc" / "fstab").write_text(_fstab([f"UUID={root} / ext4 errors=remount-ro 0 1"]))
    (lay.tree / "boot" / "grub" / "grub.cfg").write_text(grub_cfg(lay.version, root, "/boot", f"UUID={root}"))
    _, core = guestfs.grub_images(lay.tree, lay.work, root, "/boot/grub")
    _disk(path)
    with open(path, "r+b") as f:
        f.write(_mbr(b"", [(0x83, first, sectors)]))
    guestfs.install_bios_grub(path, lay.tree, core, 1)
    part = lay.work / "part.img"
    guestfs.ext4(part, sectors * SECTOR, lay.tree, root, "root")
    guestfs.place(path, first * SECTOR, part)
    part.unlink()


def write_lvm_xfs(path: Path, lay: Layout) -> None:
    name = "lvm-xfs"
    boot, root = fs_uuid(name, "boot"), fs_uuid(name, "root")
    bios_first, esp_first = 2048, 4096
    boot_first = esp_first + 64 * MIB // SECTOR
    pv_first = boot_first + 512 * MIB // SECTOR
    pv_last = DISK_SIZE // SECTOR - 34
    mapper = f"/dev/mapper/{VG}-{LV}"
    fstab = [
        f"{mapper} / xfs defaults 0 0",
        f"UUID={boot} /boot ext4 defaults 0 2",
        f"UUID={esp_serial(name)} /boot/efi vfat umask=0077 0 1",
    ]
    (lay.tree / "etc" / "fstab").write_text(_fstab(fstab))
    (lay.tree / "boot" / "grub" / "grub.cfg").write_text(grub_cfg(lay.version, boot, "", mapper))
    loader, core = guestfs.grub_images(lay.tree, lay.work, boot, "/grub")
    _disk(path)
    parts = [
        (BIOS_BOOT_TYPE, bios_first, esp_first - 1, "BIOS boot"),
        (ESP_TYPE, esp_first, boot_first - 1, "EFI"),
        (LINUX_DATA_TYPE, boot_first, pv_first - 1, "boot"),
        (LVM_TYPE, pv_first, pv_last, "lvm"),
    ]
    _write_gpt(path, parts)
    guestfs.install_bios_grub(path, lay.tree, core, bios_first)
    part = lay.work / "part.img"
    guestfs.esp(part, (boot_first - esp_first) * SECTOR, _esp_files(loader), esp_serial(name))
    guestfs.place(path, esp_first * SECTOR, part)
    guestfs.ext4(part, (pv_first - boot_first) * SECTOR, lay.tree / "boot", boot, "boot")
    guestfs.place(path, boot_first * SECTOR, part)
    pv_size = (pv_last + 1 - pv_first) * SECTOR
    lv_offset = guestfs.lvm_pv(part, pv_size, VG, LV)
    guestfs.place(path, pv_first * SECTOR, part)
    guestfs.xfs(part, pv_size - lv_offset - 4 * MIB, lay.tree, root, "root", empty=("boot",))
    guestfs.place(path, pv_first * SECTOR + lv_offset, part)
    part.unlink()


WRITERS = {"uefi-ext4": write_uefi_ext4, "bios-ext4": write_bios_ext4, "lvm-xfs": write_lvm_xfs}


def build(dest: Path) -> None:
    """Build the three guests into `dest` (a new folder)."""
    dest.mkdir()
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".tree-") as tmp:
        tree, work = Path(tmp) / "rootfs", Path(tmp) / "work"
        work.mkdir()
        version = build_tree(tree)
        for name, write in WRITERS.items():
            disk = dest / f"{name}.raw"
            write(disk, Layout(tree, version, work))
            disk.chmod(0o444)


def _remove(folder: Path) -> None:
    """Remove a killed build's folder, first unmounting what mmdebstrap had mounted in its tree (/proc, /sys,
    /dev/pts, /dev/shm), so that nothing is removed through a mount."""
    inside = str(folder.resolve()) + "/"
    with open("/proc/self/mounts") as f:
        points = [line.split()[1].replace("\\040", " ") for line in f]
    for point in sorted((p for p in points if p.startswith(inside)), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)
    with open("/proc/self/mounts") as f:
        if any(line.split()[1].startswith(inside) for line in f):
            raise RuntimeError(f"{folder}: a killed build left mounts there that could not be unmounted")
    shutil.rmtree(folder, ignore_errors=True)


class GuestsUnavailable(RuntimeError):
    """The guests are not built and this machine cannot build them (not root, or a tool is missing)."""


def ensure_guests(log: bool = False) -> dict[str, Path]:
    """The cached guests, built first when missing (as root, with the tools above)."""
    root = cache_root()
    final = root / cache_key()
    if not final.is_dir():
        if os.geteuid() != 0 or missing_tools():
            raise GuestsUnavailable(
                f"the Debian test guests are not built ({final}) and cannot be built here: building needs root and "
                f"{', '.join(missing_tools()) or 'nothing else'} (scripts/setup with IMAGEPACK_TEST_TOOLS=1 as root)"
            )
        root.mkdir(parents=True, exist_ok=True)
        with open(root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not final.is_dir():
                start = time.monotonic()
                if log:
                    print(f"building the Debian test guests into {final} ...", file=sys.stderr)
                # What a killed build left (the lock says no build runs now): its half guests and its tree.
                for stale in [*root.glob(".*.tmp"), *root.glob(".tree-*")]:
                    _remove(stale)
                temp = root / f".{final.name}.{os.getpid()}.tmp"
                try:
                    build(temp)
                    os.rename(temp, final)
                finally:
                    shutil.rmtree(temp, ignore_errors=True)
                if log:
                    print(f"built in {time.monotonic() - start:.0f} s", file=sys.stderr)
    return {name: final / f"{name}.raw" for name in NAMES}


def main() -> None:
    try:
        guests = ensure_guests(log=True)
    except RuntimeError as e:
        sys.exit(f"guests: {e}")
    for name, path in guests.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
