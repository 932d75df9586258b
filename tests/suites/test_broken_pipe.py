"""A reader that goes away (`imagepack info big.iso | head -c 10`) ends imagepack as SIGPIPE would under a shell:
status 141, not a word, whatever the verb and whichever of stdout or stderr it was writing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

PIPE_CLOSED = 141


@pytest.fixture(scope="module")
def big_iso(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ISO of 3000 files: `info` lists them all, far more than a pipe holds."""
    if shutil.which("genisoimage") is None:
        pytest.fail("genisoimage is not installed (scripts/setup installs it)")
    folder = tmp_path_factory.mktemp("iso")
    files = folder / "files"
    files.mkdir()
    for n in range(3000):
        (files / f"file-with-a-rather-long-name-{n}.txt").write_bytes(b"")
    out = folder / "big.iso"
    subprocess.run(["genisoimage", "-quiet", "-o", str(out), "-J", "-R", str(files)], check=True)
    return out


def read_then_close(*args: str, keep: int = 10) -> tuple[int, bytes, str]:
    """Run the CLI into a real pipe, read `keep` bytes, close the pipe as `head -c` does, and wait."""
    proc = subprocess.Popen([sys.executable, "-m", "imagepack", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    head = proc.stdout.read(keep)
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    return proc.wait(timeout=120), head, stderr


@pytest.mark.parametrize("form", [[], ["--json"]], ids=["text", "json"])
def test_info_of_a_large_listing_into_a_pipe_closed_early_ends_with_141_and_no_word(
    big_iso: Path, form: list[str]
) -> None:
    full = run_cli("info", *form, str(big_iso))
    assert full.returncode == 0 and len(full.stdout) > 1024**2 // 8  # more than any pipe buffers
    status, head, stderr = read_then_close("info", *form, str(big_iso))
    assert status == PIPE_CLOSED, stderr
    assert head == full.stdout.encode()[:10]
    assert stderr == ""


def closed_pipe_run(args: list[str], *, closed: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI with stdout or stderr a pipe whose reader is already gone: every write to it fails."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, closed: writer}
        return subprocess.run(
            [sys.executable, "-m", "imagepack", *args], text=True, timeout=120, check=False, cwd=cwd, **streams
        )
    finally:
        os.close(writer)


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["info", "--help"],
        ["convert", "--for", "list"],
        ["convert", "--for", "list", "--json"],
    ],
    ids=["help", "version", "verb-help", "presets", "presets-json"],
)
def test_every_printing_path_into_a_closed_stdout_ends_with_141(args: list[str]) -> None:
    done = closed_pipe_run(args, closed="stdout")
    assert (done.returncode, done.stderr) == (PIPE_CLOSED, "")


@pytest.mark.parametrize("form", [[], ["--json"]], ids=["text", "json"])
def test_a_convert_whose_summary_meets_a_closed_stdout_ends_with_141(
    sample_raw: Path, tmp_path: Path, form: list[str]
) -> None:
    out = tmp_path / "disk.qcow2"
    done = closed_pipe_run(["convert", str(sample_raw), str(out), *form], closed="stdout")
    assert (done.returncode, done.stderr) == (PIPE_CLOSED, "")
    assert out.exists()  # written whole before the summary was printed


def test_a_warning_into_a_closed_stderr_ends_with_141(sample_raw: Path, tmp_path: Path) -> None:
    args = ["pack", str(sample_raw), str(tmp_path / "a.oci"), "--os", "Talos", "--os-version", "1", "--firmware"]
    done = closed_pipe_run([*args, "BIOS"], closed="stderr")
    assert (done.returncode, done.stdout) == (PIPE_CLOSED, "")


def test_an_error_into_a_closed_stdout_and_stderr_ends_with_141_and_no_traceback(tmp_path: Path) -> None:
    reader, writer = os.pipe()
    os.close(reader)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "imagepack", "info", "--json", str(tmp_path / "missing.raw")],
            stdout=writer,
            stderr=writer,
            timeout=120,
            check=False,
        )
    finally:
        os.close(writer)
    assert done.returncode == PIPE_CLOSED
