"""Shared fixtures: real images made with the real qemu-img, and a runner for the real CLI."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imagepack.writers.sample import write_sample_disk

QEMU_IMG = os.environ.get("IMAGEPACK_QEMU_IMG", "qemu-img")
# Not a whole MiB, but whole sectors: every format can hold it exactly.
ODD_SIZE = 5 * 1024**2 + 64 * 1024 + 3 * 512


FIXTURES = Path(__file__).parent.parent / "fixtures"

# image_metadata.json as SPEC.md §2 shows it (PARAVIRTUALIZED, UEFI), for archives the tests build by hand.
SPEC_METADATA: dict[str, object] = json.loads((FIXTURES / "metadata" / "spec-example.json").read_text())


def qemu_img(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([QEMU_IMG, *args], check=True, capture_output=True, text=True)


def run_cli(*args: str, timeout: float = 120, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """The installed CLI as a user runs it, in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "imagepack", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )


def interrupt_when(
    args: list[str], ready: Callable[[], bool], *, signum: int = signal.SIGTERM, within: float = 60
) -> tuple[int, str]:
    """Run the CLI, wait until `ready()` says it is midway, send it `signum`, and return its exit code and
    stderr. Fails when it never gets there, or ends before it can be interrupted."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "imagepack", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + within
        while not ready():
            assert proc.poll() is None, f"imagepack ended before it could be interrupted: {proc.communicate()}"
            assert time.monotonic() < deadline, "imagepack never got midway"
            time.sleep(0.02)
        time.sleep(0.2)
        assert proc.poll() is None, "imagepack finished before it could be interrupted"
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, stderr


def holds_open(pid: int, path: Path) -> bool:
    """Whether the process has `path` open (imagepack hands its children the input as an open descriptor, so the
    input's name is on no command line)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                return True
        except OSError:
            continue
    return False


def file_digest(path: Path) -> tuple[str, int]:
    """Content hash and mtime (ns): what 'the input is never modified' is checked against."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest(), os.stat(path).st_mtime_ns


def leftovers(folder: Path) -> list[str]:
    """Temporary files or directories (an output is written inside one) imagepack would have left in `folder`."""
    return sorted(p.name for p in folder.iterdir() if ".imagepack-" in p.name)


@pytest.fixture
def sample_raw(tmp_path: Path) -> Path:
    path = tmp_path / "sample.raw"
    write_sample_disk(path, ODD_SIZE)
    return path


@pytest.fixture
def make_image(sample_raw: Path, tmp_path: Path) -> Callable[..., Path]:
    """Convert the sample disk into `fmt` with qemu-img itself (not imagepack), with optional -o options."""

    def make(fmt: str, name: str | None = None, options: str | None = None) -> Path:
        driver = "vpc" if fmt == "vhd" else fmt
        out = tmp_path / (name or f"sample-src.{fmt}")
        extra = ["-o", options] if options else []
        qemu_img("convert", "-f", "raw", "-O", driver, *extra, str(sample_raw), str(out))
        return out

    return make


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount a tmpfs of the given size (needs root); skips the test when mounting is not allowed here."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        if shutil.which("mount") is None:
            pytest.skip("no mount command")
        where = tmp_path / f"tmpfs-{size}"
        where.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", str(where)], check=True)


@pytest.fixture(scope="session")
def debian_guests() -> dict[str, Path]:
    """The real Debian 12 guests (tests/guests.py: `uefi-ext4`, `bios-ext4`, `lvm-xfs`), name -> a read-only raw
    disk in the cache outside the clone, built on first use (as root, with the tools scripts/setup installs)."""
    from tests.guests import GuestsUnavailable, ensure_guests

    try:
        return ensure_guests()
    except GuestsUnavailable as e:
        pytest.skip(str(e))
