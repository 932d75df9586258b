"""A file system that fills up while an output is written: one error line saying so, exit 1, nothing left
behind (no output, no temporary), on a real tmpfs of a few MiB."""

from __future__ import annotations

import contextlib
import gzip
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import qemu_img, run_cli

MIB = 1024**2
OCI = ["--os", "Oracle Linux", "--os-version", "9", "--firmware", "BIOS"]


@pytest.fixture
def six_mib(tmp_path: Path) -> Path:
    """6 MiB of data that compresses to next to nothing in gzip's header-less eyes: no size is declared."""
    path = tmp_path / "six.raw"
    path.write_bytes(random.Random(20).randbytes(6 * MIB))
    return path


def gzipped(path: Path) -> Path:
    out = path.with_name(path.name + ".gz")
    with gzip.open(out, "wb", compresslevel=1) as f:
        f.write(path.read_bytes())
    return out


def refused_for_room(done: subprocess.CompletedProcess[str], full: Path) -> None:
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no space left on" in lines[0] and "free " in lines[0], lines
    assert "Traceback" not in done.stderr
    assert sorted(os.listdir(full)) == [], "an output or a temporary was left on the full file system"


def test_decompress_of_more_than_fits_fails_and_leaves_nothing(
    six_mib: Path, mount_tmpfs: Callable[[str], Path]
) -> None:
    full = mount_tmpfs("5m")
    refused_for_room(run_cli("decompress", str(gzipped(six_mib)), str(full / "six.raw")), full)


@pytest.mark.parametrize("name", ["six.raw", "six.qcow2"])
def test_convert_of_a_compressed_raw_that_does_not_fit_fails_and_leaves_nothing(
    name: str, six_mib: Path, mount_tmpfs: Callable[[str], Path]
) -> None:
    """The decoded disk goes into the output (raw, one pass) or into a scratch file beside it (qcow2): either
    fills the 5 MiB tmpfs."""
    full = mount_tmpfs("5m")
    refused_for_room(run_cli("convert", str(gzipped(six_mib)), str(full / name)), full)


def test_compress_into_a_full_file_system_fails_and_leaves_nothing(
    six_mib: Path, mount_tmpfs: Callable[[str], Path]
) -> None:
    full = mount_tmpfs("5m")
    refused_for_room(run_cli("compress", str(six_mib), str(full / "six.raw.zst")), full)


def test_pack_of_a_compressed_qcow2_that_does_not_fit_fails_and_leaves_nothing(
    six_mib: Path, tmp_path: Path, mount_tmpfs: Callable[[str], Path]
) -> None:
    """The one-pass writer decodes straight into the archive's member; gzip declares no size to check first."""
    disk = tmp_path / "six.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(six_mib), str(disk))
    full = mount_tmpfs("5m")
    refused_for_room(run_cli("pack", str(gzipped(disk)), str(full / "six.oci"), *OCI), full)


def test_a_seed_iso_that_does_not_fit_fails_and_leaves_nothing(
    tmp_path: Path, mount_tmpfs: Callable[[str], Path]
) -> None:
    rng = random.Random(3)
    lines = ["#cloud-config", "write_files:", "- path: /big", "  content: |"]
    lines += ["    " + "".join(rng.choice("abcdefghijklmnop") for _ in range(60)) for _ in range(25_000)]
    user_data = tmp_path / "user-data"
    user_data.write_text("\n".join(lines) + "\n")
    full = mount_tmpfs("1m")
    refused_for_room(run_cli("seed-iso", "--user-data", str(user_data), str(full / "seed.iso")), full)


def test_a_write_that_fits_still_succeeds_on_the_small_file_system(
    six_mib: Path, tmp_path: Path, mount_tmpfs: Callable[[str], Path]
) -> None:
    """The checks cost nothing where there is room: 3 MiB decompress into the same 5 MiB tmpfs."""
    three = tmp_path / "three.raw"
    three.write_bytes(six_mib.read_bytes()[: 3 * MIB])
    full = mount_tmpfs("5m")
    done = run_cli("decompress", str(gzipped(three)), str(full / "three.raw"))
    assert done.returncode == 0, done.stderr
    assert (full / "three.raw").read_bytes() == three.read_bytes()
    assert sorted(os.listdir(full)) == ["three.raw"]


def test_qemu_img_running_out_of_room_midway_is_the_same_one_line(
    tmp_path: Path, mount_tmpfs: Callable[[str], Path]
) -> None:
    """The free-space check passed, then another writer took the room: qemu-img's own failure is told as ours."""
    source = tmp_path / "noise.raw"
    source.write_bytes(random.Random(7).randbytes(48 * MIB))
    full = mount_tmpfs("64m")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imagepack",
            "convert",
            "--compress",
            "--threads",
            "1",
            str(source),
            str(full / "o.qcow2"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    filler = full / "filler"
    try:
        deadline = time.monotonic() + 60
        while not any(f.stat().st_size > MIB for d in full.glob(".*imagepack-*") for f in d.iterdir()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the convert never started writing"
            time.sleep(0.01)
        with open(filler, "wb") as f, contextlib.suppress(OSError):
            while True:
                f.write(bytes(MIB))
                f.flush()
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    filler.unlink()
    assert proc.returncode == 1, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and f"no space left on {full}: free " in lines[0] and "needed " in lines[0], stderr
    assert os.listdir(full) == []
