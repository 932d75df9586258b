"""Ctrl-C and SIGTERM in the middle of a conversion: the exit status says which, and nothing is left behind —
no output, no temporary file, no qemu-img still running."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imagepack.core.errors import EXIT_SIGINT, EXIT_SIGTERM
from imagepack.writers.sample import write_data_disk
from tests.conftest import leftovers

GiB = 1024**3
MiB = 1024**2


@pytest.fixture(scope="module")
def busy_disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 GiB virtual, 200 MiB of random data spread across it: several seconds of `--compress` work."""
    path = tmp_path_factory.mktemp("interrupt") / "busy.raw"
    write_data_disk(path, 3 * GiB, 200 * MiB)
    return path


def data_digest(path: Path) -> tuple[str, int, int]:
    """conftest.file_digest for a big sparse file: hashes only the data extents (with their offsets), which is
    what a write anywhere would change, plus the size and mtime."""
    h = hashlib.sha256()
    st = path.stat()
    with open(path, "rb") as f:
        fd = f.fileno()
        offset = 0
        while offset < st.st_size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:
                break  # only a hole remains
            end = os.lseek(fd, start, os.SEEK_HOLE)
            h.update(start.to_bytes(8, "little"))
            f.seek(start)
            remaining = end - start
            while remaining:
                chunk = f.read(min(remaining, 4 * MiB))
                h.update(chunk)
                remaining -= len(chunk)
            offset = end
    return h.hexdigest(), st.st_size, st.st_mtime_ns


def processes_naming(text: str) -> list[int]:
    """Processes whose command line contains `text` (a temporary name only one conversion uses)."""
    found = []
    needle = text.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if needle in f.read():
                    found.append(int(entry))
        except OSError:
            continue  # it exited while we looked
    return found


def wait_for_qemu_img_writing(folder: Path, proc: subprocess.Popen[str], deadline: float) -> str:
    """The temporary directory's name, once qemu-img is running on the file inside it."""
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"imagepack ended early: {proc.communicate()}"
        temps = leftovers(folder)
        if temps and processes_naming(temps[0]):
            return temps[0]
        time.sleep(0.02)
    raise AssertionError("no qemu-img started writing a temporary file in time")


def interrupt_a_conversion(
    source: Path, target: Path, signum: signal.Signals, *args: str, command: tuple[str, ...] = ()
) -> tuple[subprocess.CompletedProcess[str], str]:
    """Start a compressing conversion, signal it while qemu-img writes; what it printed, and the temp name."""
    before = data_digest(source)
    # qemu-img writes it (imagepack's own compressed qcow2 writer runs in-process): its child is what is tested.
    argv = command or ("convert", "--compress", "--stream-writer", "qemu", *args, str(source), str(target))
    proc = subprocess.Popen(
        [sys.executable, "-m", "imagepack", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        temp = wait_for_qemu_img_writing(target.parent, proc, time.monotonic() + 20)
        time.sleep(0.3)  # let it write for a moment
        assert proc.poll() is None, "the conversion finished before it could be interrupted"
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert data_digest(source) == before, "the input was modified"
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), temp


@pytest.mark.parametrize(
    ("signum", "exit_code"),
    [(signal.SIGTERM, EXIT_SIGTERM), (signal.SIGINT, EXIT_SIGINT)],
    ids=["sigterm", "sigint"],
)
def test_convert_interrupted_midway_leaves_nothing_behind(
    signum: signal.Signals, exit_code: int, busy_disk: Path, tmp_path: Path
) -> None:
    target = tmp_path / "busy.qcow2"
    proc, temp = interrupt_a_conversion(busy_disk, target, signum)
    assert proc.returncode == exit_code, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == ["imagepack: interrupted; nothing was written"]
    assert proc.stdout == ""
    assert not target.exists()
    assert leftovers(tmp_path) == []
    assert processes_naming(temp) == [], "qemu-img outlived imagepack"


def test_convert_interrupted_with_force_keeps_the_existing_output(busy_disk: Path, tmp_path: Path) -> None:
    target = tmp_path / "busy.qcow2"
    target.write_bytes(b"the image that worked")
    proc, temp = interrupt_a_conversion(busy_disk, target, signal.SIGTERM, "--force")
    assert proc.returncode == EXIT_SIGTERM, proc.stderr
    assert target.read_bytes() == b"the image that worked"
    assert leftovers(tmp_path) == []
    assert processes_naming(temp) == []


def test_convert_interrupted_with_json_prints_the_interrupted_error_object(busy_disk: Path, tmp_path: Path) -> None:
    target = tmp_path / "busy.qcow2"
    proc, temp = interrupt_a_conversion(busy_disk, target, signal.SIGINT, "--json")
    assert proc.returncode == EXIT_SIGINT, proc.stderr
    assert proc.stderr.strip().splitlines() == ["imagepack: interrupted; nothing was written"]
    assert json.loads(proc.stdout) == {"error": {"code": "interrupted", "message": "interrupted; nothing was written"}}
    assert not target.exists()
    assert processes_naming(temp) == []


def test_convert_to_vmdk_interrupted_midway_leaves_nothing_behind(busy_disk: Path, tmp_path: Path) -> None:
    """A vmdk is written under its final name inside a hidden directory: the signal must take the directory too.
    qemu-img's writer here (it names the temporary); imagepack's own is interrupted in test_stream_vmdk."""
    target = tmp_path / "busy.vmdk"
    proc, temp = interrupt_a_conversion(busy_disk, target, signal.SIGTERM)
    assert proc.returncode == EXIT_SIGTERM, proc.stderr
    assert proc.stderr.strip().splitlines() == ["imagepack: interrupted; nothing was written"]
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    assert processes_naming(temp) == []


def test_pack_interrupted_midway_leaves_no_archive(busy_disk: Path, tmp_path: Path) -> None:
    target = tmp_path / "busy.oci"
    pack = (
        "pack",
        "--compress",
        "--stream-writer",
        "qemu",
        str(busy_disk),
        str(target),
        "--os",
        "Oracle Linux",
        "--os-version",
        "9",
        "--firmware",
        "BIOS",
    )
    proc, temp = interrupt_a_conversion(busy_disk, target, signal.SIGTERM, command=pack)
    assert proc.returncode == EXIT_SIGTERM, proc.stderr
    assert proc.stderr.strip().splitlines() == ["imagepack: interrupted; nothing was written"]
    assert not target.exists()
    assert leftovers(tmp_path) == []
    assert processes_naming(temp) == []
