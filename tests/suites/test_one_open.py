"""An input is opened once and every reader reads that open file: a file renamed over the input after the checks
is never what qemu-img reads, and a source changed while it is read is refused with nothing written.

The attacks are real and deterministic: qemu-img is a wrapper (IMAGEPACK_QEMU_IMG) that, at one chosen point of
the run, renames another file over the input or changes it in place, then runs the real qemu-img."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from imagepack.writers.sample import write_sample_disk
from tests.conftest import QEMU_IMG, leftovers, qemu_img, run_cli

MiB = 1024**2
SECRET = b"host secret that must never reach an output\n"
ORIGINAL = b"A"  # the byte every sector of the original input is filled with


def _wrapper(tmp_path: Path, verb: str, action: str, *, keep_output: bool = False) -> dict[str, str]:
    """An environment whose qemu-img runs `action` (shell) just before its first `verb`, then the real qemu-img;
    with `keep_output`, a copy of what that command wrote (its last argument) is kept as seen.raw."""
    real = shutil.which(QEMU_IMG)
    assert real, "qemu-img is needed"
    script = tmp_path / "bin" / "qemu-img"
    script.parent.mkdir()
    keep = f'cp --sparse=always "${{@: -1}}" "{tmp_path}/seen.raw"' if keep_output else ":"
    script.write_text(
        "#!/bin/bash\n"
        f'if [ "$1" = {verb} ] && [ ! -e "{tmp_path}/fired" ]; then touch "{tmp_path}/fired"; {action}; fi\n'
        f'"{real}" "$@"; rc=$?\n'
        f'if [ "$1" = {verb} ] && [ $rc = 0 ]; then {keep}; fi\n'
        "exit $rc\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return {**os.environ, "IMAGEPACK_QEMU_IMG": str(script)}


def _swap_setup(tmp_path: Path) -> tuple[Path, Path]:
    """disk.qcow2 (1 MiB of 'A'), and evil.qcow2, which reads the host file through its backing file."""
    host = tmp_path / "host.txt"
    host.write_bytes(SECRET * (MiB // len(SECRET) + 1))
    os.truncate(host, MiB)
    evil = tmp_path / "evil.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-b", str(host), "-F", "raw", str(evil), str(MiB))
    plain = tmp_path / "plain.raw"
    plain.write_bytes(ORIGINAL * MiB)
    disk = tmp_path / "disk.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(plain), str(disk))
    return disk, evil


def test_a_file_renamed_over_the_input_before_the_convert_is_never_read(tmp_path: Path) -> None:
    disk, evil = _swap_setup(tmp_path)
    out = tmp_path / "out.raw"
    env = _wrapper(tmp_path, "convert", f'mv -f "{evil}" "{disk}"', keep_output=True)
    done = run_cli("convert", str(disk), str(out), env=env)
    assert (tmp_path / "fired").exists(), "the swap never happened"
    # What qemu-img read is the input imagepack checked, not the file renamed over its name.
    seen = (tmp_path / "seen.raw").read_bytes()
    assert SECRET not in seen
    assert seen == ORIGINAL * MiB
    # And the run is refused, since the input's name no longer names what was read: nothing is written.
    assert done.returncode != 0, done.stdout
    assert "changed while imagepack read it" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()
    assert leftovers(tmp_path) == []


def test_pack_never_writes_a_qcow2_that_names_a_host_file(tmp_path: Path) -> None:
    """The swap right after the last check (qemu-img dd reads the partition table): pack refuses, where it used to
    copy the swapped-in qcow2, backing file name and all, into the .oci."""
    disk, evil = _swap_setup(tmp_path)
    out = tmp_path / "disk.oci"
    env = _wrapper(tmp_path, "dd", f'mv -f "{evil}" "{disk}"')
    done = run_cli(
        "pack", str(disk), str(out), "--os", "Oracle Linux", "--os-version", "9", "--firmware", "BIOS", env=env
    )
    assert (tmp_path / "fired").exists(), "the swap never happened"
    assert done.returncode != 0, done.stdout
    assert "changed while imagepack read it" in done.stderr, done.stderr
    assert not out.exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "change",
    [
        pytest.param('truncate -s 0 "{src}"', id="truncated"),
        pytest.param('truncate -s 1M "{src}"', id="shortened"),
        pytest.param('printf XXXX | dd of="{src}" bs=1 seek=4096 conv=notrunc status=none', id="written-in-place"),
    ],
)
def test_a_source_changed_under_the_stream_vmdk_writer_is_refused(tmp_path: Path, change: str) -> None:
    """The raw source is changed after its checks, when the writer sizes its output (qemu-img measure), and
    before the stream VMDK writer reads it: it used to write a vmdk of zeroes and exit 0."""
    src = tmp_path / "disk.raw"
    src.write_bytes((b"\x5a" * 511 + b"\0") * (4 * MiB // 512))
    out = tmp_path / "out.vmdk"
    env = _wrapper(tmp_path, "measure", change.format(src=src))
    done = run_cli("convert", str(src), str(out), "-o", "subformat=streamOptimized", env=env)
    assert (tmp_path / "fired").exists(), "the change never happened"
    assert done.returncode != 0, done.stdout
    assert "changed while imagepack read it" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not out.exists()
    assert leftovers(tmp_path) == []


def test_a_qcow2_source_truncated_before_qemu_img_convert_is_refused(tmp_path: Path) -> None:
    disk, _ = _swap_setup(tmp_path)
    out = tmp_path / "out.vdi"
    env = _wrapper(tmp_path, "convert", f'truncate -s 512K "{disk}"')
    done = run_cli("convert", str(disk), str(out), env=env)
    assert (tmp_path / "fired").exists()
    assert done.returncode != 0, done.stdout
    assert "changed while imagepack read it" in done.stderr or "cannot read" in done.stderr, done.stderr
    assert not out.exists()


def _opens_of(log: Path, name: str) -> list[str]:
    """The openat calls (of every process) that name `name` itself, not a descriptor of it."""
    pattern = re.compile(r'openat\([^,]+, "(?:[^"]*/)?' + re.escape(name) + '"')
    return [line for line in log.read_text().splitlines() if pattern.search(line)]


def _traced(tmp_path: Path, *args: str, exits: tuple[int, ...] = (0,)) -> Path:
    strace = shutil.which("strace")
    assert strace, "strace is needed for this test (apt-get install strace)"
    log = tmp_path / "openat.log"
    traced = subprocess.run(
        [strace, "-f", "-e", "trace=openat,open", "-o", str(log), sys.executable, "-m", "imagepack", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert traced.returncode in exits, traced.stderr
    return log


def test_convert_of_a_qcow2_opens_it_once(tmp_path: Path) -> None:
    _swap_setup(tmp_path)
    log = _traced(tmp_path, "convert", "disk.qcow2", "out.vmdk")
    assert len(_opens_of(log, "disk.qcow2")) == 1, _opens_of(log, "disk.qcow2")
    assert re.search(r'openat\([^,]+, "/proc/self/fd/\d+"', log.read_text()), "qemu-img read no descriptor"


def test_convert_of_a_oci_opens_it_once(tmp_path: Path) -> None:
    _swap_setup(tmp_path)
    pack = ["pack", "disk.qcow2", "disk.oci", "--os", "Oracle Linux", "--os-version", "9", "--firmware", "BIOS"]
    packed = run_cli(*pack, cwd=tmp_path)
    assert packed.returncode == 0, packed.stderr
    log = _traced(tmp_path, "convert", "disk.oci", "out.vmdk")
    assert len(_opens_of(log, "disk.oci")) == 1, _opens_of(log, "disk.oci")


def test_convert_of_an_ova_opens_it_once(tmp_path: Path) -> None:
    from tests.cli.test_convert_ova import SIZE, vmware_ova

    raw = tmp_path / "guest.raw"
    write_sample_disk(raw, SIZE)
    vmware_ova(tmp_path, raw)
    log = _traced(tmp_path, "convert", "vm.ova", "out.qcow2")
    assert len(_opens_of(log, "vm.ova")) == 1, _opens_of(log, "vm.ova")


def test_convert_of_a_gce_tarball_opens_it_once(tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    write_sample_disk(folder / "disk.raw", 4 * MiB)
    subprocess.run(
        ["tar", "--format=oldgnu", "-cf", str(tmp_path / "image.tar"), "-C", str(folder), "disk.raw"], check=True
    )
    log = _traced(tmp_path, "convert", "image.tar", "out.qcow2")
    assert len(_opens_of(log, "image.tar")) == 1, _opens_of(log, "image.tar")


@pytest.mark.parametrize(
    "verb",
    [
        pytest.param(["unpack", "disk.oci", "-d", "out"], id="unpack"),
        pytest.param(["verify", "disk.oci"], id="verify"),
        pytest.param(["info", "disk.oci"], id="info"),
        pytest.param(["inspect", "disk.oci"], id="inspect"),
        pytest.param(["meta", "show", "disk.oci"], id="meta-show"),
    ],
)
def test_every_verb_reading_a_oci_opens_it_once(tmp_path: Path, verb: list[str]) -> None:
    """What a .oci is, and then its members, are read from one open file (unpack and meta show used to open it by
    name to ask whether it is compressed, then again to read it)."""
    _swap_setup(tmp_path)
    pack = ["pack", "disk.qcow2", "disk.oci", "--os", "Oracle Linux", "--os-version", "9", "--firmware", "BIOS"]
    packed = run_cli(*pack, cwd=tmp_path)
    assert packed.returncode == 0, packed.stderr
    log = _traced(tmp_path, *verb, exits=(0, 3))  # verify: an empty guest is not ready for import
    assert len(_opens_of(log, "disk.oci")) == 1, _opens_of(log, "disk.oci")


def test_convert_of_a_compressed_qcow2_opens_it_once(tmp_path: Path) -> None:
    disk, _ = _swap_setup(tmp_path)
    subprocess.run(["zstd", "-q", str(disk), "-o", str(tmp_path / "disk.qcow2.zst")], check=True)
    log = _traced(tmp_path, "convert", "disk.qcow2.zst", "out.vmdk")
    assert len(_opens_of(log, "disk.qcow2.zst")) == 1, _opens_of(log, "disk.qcow2.zst")


def test_convert_for_a_platform_opens_the_source_once(tmp_path: Path) -> None:
    """A preset's convert used to open the source by name to ask whether it is compressed, then again to read it."""
    _swap_setup(tmp_path)
    log = _traced(tmp_path, "convert", "disk.qcow2", "out.vdi", "--for", "virtualbox")
    assert len(_opens_of(log, "disk.qcow2")) == 1, _opens_of(log, "disk.qcow2")
