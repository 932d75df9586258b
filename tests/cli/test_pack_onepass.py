"""Compressed inputs written in one pass where the target allows it (a compressed qcow2 packed into a .oci, a
compressed raw disk written as raw): shown to write no temporary anywhere, by watching every directory one could
go to with inotify, and still refusing every hostile stream with nothing left. Also --scratch (where the
temporary goes when one is needed), the inner name checked against the content, progress while decompressing,
and zstd/xz-wrapped OVAs and .oci archives in every verb that takes them."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import struct
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from imagepack.formats import ImageFormat
from imagepack.formats.partitions import Firmware
from imagepack.sources.open import OpenOptions
from imagepack.verbs.build import ArchiveKind, Target, make
from imagepack.writers.oci.pack import MetadataRequest
from imagepack.writers.sample import write_sample_disk
from tests.cli.test_convert_compressed_inputs import (
    PACK_ARGS,
    TOOLS,
    assert_nothing_left,
    compress,
    cut_short,
    flip_middle,
    zstd_of_zeros,
)
from tests.cli.test_convert_ova import vmware_ova
from tests.conftest import file_digest, interrupt_when, leftovers, qemu_img, run_cli
from tests.readers import qemu_compare, read_guest_disk
from tests.unit.test_formats_detect import one_error_line

MiB = 1024**2
IN_CREATE, IN_MOVED_TO = 0x100, 0x80


@contextmanager
def created_in(folder: Path) -> Iterator[list[str]]:
    """The names created in (or moved into) `folder` while the block runs, as the kernel reports them: no file
    can appear and vanish between two polls unseen."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    assert fd >= 0, os.strerror(ctypes.get_errno())
    names: list[str] = []
    try:
        assert libc.inotify_add_watch(fd, bytes(folder), IN_CREATE | IN_MOVED_TO) >= 0
        yield names
        try:
            data = os.read(fd, 1 << 20)
        except BlockingIOError:
            data = b""
        at = 0
        while at < len(data):
            _, _, _, length = struct.unpack_from("iIII", data, at)
            names.append(data[at + 16 : at + 16 + length].rstrip(b"\0").decode())
            at += 16 + length
    finally:
        os.close(fd)


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """An output directory, a system temporary directory of its own (TMPDIR), and the environment to run in."""
    out, system_tmp = tmp_path / "out", tmp_path / "tmp"
    out.mkdir()
    system_tmp.mkdir()
    return out, system_tmp, {**os.environ, "TMPDIR": str(system_tmp), "SOURCE_DATE_EPOCH": "1700000000"}


def pack_refused(source: Path, dirs: tuple[Path, Path, dict[str, str]], *options: str) -> str:
    """`pack` of `source` into the output directory, refused: its one error line, once nothing is left behind in
    the output directory or the system's temporary one."""
    out, system_tmp, env = dirs
    done = run_cli("pack", *options, str(source), str(out / "image.oci"), *PACK_ARGS, env=env, timeout=60)
    assert done.returncode == 1
    line = one_error_line(done)
    assert_nothing_left(out, system_tmp)
    return line


def only_the_output_appeared(names: list[str], target: Path) -> bool:
    """The output's own hidden directory (atomic.py's, renamed from) and the output: nothing else was written."""
    return len(names) == 2 and names[0].startswith(f".{target.name}.imagepack-") and names[1] == target.name


def no_decompressed_temporary(names: list[str]) -> bool:
    """What the system's temporary directory saw holds no decompressed copy (only qemu-img's stderr and the
    partition table's first MiB, as for a plain input)."""
    return not any(name.startswith(".imagepack-") for name in names)


@pytest.fixture
def qcow2_disk(sample_raw: Path, tmp_path: Path) -> Path:
    disk = tmp_path / "disk.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(sample_raw), str(disk))
    return disk


# --- one pass ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(TOOLS))
def test_a_compressed_qcow2_packs_in_one_pass_into_the_archive_its_plain_copy_makes(
    kind: str, qcow2_disk: Path, sample_raw: Path, dirs: tuple[Path, Path, dict[str, str]]
) -> None:
    out, system_tmp, env = dirs
    source = compress(qcow2_disk, kind)
    before = file_digest(source)
    plain = out.parent / "plain.oci"
    assert run_cli("pack", str(qcow2_disk), str(plain), *PACK_ARGS, env=env).returncode == 0
    archive = out / "image.oci"
    with created_in(out) as names, created_in(system_tmp) as in_tmp:
        done = run_cli("pack", str(source), str(archive), *PACK_ARGS, "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert only_the_output_appeared(names, archive), names
    assert no_decompressed_temporary(in_tmp), in_tmp
    assert archive.read_bytes() == plain.read_bytes()  # the same layout, metadata and disk, byte for byte
    report = json.loads(done.stdout)
    assert report["copied"] is True and report["disk_size"] == qcow2_disk.stat().st_size
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["image_metadata.json", "output.QCOW2"]
        tar.extract("output.QCOW2", out.parent, filter="data")
    assert qemu_compare(sample_raw, "raw", out.parent / "output.QCOW2", "qcow2").returncode == 0
    assert read_guest_disk(out.parent / "output.QCOW2", "qcow2") == read_guest_disk(sample_raw, "raw")
    assert file_digest(source) == before


def test_the_firmware_of_a_one_pass_archive_is_read_from_the_disk_in_its_place(
    qcow2_disk: Path, dirs: tuple[Path, Path, dict[str, str]]
) -> None:
    """No --firmware: the partition table is read from the member, once it is written, as for a plain qcow2."""
    out, _, env = dirs
    source = compress(qcow2_disk, "zstd")
    archive = out / "image.oci"
    done = run_cli("pack", str(source), str(archive), "--os", "Ubuntu", "--os-version", "22.04", env=env)
    assert done.returncode == 0, done.stderr
    with tarfile.open(archive) as tar:
        member = tar.extractfile("image_metadata.json")
        assert member is not None
        metadata = json.loads(member.read())
    assert metadata["externalLaunchOptions"]["firmware"] == "UEFI_64"  # the sample disk is GPT with an ESP
    assert run_cli("verify", str(archive)).returncode == 0


@pytest.mark.parametrize("kind", ["zstd", "xz"])
def test_a_compressed_raw_converts_to_raw_in_one_pass_keeping_its_holes(
    kind: str, sample_raw: Path, dirs: tuple[Path, Path, dict[str, str]]
) -> None:
    out, system_tmp, env = dirs
    source = compress(sample_raw, kind)
    target = out / "disk.raw"
    with created_in(out) as names, created_in(system_tmp) as in_tmp:
        done = run_cli("convert", str(source), str(target), env=env)
    assert done.returncode == 0, done.stderr
    assert only_the_output_appeared(names, target), names
    assert no_decompressed_temporary(in_tmp), in_tmp
    assert target.read_bytes() == sample_raw.read_bytes()
    assert qemu_compare(sample_raw, "raw", target, "raw").returncode == 0
    assert target.stat().st_blocks * 512 < target.stat().st_size // 2  # the sample's runs of zeroes are holes


def test_a_target_that_needs_a_conversion_decompresses_into_a_temporary_that_is_then_removed(
    qcow2_disk: Path, dirs: tuple[Path, Path, dict[str, str]]
) -> None:
    """The contrast that shows the watch sees a temporary when there is one: a qcow2 option changes the disk."""
    out, _, env = dirs
    source = compress(qcow2_disk, "zstd")
    archive = out / "image.oci"
    with created_in(out) as names:
        done = run_cli("pack", str(source), str(archive), *PACK_ARGS, "-o", "cluster_size=128k", env=env)
    assert done.returncode == 0, done.stderr
    assert any(name.startswith(".imagepack-") for name in names), names
    assert sorted(p.name for p in out.iterdir()) == ["image.oci"] and leftovers(out) == []


# --- hostile streams in one pass -----------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", [cut_short, flip_middle], ids=["truncated", "corrupted"])
@pytest.mark.parametrize("kind", sorted(TOOLS))
def test_a_damaged_stream_packed_in_one_pass_leaves_no_archive(
    kind: str, damage: Callable[[Path], None], qcow2_disk: Path, dirs: tuple[Path, Path, dict[str, str]]
) -> None:
    source = compress(qcow2_disk, kind)
    damage(source)
    line = pack_refused(source, dirs)
    assert f"{source}: " in line and ("damaged or cut short" in line or "damaged or truncated" in line), line


def test_a_qcow2_cut_short_inside_a_sound_stream_is_refused_by_qemu_img_check_on_the_member(
    qcow2_disk: Path, dirs: tuple[Path, Path, dict[str, str]]
) -> None:
    subprocess.run(["truncate", "-s", str(qcow2_disk.stat().st_size // 2), str(qcow2_disk)], check=True)
    source = compress(qcow2_disk, "zstd")
    line = pack_refused(source, dirs)
    assert line.startswith(f"imagepack: error: {source}: ") and "damaged or truncated" in line, line
    assert ".imagepack-" not in line


def test_a_qcow2_naming_a_backing_file_is_refused_from_its_first_chunk_in_one_pass(
    tmp_path: Path, dirs: tuple[Path, Path, dict[str, str]]
) -> None:
    base = tmp_path / "base.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(base), "8M")
    overlay = tmp_path / "overlay.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(overlay))
    source = compress(overlay, "xz")
    assert "backing file" in pack_refused(source, dirs)


def test_a_qcow2_header_above_the_size_limit_is_refused_before_the_rest_is_read(
    tmp_path: Path, dirs: tuple[Path, Path, dict[str, str]]
) -> None:
    huge = tmp_path / "huge.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(huge), "1T")
    line = pack_refused(compress(huge, "zstd"), dirs, "--max-size", "1G")
    assert "above the limit" in line and "--max-size" in line


def test_a_qcow2_stream_that_goes_on_past_what_its_header_allows_is_cut_off(
    tmp_path: Path, dirs: tuple[Path, Path, dict[str, str]]
) -> None:
    """An 8 MiB disk's qcow2 file cannot need 300 MiB more; the bound is the header's, so no --max-size lifts it."""
    small = tmp_path / "small.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(small), "8M")
    with open(small, "ab") as f:
        f.truncate(small.stat().st_size + 300 * MiB)
    source = compress(small, "zstd")
    small.unlink()
    line = pack_refused(source, dirs)
    assert "stream expands past" in line and "--max-size" not in line


def test_running_out_of_room_in_one_pass_is_one_line_and_leaves_nothing(
    tmp_path: Path, mount_tmpfs: Callable[[str], Path]
) -> None:
    """gzip declares no content size, so nothing can be refused beforehand: the write itself fails."""
    noise = tmp_path / "noise.raw"
    noise.write_bytes(os.urandom(12 * MiB))
    disk = tmp_path / "noise.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(noise), str(disk))
    source = compress(disk, "gzip")
    small = mount_tmpfs("8M")
    done = run_cli("pack", str(source), str(small / "image.oci"), *PACK_ARGS)
    assert done.returncode == 1
    line = one_error_line(done)
    assert line.startswith(f"imagepack: error: no space left on {small}: free 8.0 MiB"), line
    assert_nothing_left(small)


@pytest.fixture(scope="module")
def zeros_zst(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("zeros") / "zeros.raw.zst"
    zstd_of_zeros(source, 16 * 1024**3)
    return source


def test_a_zstd_bomb_written_as_raw_is_bounded_by_the_largest_size_allowed(
    zeros_zst: Path, dirs: tuple[Path, Path, dict[str, str]]
) -> None:
    out, system_tmp, env = dirs
    done = run_cli("convert", "--max-size", "64M", str(zeros_zst), str(out / "out.raw"), env=env, timeout=60)
    assert done.returncode == 1
    line = one_error_line(done)
    assert f"expands past {64 * MiB} bytes; refusing it" in line and "--max-size" in line
    assert_nothing_left(out, system_tmp)


def test_an_interrupted_one_pass_leaves_nothing(zeros_zst: Path, dirs: tuple[Path, Path, dict[str, str]]) -> None:
    out, _, _ = dirs
    args = ["convert", "--max-size", "32G", str(zeros_zst), str(out / "out.raw")]
    code, stderr = interrupt_when(args, lambda: bool(leftovers(out)), signum=signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, stderr
    assert stderr.strip().splitlines() == ["imagepack: interrupted; nothing was written"]
    assert_nothing_left(out)


# --- --scratch -----------------------------------------------------------------------------------------------------


def test_scratch_is_where_the_temporary_goes_and_nothing_stays_there(
    qcow2_disk: Path, sample_raw: Path, tmp_path: Path, dirs: tuple[Path, Path, dict[str, str]]
) -> None:
    out, system_tmp, env = dirs
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    source = compress(qcow2_disk, "xz")
    target = out / "disk.vmdk"
    with created_in(out) as names, created_in(system_tmp) as in_tmp, created_in(scratch) as in_scratch:
        done = run_cli("convert", "--scratch", str(scratch), str(source), str(target), env=env)
    assert done.returncode == 0, done.stderr
    assert len(in_scratch) == 1 and in_scratch[0].startswith(".imagepack-"), in_scratch
    assert only_the_output_appeared(names, target), names
    assert no_decompressed_temporary(in_tmp), in_tmp
    assert list(scratch.iterdir()) == [] and leftovers(out) == []
    assert qemu_compare(sample_raw, "raw", target, "vmdk").returncode == 0


@pytest.mark.parametrize("verb", ["info", "verify", "unpack", "meta"])
def test_every_verb_that_may_decompress_takes_scratch(verb: str, qcow2_disk: Path, tmp_path: Path) -> None:
    archive = tmp_path / "image.oci"
    assert run_cli("pack", str(qcow2_disk), str(archive), *PACK_ARGS).returncode == 0
    source = compress(archive, "zstd")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    args = {
        "info": ["info", str(compress(qcow2_disk, "zstd"))],
        "verify": ["verify", str(source)],
        "unpack": ["unpack", str(source), "-d", str(tmp_path / "unpacked")],
        "meta": ["meta", "show", str(source)],
    }[verb]
    done = run_cli(*args, "--scratch", str(scratch))
    # verify reads a compressed archive through the scratch directory too, and then calls it not ready: OCI imports
    # the file as it is uploaded.
    assert done.returncode == (3 if verb == "verify" else 0), done.stderr
    assert verb != "verify" or "NOT ready for import (oci, zstd-compressed)" in done.stdout
    assert list(scratch.iterdir()) == []
    missing = run_cli(*args, "--scratch", str(tmp_path / "nowhere"))
    assert missing.returncode == 2
    assert one_error_line(missing) == f"imagepack: error: --scratch {tmp_path / 'nowhere'}: no such directory"


def test_the_free_space_check_counts_the_scratch_directory(
    tmp_path: Path, mount_tmpfs: Callable[[str], Path], dirs: tuple[Path, Path, dict[str, str]]
) -> None:
    out, _, env = dirs
    sparse = tmp_path / "big.raw"
    with open(sparse, "wb") as f:
        f.truncate(1024**3)
    source = compress(sparse, "zstd")
    small = mount_tmpfs("16M")
    done = run_cli("convert", "--scratch", str(small), str(source), str(out / "out.qcow2"), env=env)
    assert done.returncode == 1
    line = one_error_line(done)
    assert line.startswith(f"imagepack: error: {small}: needs about 1,024.0 MiB"), line
    assert_nothing_left(out, small)


# --- the inner name against the content ----------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["raw", "vmdk"])
def test_a_compressed_name_that_says_qcow2_over_other_content_is_refused_as_a_plain_one_is(
    content: str, sample_raw: Path, tmp_path: Path, dirs: tuple[Path, Path, dict[str, str]]
) -> None:
    out, system_tmp, env = dirs
    disk = sample_raw if content == "raw" else tmp_path / "disk.vmdk"
    if content == "vmdk":
        qemu_img("convert", "-f", "raw", "-O", "vmdk", str(sample_raw), str(disk))
    plain = tmp_path / "named.qcow2"
    plain.write_bytes(disk.read_bytes())
    source = compress(plain, "zstd")
    expected = f"the name says qcow2 but the content is {content}; pass --from {content} if the content is right"
    for target in (out / "out.oci", out / "out.raw"):
        extra = PACK_ARGS if target.suffix == ".oci" else ()
        done = run_cli("convert", str(source), str(target), *extra, env=env)
        assert done.returncode == 1
        assert one_error_line(done) == f"imagepack: error: {source}: {expected}"
        assert one_error_line(run_cli("convert", str(plain), str(target), *extra)).endswith(f"{plain}: {expected}")
        assert_nothing_left(out, system_tmp)
    found = json.loads(run_cli("info", "--json", str(source)).stdout)
    assert found["problems"][0]["code"] == "input.name-disagrees"
    stated = run_cli("convert", "--from", content, str(source), str(out / "stated.qcow2"), env=env)
    assert stated.returncode == 0, stated.stderr
    assert qemu_compare(sample_raw, "raw", out / "stated.qcow2", "qcow2").returncode == 0


def test_a_compressed_fixed_vhd_is_read_as_a_vhd_though_its_start_looks_raw(
    sample_raw: Path, tmp_path: Path, dirs: tuple[Path, Path, dict[str, str]]
) -> None:
    """A fixed VHD is its guest bytes then a 512-byte footer: the first chunk reads as raw, the name (checked
    once the footer is there) says vhd, and the raw target is converted from the VHD rather than copied."""
    out, system_tmp, env = dirs
    vhd = tmp_path / "fixed.vhd"
    qemu_img("convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed,force_size=on", str(sample_raw), str(vhd))
    source = compress(vhd, "zstd")
    done = run_cli("convert", str(source), str(out / "disk.raw"), env=env)
    assert done.returncode == 0, done.stderr
    assert (out / "disk.raw").read_bytes() == sample_raw.read_bytes()
    lying = tmp_path / "lying.vhd"
    lying.write_bytes(sample_raw.read_bytes())
    refused = run_cli("convert", str(compress(lying, "zstd")), str(out / "lying.raw"), env=env)
    assert refused.returncode == 1
    assert "the name says vhd but the content is raw" in one_error_line(refused)
    assert sorted(p.name for p in out.iterdir()) == ["disk.raw"] and leftovers(system_tmp) == []


# --- progress ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target_name", ["out.vmdk", "out.oci"], ids=["through-a-temporary", "in-one-pass"])
def test_decompressing_reports_progress_from_start_to_end(target_name: str, qcow2_disk: Path, tmp_path: Path) -> None:
    source = compress(qcow2_disk, "xz")
    seen: list[float] = []
    target = tmp_path / target_name
    oci = target.suffix == ".oci"
    request = MetadataRequest(operating_system="Oracle Linux", operating_system_version="9", firmware=Firmware.BIOS)
    make(
        source,
        Target(target, ArchiveKind.OCI if oci else ImageFormat.VMDK, metadata=request if oci else None),
        OpenOptions(on_progress=seen.append),
    )
    assert seen and seen == sorted(seen) and seen[0] > 0 and seen[-1] <= 1.0
    decompressing = [f for f in seen if f <= 0.5] if not oci else seen
    assert decompressing and max(decompressing) >= 0.45  # the whole stream was read under the bar


# --- wrapped OVAs and .oci archives --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["zstd", "xz"])
def test_a_compressed_ova_is_read_like_the_ova(kind: str, tmp_path: Path) -> None:
    raw = tmp_path / "guest.raw"
    write_sample_disk(raw, 8 * MiB)
    source = compress(vmware_ova(tmp_path, raw), kind)
    out = tmp_path / "out.qcow2"
    done = run_cli("convert", str(source), str(out))
    assert done.returncode == 0, done.stderr
    assert qemu_compare(raw, "raw", out, "qcow2").returncode == 0
    assert read_guest_disk(out, "qcow2") == read_guest_disk(raw, "raw")
    packed = run_cli("pack", str(source), str(tmp_path / "vm.oci"), "--os-version", "8")
    assert packed.returncode == 0, packed.stderr  # the OS and firmware come from the descriptor
    verified = json.loads(run_cli("verify", "--json", str(source)).stdout)
    assert verified["format"] == "ova" and verified["facts"]["compression"] == kind
    described = json.loads(run_cli("info", "--json", str(source)).stdout)
    assert described["format"] == "ova" and described["compression"] == kind
    assert described["manifest"] == {"verified": ["vm.ovf", "vm-disk1.vmdk"]}
    assert described["disk"]["path"] == f"{source}:vm-disk1.vmdk" and described["virtual_size"] == 8 * MiB
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("kind", ["zstd", "xz", "bzip2"])
def test_unpack_and_meta_show_take_a_compressed_archive(kind: str, qcow2_disk: Path, tmp_path: Path) -> None:
    archive = tmp_path / "image.oci"
    assert run_cli("pack", str(qcow2_disk), str(archive), *PACK_ARGS).returncode == 0
    source = compress(archive, kind)
    shown = run_cli("meta", "show", str(source))
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == json.loads(run_cli("meta", "show", str(archive)).stdout)
    unpacked = tmp_path / "unpacked"
    done = run_cli("unpack", str(source), "-d", str(unpacked))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in unpacked.iterdir()) == ["image.json", "image.qcow2"]
    assert (unpacked / "image.qcow2").read_bytes() == qcow2_disk.read_bytes()
    assert leftovers(unpacked) == [] and leftovers(tmp_path) == []


def test_unpack_of_a_compressed_disk_says_it_is_not_an_archive(qcow2_disk: Path, tmp_path: Path) -> None:
    source = compress(qcow2_disk, "zstd")
    unpacked = tmp_path / "unpacked"
    for args in (["unpack", str(source), "-d", str(unpacked)], ["meta", "show", str(source)]):
        done = run_cli(*args)
        assert done.returncode == 1
        assert one_error_line(done) == f"imagepack: error: {source}: this is a zstd-compressed disk, not a .oci archive"
    assert not unpacked.exists() and leftovers(tmp_path) == []
