"""Hostile guests for the Linux readers: initramfs decompression bombs and forged cpio headers, YAML alias bombs,
configuration files far too large, and symlinks that loop or climb out of the guest. Each ends quickly with a
finding that says what was not read, never an exception or a guess."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from imagepack.sources.guest.guestfs import Kind, TooLarge
from imagepack.sources.guest.linux import analyse_linux
from imagepack.sources.guest.linux.cpio import read_initramfs
from imagepack.sources.guest.linux.kernels import Where
from imagepack.sources.guest.linux.reading import GuestReader
from tests.guestdir import GuestDir
from tests.linuxguests import compress, cpio, kernel, link, write

VER = "6.1.0-13-cloud-amd64"


def header(name: bytes, size: int, *, name_size: int | None = None, magic: bytes = b"070701") -> bytes:
    """A newc member header as cpio writes it, with any field forged."""
    name_size = len(name) + 1 if name_size is None else name_size
    fields = [1, 0o100644, 0, 0, 1, 0, size, 0, 0, 0, 0, name_size, 0]
    head = magic + b"".join(b"%08X" % f for f in fields) + name + b"\0"
    return head + b"\0" * (-len(head) % 4)


def zeros_through(command: list[str], size: int, prefix: bytes = b"") -> bytes:
    """`prefix` then `size` zero bytes through a real compressor, streamed (the bomb is never held whole)."""
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        out: list[bytes] = []
        reader = threading.Thread(target=lambda: out.append(proc.stdout.read()))  # type: ignore[union-attr]
        reader.start()
        proc.stdin.write(prefix)
        block = b"\0" * (1 << 20)
        for _ in range(size >> 20):
            proc.stdin.write(block)
        proc.stdin.close()
        reader.join()
    return out[0]


def test_an_initramfs_that_decompresses_past_the_bound_is_reported_and_decides_nothing(tmp_path: Path) -> None:
    """1.1 GiB of zeros behind a member header claiming 4 GiB, zstd-compressed to a few KiB, after real microcode."""
    early = cpio(tmp_path / "early", {"kernel/x86/microcode/AuthenticAMD.bin": os.urandom(100)})
    bomb = zeros_through(["zstd", "-c", "-q", "-1"], 1100 << 20, header(b"lib/firmware/huge", 0xFFFFFFFF))
    assert len(bomb) < 1 << 20
    root = tmp_path / "root"
    kernel(root, VER, initrd=f"initrd.img-{VER}", image=early + bomb, builtin=["virtio_pci"], on_root=["virtio_blk"])
    (found,) = analyse_linux(GuestDir(root)).kernels
    assert found.initramfs_problem is not None and "decompression bomb" in found.initramfs_problem
    where = {d.name: d.where for d in found.drivers}
    assert where["virtio_blk"] is Where.UNKNOWN and where["virtio_pci"] is Where.BUILT_IN


@pytest.mark.parametrize(
    "how", [["gzip", "-c", "-1"], ["xz", "-c", "-0"], ["bzip2", "-c", "-1"], ["lz4", "-l", "-c", "-q"], ["zstd", "-c"]]
)
def test_a_zero_bomb_stops_at_the_bound_given(tmp_path: Path, how: list[str]) -> None:
    bomb = zeros_through(how, 64 << 20)
    found = read_initramfs(bomb, expanded_most=16 << 20)
    assert found.problem is not None and "decompression bomb" in found.problem
    assert read_initramfs(bomb, expanded_most=80 << 20).problem is None  # only zero padding: an empty initramfs


@pytest.mark.parametrize("compressed", [False, True])
def test_a_forged_name_length_is_refused_before_it_is_read(compressed: bool) -> None:
    forged = header(b"init", 0) + header(b"x", 0, name_size=0xFFFFFFFF) + b"A" * 4096
    found = read_initramfs(compress(forged, "gzip") if compressed else forged)
    assert found.problem is not None and "name length is 4294967295" in found.problem
    assert found.names == ["init"]


@pytest.mark.parametrize("how", ["raw", "xz", "lz4"])
def test_a_forged_file_size_ends_the_walk_at_the_end_of_the_data(how: str) -> None:
    forged = header(b"init", 0) + header(b"big", 0xFFFFFFFF) + os.urandom(10_000)
    found = read_initramfs(forged if how == "raw" else compress(forged, how))
    assert found.problem is not None and "ends inside a cpio member" in found.problem


def test_a_header_that_is_not_newc_or_not_hexadecimal_is_refused(tmp_path: Path) -> None:
    assert "not in the newc format" in (read_initramfs(compress(b"070707" + b"0" * 200, "gzip")).problem or "")
    assert "not in the newc format" in (read_initramfs(b"070707" + b"0" * 200).problem or "")
    broken = header(b"init", 0).replace(b"000081A4", b"0000ZZZZ")
    assert "not hexadecimal" in (read_initramfs(broken).problem or "")
    assert "unrecognised data" in (read_initramfs(cpio(tmp_path / "a", {"x": b"1"}) + b"garbage!").problem or "")


def test_an_lz4_block_that_refers_before_its_output_is_refused() -> None:
    block = bytes([0x1F, ord("a"), 0x40, 0x00])  # one literal, then a match 64 bytes back
    data = b"\x02\x21\x4c\x18" + len(block).to_bytes(4, "little") + block
    found = read_initramfs(data)
    assert found.problem is not None and "lz4 segment cannot be decompressed" in found.problem


LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)


def test_yaml_alias_bombs_and_deep_nesting_are_refused_and_leave_the_answer_open(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root, "/usr/bin/cloud-init", "")
    write(root, "/etc/cloud/cloud.cfg", "datasource_list: [ Oracle ]\n")
    write(root, "/etc/cloud/cloud.cfg.d/50-bomb.cfg", LAUGHS + "datasource_list: *i\n")
    write(root, "/etc/cloud/cloud.cfg.d/60-deep.cfg", "x: " + "[" * 50_000 + "]" * 50_000 + "\n")
    write(
        root,
        "/etc/netplan/01.yaml",
        LAUGHS + "network:\n  ethernets:\n    e: {match: {macaddress: '00:11:22:33:44:55'}}\n",
    )
    report = analyse_linux(GuestDir(root))
    assert report.cloud_init.oracle_allowed is None
    assert report.cloud_init.unreadable == ["/etc/cloud/cloud.cfg.d/50-bomb.cfg", "/etc/cloud/cloud.cfg.d/60-deep.cfg"]
    why = {n.path: n.why for n in report.notes}
    assert "alias bomb" in why["/etc/cloud/cloud.cfg.d/50-bomb.cfg"] and "alias bomb" in why["/etc/netplan/01.yaml"]
    assert "nested too deep" in why["/etc/cloud/cloud.cfg.d/60-deep.cfg"]
    assert report.macs == []


def test_files_far_too_large_are_not_read_and_decide_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for path in ("/boot/grub/grub.cfg", "/etc/fstab", "/etc/cloud/cloud.cfg"):
        os.truncate(write(root, path, ""), 100 << 20)
    write(root, "/etc/default/grub", 'GRUB_CMDLINE_LINUX="console=ttyS0"\n')
    write(root, f"/boot/vmlinuz-{VER}", b"k")
    os.truncate(write(root, f"/boot/initrd.img-{VER}", ""), 300 << 20)
    report = analyse_linux(GuestDir(root))
    assert report.boot.serial_console.present is None and report.boot.unreadable == ["/boot/grub/grub.cfg"]
    assert report.fstab is None and report.cloud_init.oracle_allowed is None
    (found,) = report.kernels
    assert found.initramfs_problem == "larger than 256 MiB: not read"
    assert {d.where for d in found.drivers} == {Where.UNKNOWN}
    noted = {n.path for n in report.notes}
    assert {"/boot/grub/grub.cfg", "/etc/fstab", "/etc/cloud/cloud.cfg", f"/boot/initrd.img-{VER}"} <= noted


def test_guest_symlinks_resolve_inside_the_guest_and_loops_are_missing(tmp_path: Path) -> None:
    host_secret = tmp_path / "host-secret"
    host_secret.write_text("UUID=host / ext4 defaults 0 0\n")
    root = tmp_path / "root"
    write(root, "/etc/real-fstab", "LABEL=guest / ext4 defaults 0 0\n")
    link(root, "/etc/fstab", "/etc/real-fstab")  # absolute: from the guest's root, not the host's
    link(root, "/etc/crypttab", "../../../host-secret")  # climbs out of the guest: missing
    link(root, "/etc/default/grub", "grub")  # loops on itself
    link(root, "/etc/kernel", "/etc/kernel")
    files = GuestDir(root)
    report = analyse_linux(files)
    assert report.fstab is not None and [e.value for e in report.fstab] == ["guest"]
    assert report.crypttab == [] and report.boot.grub_defaults is None and report.boot.kernel_cmdline is None
    assert files.kind("/etc/crypttab") is None and files.readlink("/etc/crypttab") == "../../../host-secret"
    assert files.kind("/etc/default/grub") is None and files.read("/etc/kernel/cmdline", 100) is None
    assert files.kind("/etc") is Kind.DIRECTORY and files.list("/etc/real-fstab") is None
    with pytest.raises(TooLarge):
        files.read("/etc/fstab", 10)


def test_a_setting_that_doubles_itself_line_after_line_is_cut_not_expanded_without_end(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(
        root,
        "/etc/default/grub",
        'GRUB_CMDLINE_LINUX="x"\n' + 'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX $GRUB_CMDLINE_LINUX"\n' * 60,
    )
    report = analyse_linux(GuestDir(root))
    defaults = report.boot.grub_defaults
    assert defaults is not None and len(defaults.values["GRUB_CMDLINE_LINUX"]) <= 64 * 1024
    assert any("grows past" in n.why for n in report.notes)


def test_only_a_few_initramfs_images_are_opened_the_default_kernels_first(tmp_path: Path) -> None:
    root = tmp_path / "root"
    versions = [f"5.{minor}.0-1-amd64" for minor in range(10, 16)]
    image = cpio(tmp_path / "c", {f"usr/lib/modules/{v}/kernel/drivers/block/virtio_blk.ko": b"m" for v in versions})
    for version in versions:
        kernel(root, version, initrd=f"initrd.img-{version}", image=image, builtin=[], on_root=["virtio_blk"])
    write(root, "/boot/grub/grub.cfg", f"menuentry 'old' {{\n linux /boot/vmlinuz-{versions[0]} ro\n}}\n")
    report = analyse_linux(GuestDir(root))
    assert report.default_kernel == versions[0]
    opened = {k.version for k in report.kernels if k.initramfs_problem is None}
    assert opened == {versions[0], *versions[-3:]}
    skipped = report.kernel(versions[1])
    assert skipped is not None and "only the initramfs of 4 kernels" in (skipped.initramfs_problem or "")
    assert {d.where for d in skipped.drivers if d.name == "virtio_blk"} == {Where.UNKNOWN}


def test_configuration_reads_share_one_budget(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for i in range(5):
        write(root, f"/etc/cloud/cloud.cfg.d/{i}.cfg", "#" * 999 + "\n")
    reader = GuestReader(GuestDir(root), budget=3500)
    read = [reader.text(f"/etc/cloud/cloud.cfg.d/{i}.cfg") is not None for i in range(5)]
    assert read == [True, True, True, False, False]
    assert [n.path for n in reader.notes] == ["/etc/cloud/cloud.cfg.d/3.cfg", "/etc/cloud/cloud.cfg.d/4.cfg"]
    assert "read for configuration files is spent" in reader.notes[0].why


def test_an_initramfs_of_more_members_than_the_bound_stops_there() -> None:
    member = header(b"f", 0)
    found = read_initramfs(compress(member * 200_010, "gzip"))
    assert found.problem == "it holds more than 200000 members" and len(found.names) == 200_000


def test_grub_configs_that_hand_over_to_each_other_in_a_circle_are_each_read_once(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root, "/boot/grub/grub.cfg", "configfile /boot/grub/b.cfg\n")
    write(root, "/boot/grub/b.cfg", "configfile (hd0,gpt2)/boot/grub/grub.cfg\nconfigfile /boot/grub/b.cfg\n")
    report = analyse_linux(GuestDir(root))
    assert report.boot.configs == ["/boot/grub/grub.cfg", "/boot/grub/b.cfg"] and report.boot.menu is None
    assert report.boot.serial_console.present is None and report.default_kernel is None
