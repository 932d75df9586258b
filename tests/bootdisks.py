"""Small bootable disks for the boot tests, built from Debian packages (no downloads): each prints its own marker
on the serial console, so the tests do not depend on cloud-init.

- `write_bios_disk`: an MBR whose boot code (written below as bytes) prints a marker on COM1 and powers off.
  It boots under SeaBIOS only: it has no EFI system partition.
- `write_uefi_disk`: a GPT with an EFI system partition holding GRUB (grub-mkstandalone, grub-efi-amd64-bin)
  whose embedded grub.cfg prints a marker and halts. It boots under OVMF only: its MBR has no boot code.
- `write_virtio_disk`: an MBR disk with GRUB for BIOS (grub-pc-bin) in the gap after the MBR, and a FAT partition
  holding Debian's cloud kernel and a busybox initramfs that loads only the virtio drivers and prints the marker
  when /dev/vda appears, or the lines initramfs-tools prints when the root device never shows up.
- `write_guest_disk`: the same kernel booted by GRUB under BIOS (as above) or UEFI (a GPT whose EFI system
  partition holds GRUB, the kernel and the initramfs), with an initramfs that loads every driver a launch mode's
  devices need (virtio, IDE, SCSI, CD-ROM, virtio-net: what the cloud kernel has as modules), then says what a
  guest sees: the root disk, the seed CD's label, the network's DHCP lease (busybox udhcpc), as a cloud guest's
  cloud-init would (its marker once the seed CD was read).
"""

from __future__ import annotations

import glob
import io
import lzma
import os
import shutil
import struct
import subprocess
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024
SECTOR = 512

BIOS_MARKER = "imagepack-fixture: BIOS boot sector ran"
UEFI_MARKER = "imagepack-fixture: UEFI GRUB ran"
VIRTIO_MARKER = "imagepack-fixture: root disk /dev/vda found"

ESP_TYPE = uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
LINUX_DATA_TYPE = uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4")

# The kernel package scripts/setup unpacks (apt-get download, dpkg-deb -x) for these tests, and where.
KERNEL_DIR = Path(__file__).parent.parent / ".venv" / "test-kernel"


def _boot_code(message: str) -> bytes:
    """16-bit real-mode code that SeaBIOS loads at 0x7c00: write `message` to COM1, power off, halt."""
    text = message.encode() + b"\r\n\0"
    msg_address = 0x7C00 + 33  # the code below is 33 bytes; the message follows it
    code = bytes(
        [
            0xFA,  # cli
            0x31, 0xC0,  # xor ax, ax
            0x8E, 0xD8,  # mov ds, ax
            0xBE, *struct.pack("<H", msg_address),  # mov si, message
            0xBA, 0xF8, 0x03,  # mov dx, 0x3f8 (COM1 data port; qemu's UART needs no set-up)
            # next:
            0xAC,  # lodsb
            0x84, 0xC0,  # test al, al
            0x74, 0x03,  # jz done
            0xEE,  # out dx, al
            0xEB, 0xF8,  # jmp next
            # done: ACPI power off, S5, on the PIIX4 PM block where SeaBIOS puts it (pc), then on q35's
            0xBA, 0x04, 0xB0,  # mov dx, 0xb004
            0xB8, 0x00, 0x20,  # mov ax, 0x2000 (SLP_EN)
            0xEF,  # out dx, ax
            0xBA, 0x04, 0x06,  # mov dx, 0x604
            0xEF,  # out dx, ax
            # halt: (if nothing powered off)
            0xF4,  # hlt
            0xEB, 0xFD,  # jmp halt
        ]
    )  # fmt: skip
    assert len(code) == 33
    return code + text


def _mbr(boot_code: bytes, partitions: list[tuple[int, int, int]]) -> bytes:
    """A master boot record: boot code, up to four (type, first sector, sectors) entries, the 0x55AA signature."""
    assert len(boot_code) <= 440
    sector = bytearray(SECTOR)
    sector[: len(boot_code)] = boot_code
    for i, (kind, first, count) in enumerate(partitions):
        # CHS fields left at zero: SeaBIOS, GRUB and Linux read the LBA fields.
        sector[446 + 16 * i : 462 + 16 * i] = bytes([0x80 if i == 0 else 0, 0, 0, 0, kind, 0, 0, 0]) + struct.pack(
            "<II", first, count
        )
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


def write_bios_disk(path: Path, *, size: int = 4 * MIB) -> None:
    with open(path, "wb") as f:
        f.write(_mbr(_boot_code(BIOS_MARKER), [(0x83, 2048, size // SECTOR - 2048)]))
        f.truncate(size)


def _gpt(disk_sectors: int, partitions: list[tuple[uuid.UUID, int, int, str]]) -> tuple[bytes, bytes, bytes]:
    """Protective MBR + primary header + entries (for LBA 0-33), and the backup entries + header (for the last 33
    sectors). Each partition is (type, first LBA, last LBA, name)."""
    entries = bytearray(128 * 128)
    for i, (kind, first, last, name) in enumerate(partitions):
        entries[i * 128 : (i + 1) * 128] = (
            kind.bytes_le + uuid.uuid4().bytes_le + struct.pack("<QQQ", first, last, 0) + name.encode("utf-16-le")
        ).ljust(128, b"\0")
    entries_crc = zlib.crc32(entries)
    disk_guid = uuid.uuid4().bytes_le

    def header(current: int, backup: int, entries_lba: int) -> bytes:
        fields = struct.pack(
            "<8sIIIIQQQQ16sQIII",
            b"EFI PART",
            0x00010000,  # revision 1.0
            92,  # header size
            0,  # CRC, filled in below
            0,
            current,
            backup,
            34,  # first usable LBA
            disk_sectors - 34,  # last usable LBA
            disk_guid,
            entries_lba,
            128,
            128,
            entries_crc,
        )
        crc = zlib.crc32(fields)
        return (fields[:16] + struct.pack("<I", crc) + fields[20:]).ljust(SECTOR, b"\0")

    last = disk_sectors - 1
    protective = _mbr(b"", [(0xEE, 1, min(disk_sectors - 1, 0xFFFFFFFF))])
    head = protective + header(1, last, 2) + bytes(entries)
    tail = bytes(entries) + header(last, 1, last - 32)
    return head, tail, protective


def _mtools_env() -> dict[str, str]:
    return {**os.environ, "MTOOLS_SKIP_CHECK": "1"}  # the images have no geometry mtools would like


def _fat_image(path: Path, size: int, files: dict[str, Path], *, label: str) -> None:
    """A FAT file system in `path`, made with mtools, holding `files` (name in the file system -> host file)."""
    with open(path, "wb") as f:
        f.truncate(size)
    env = _mtools_env()
    subprocess.run(["mformat", "-i", str(path), "-v", label, "::"], check=True, env=env, capture_output=True)
    made: set[str] = set()
    for name, source in files.items():
        parts = name.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            folder = "/".join(parts[:depth])
            if folder not in made:
                subprocess.run(["mmd", "-i", str(path), f"::/{folder}"], check=True, env=env, capture_output=True)
                made.add(folder)
        subprocess.run(["mcopy", "-i", str(path), str(source), f"::/{name}"], check=True, env=env, capture_output=True)


def _place(disk: Path, offset: int, part: Path) -> None:
    with open(part, "rb") as src, open(disk, "r+b") as dst:
        dst.seek(offset)
        shutil.copyfileobj(src, dst)


UEFI_GRUB_CFG = f"""\
serial --unit=0 --speed=115200
terminal_output serial
echo "{UEFI_MARKER}"
halt
"""


def write_uefi_disk(path: Path, workdir: Path, *, size: int = 16 * MIB) -> None:
    cfg = workdir / "grub.cfg"
    cfg.write_text(UEFI_GRUB_CFG)
    loader = workdir / "BOOTX64.EFI"
    subprocess.run(
        [
            "grub-mkstandalone",
            "--format=x86_64-efi",
            f"--output={loader}",
            # only what the grub.cfg uses, so the loader stays well under a MiB
            "--install-modules=normal serial terminal echo halt",
            "--modules=serial terminal echo halt",
            "--locales=",
            "--fonts=",
            "--themes=",
            f"boot/grub/grub.cfg={cfg}",
        ],
        check=True,
        capture_output=True,
    )
    esp = workdir / "esp.img"
    esp_first, esp_sectors = 2048, 8 * MIB // SECTOR
    _fat_image(esp, esp_sectors * SECTOR, {"EFI/BOOT/BOOTX64.EFI": loader}, label="ESP")
    sectors = size // SECTOR
    head, tail, _ = _gpt(sectors, [(ESP_TYPE, esp_first, esp_first + esp_sectors - 1, "EFI system partition")])
    with open(path, "wb") as f:
        f.truncate(size)
        f.write(head)
        f.seek(size - len(tail))
        f.write(tail)
    _place(path, esp_first * SECTOR, esp)


# --- the virtio-only kernel disk ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kernel:
    vmlinuz: Path
    modules: Path  # the kernel's /lib/modules/VERSION


# Dependencies first (the kernel's modules.dep order): the ring, the virtio core, the PCI transport (modern and
# legacy helpers), then the block driver.
VIRTIO_MODULES = (
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_pci_modern_dev.ko",
    "drivers/virtio/virtio_pci_legacy_dev.ko",
    "drivers/virtio/virtio_pci.ko",
    "drivers/block/virtio_blk.ko",
)


# Every driver the launch modes' devices need that Debian's cloud kernel builds as a module (NVMe is built in; it
# has no e1000 or e1000e driver at all), in dependency order.
GUEST_MODULES = (
    *VIRTIO_MODULES,
    "drivers/scsi/scsi_common.ko",
    "drivers/scsi/scsi_mod.ko",
    "drivers/scsi/sd_mod.ko",
    "drivers/scsi/virtio_scsi.ko",
    "drivers/ata/libata.ko",
    "drivers/ata/ata_piix.ko",
    "drivers/cdrom/cdrom.ko",
    "drivers/scsi/sr_mod.ko",
    "net/core/failover.ko",
    "drivers/net/net_failover.ko",
    "drivers/net/virtio_net.ko",
)


def find_kernel(modules: tuple[str, ...] = VIRTIO_MODULES) -> Kernel | None:
    """Debian's cloud kernel as scripts/setup unpacks it, or an installed one, that has `modules` as modules."""
    for root in (KERNEL_DIR, Path("/")):
        for vmlinuz in sorted(glob.glob(str(root / "boot" / "vmlinuz-*")), reverse=True):
            version = Path(vmlinuz).name.removeprefix("vmlinuz-")
            found = root / "lib" / "modules" / version / "kernel"
            if os.access(vmlinuz, os.R_OK) and all((found / m).exists() for m in modules):
                return Kernel(Path(vmlinuz), found)
    return None


INIT = f"""\
#!/bin/busybox sh
# The whole of this test initramfs: load the virtio drivers only, wait for the root disk, say what happened.
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox mount -t proc proc /proc
for m in /lib/modules/*.ko; do /bin/busybox insmod $m; done
i=0
while [ $i -lt 30 ]; do
    if [ -b /dev/vda ]; then
        echo "{VIRTIO_MARKER}"
        /bin/busybox poweroff -f
    fi
    /bin/busybox sleep 0.1
    i=$((i + 1))
done
# As initramfs-tools says it, so that the boot test reads the same words as from a real image.
echo "Gave up waiting for root file system device."
echo "ALERT!  /dev/vda does not exist.  Dropping to a shell!"
/bin/busybox poweroff -f
"""


def _cpio(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A 'newc' cpio archive (what the kernel unpacks as an initramfs): (name, mode, data) entries."""
    out = io.BytesIO()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        out.write(b"070701" + b"".join(b"%08X" % v for v in fields) + encoded)
        out.write(bytes(-out.tell() % 4))
        out.write(data)
        out.write(bytes(-out.tell() % 4))
    return out.getvalue()


GUEST_ROOT_MARKER = "imagepack-fixture: root disk found"
GUEST_SEED_MARKER = "imagepack-fixture: seed CD label cidata"
GUEST_NO_SEED = "imagepack-fixture: no seed CD"
GUEST_DONE = "imagepack-fixture: init done"


def guest_init(marker: str) -> str:
    """The guest disk's init: every driver, then what a cloud guest would see, and `marker` (what cloud-init
    prints when the seed's user-data tells it to) only when the seed CD was there to read."""
    return f"""\
#!/bin/busybox sh
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
for m in /lib/modules/*.ko; do /bin/busybox insmod $m; done
root=""
i=0
while [ $i -lt 100 ]; do
    for d in vda sda nvme0n1; do [ -b /dev/$d ] && root=$d; done
    [ -n "$root" ] && [ -b /dev/sr0 ] && break
    /bin/busybox sleep 0.1
    i=$((i + 1))
done
if [ -z "$root" ]; then
    echo "Gave up waiting for root file system device."
    /bin/busybox poweroff -f
fi
echo "{GUEST_ROOT_MARKER}: /dev/$root"
label=""
[ -b /dev/sr0 ] && label=$(/bin/busybox dd if=/dev/sr0 bs=1 skip=32808 count=32 2>/dev/null | /bin/busybox tr -d ' ')
if [ "$label" = cidata ]; then echo "{GUEST_SEED_MARKER}"; else echo "{GUEST_NO_SEED}"; fi
for n in /sys/class/net/*; do
    n=${{n##*/}}
    [ "$n" = lo ] && continue
    /bin/busybox ip link set "$n" up
    /bin/busybox udhcpc -i "$n" -n -q -t 5 -T 1 -s /bin/true
done
[ "$label" = cidata ] && echo "{marker}"
echo "{GUEST_DONE}"
/bin/busybox poweroff -f
"""


def _initramfs(kernel: Kernel, init: str = INIT, modules: tuple[str, ...] = VIRTIO_MODULES) -> bytes:
    busybox = shutil.which("busybox")
    assert busybox, "busybox-static is needed for the virtio fixture"
    entries: list[tuple[str, int, bytes]] = [
        ("dev", 0o040755, b""),
        ("proc", 0o040755, b""),
        ("bin", 0o040755, b""),
        ("bin/busybox", 0o100755, Path(busybox).read_bytes()),
        ("sys", 0o040755, b""),
        ("init", 0o100755, init.encode()),
        ("lib", 0o040755, b""),
        ("lib/modules", 0o040755, b""),
    ]
    for i, module in enumerate(modules):
        data = (kernel.modules / module).read_bytes()
        if data[:6] == b"\xfd7zXZ\0":
            data = lzma.decompress(data)  # a kernel built with xz-compressed modules; busybox insmod wants them plain
        entries.append((f"lib/modules/{i:02d}-{Path(module).name}", 0o100644, data))  # the glob loads them in order
    return _cpio(entries)


GRUB_PC_CFG = """\
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
set root=(hd0,msdos1)
echo "GRUB: loading the kernel"
linux /vmlinuz console=ttyS0 panic=-1
initrd /initrd.img
boot
"""


def write_virtio_disk(path: Path, workdir: Path, kernel: Kernel, *, size: int = 40 * MIB) -> None:
    initrd = workdir / "initrd.img"
    initrd.write_bytes(_initramfs(kernel))
    _write_bios_kernel_disk(path, workdir, kernel, initrd, size=size)


def _write_bios_kernel_disk(path: Path, workdir: Path, kernel: Kernel, initrd: Path, *, size: int) -> None:
    cfg = workdir / "core.cfg"
    cfg.write_text(GRUB_PC_CFG)
    core = workdir / "core.img"
    subprocess.run(
        [
            "grub-mkimage",
            "--format=i386-pc",
            f"--output={core}",
            "--prefix=(hd0,msdos1)/boot/grub",
            f"--config={cfg}",
            # everything the embedded config needs, built in: there is no /boot/grub to load modules from
            "biosdisk",
            "part_msdos",
            "fat",
            "linux",
            "serial",
            "terminal",
            "echo",
            "boot",
        ],
        check=True,
        capture_output=True,
    )
    first = 2048
    core_bytes = core.read_bytes()
    # core.img goes in the gap between the MBR and the first partition; grub-mkimage has already set the length
    # of the blocklist that its first sector (diskboot) loads, starting at sector 2.
    assert len(core_bytes) <= (first - 1) * SECTOR
    boot_img = Path("/usr/lib/grub/i386-pc/boot.img").read_bytes()
    # boot.img's code loads sector 1 (its default kernel_sector) and jumps to it; only its first 440 bytes are
    # code, the rest of the MBR is the partition table.
    part_sectors = size // SECTOR - first
    mbr = _mbr(boot_img[:440], [(0x0C, first, part_sectors)])
    fat = workdir / "boot.fat"
    _fat_image(fat, part_sectors * SECTOR, {"vmlinuz": kernel.vmlinuz, "initrd.img": initrd}, label="BOOT")
    with open(path, "wb") as f:
        f.truncate(size)
        f.write(mbr)
        f.write(core_bytes)
    _place(path, first * SECTOR, fat)


UEFI_KERNEL_CFG = """\
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
search --file --set=root /vmlinuz
echo "GRUB: loading the kernel"
linux /vmlinuz console=ttyS0 panic=-1
initrd /initrd.img
boot
"""


def _write_uefi_kernel_disk(path: Path, workdir: Path, kernel: Kernel, initrd: Path, *, size: int) -> None:
    cfg = workdir / "grub.cfg"
    cfg.write_text(UEFI_KERNEL_CFG)
    loader = workdir / "BOOTX64.EFI"
    modules = "part_gpt fat search search_fs_file linux serial terminal echo normal"
    subprocess.run(
        [
            "grub-mkstandalone",
            "--format=x86_64-efi",
            f"--output={loader}",
            f"--install-modules={modules}",
            f"--modules={modules}",
            "--locales=",
            "--fonts=",
            "--themes=",
            f"boot/grub/grub.cfg={cfg}",
        ],
        check=True,
        capture_output=True,
    )
    first = 2048
    sectors = size // SECTOR
    esp_sectors = sectors - first - 34
    esp = workdir / "esp.img"
    files = {"EFI/BOOT/BOOTX64.EFI": loader, "vmlinuz": kernel.vmlinuz, "initrd.img": initrd}
    _fat_image(esp, esp_sectors * SECTOR, files, label="ESP")
    head, tail, _ = _gpt(sectors, [(ESP_TYPE, first, first + esp_sectors - 1, "EFI system partition")])
    with open(path, "wb") as f:
        f.truncate(size)
        f.write(head)
        f.seek(size - len(tail))
        f.write(tail)
    _place(path, first * SECTOR, esp)


def write_guest_disk(path: Path, workdir: Path, kernel: Kernel, *, uefi: bool, marker: str) -> None:
    """The guest disk (see the module's notes) for UEFI or BIOS; `marker`: what it prints once it read the seed."""
    initrd = workdir / "initrd.img"
    initrd.write_bytes(_initramfs(kernel, guest_init(marker), GUEST_MODULES))
    write = _write_uefi_kernel_disk if uefi else _write_bios_kernel_disk
    write(path, workdir, kernel, initrd, size=64 * MIB)
