"""A command of several steps reports each as a stage of its own (a bar and an ETA per stage, not one bar whose
speed jumps between them), and the time it reports is the whole command's, the decoding of its input included."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from imagepack.core.progress import share, stage
from imagepack.formats import ImageFormat
from imagepack.sources.open import OpenOptions
from imagepack.verbs.build import Target, make
from imagepack.writers.sample import write_data_disk

MiB = 1024**2


@pytest.fixture(scope="module")
def compressed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An xz-compressed raw disk of random data: decoding it takes longer than converting it. Made once for the
    module (xz takes seconds over it); every test only reads it."""
    raw = tmp_path_factory.mktemp("progress") / "disk.raw"
    write_data_disk(raw, 48 * MiB, 48 * MiB)
    subprocess.run(["xz", "-0", "-T1", str(raw)], check=True)
    return raw.with_name("disk.raw.xz")


class Recorder:
    """A progress callback that shows stages, as the CLI's bar does: it keeps what it is told, and when."""

    def __init__(self) -> None:
        self.fractions: list[tuple[float, float]] = []  # (time, fraction of the whole)
        self.stages: list[tuple[float, str, float, float]] = []  # (time, label, start, end)

    def __call__(self, fraction: float) -> None:
        self.fractions.append((time.monotonic(), fraction))

    def stage(self, label: str, start: float, end: float) -> None:
        self.stages.append((time.monotonic(), label, start, end))


def test_a_compressed_input_is_decoded_then_converted_each_a_stage_of_its_own(compressed: Path, tmp_path: Path) -> None:
    seen = Recorder()
    make(compressed, Target(tmp_path / "disk.vmdk", ImageFormat.VMDK), OpenOptions(on_progress=seen))
    assert [(label, start, end) for _, label, start, end in seen.stages] == [
        ("decompressing", 0.0, 0.5),
        ("converting", 0.5, 1.0),
    ]
    fractions = [fraction for _, fraction in seen.fractions]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    converting_from = seen.stages[1][0]
    assert all(fraction <= 0.5 for at, fraction in seen.fractions if at < converting_from)


def test_the_time_reported_covers_the_decoding(compressed: Path, tmp_path: Path) -> None:
    seen = Recorder()
    began = time.monotonic()
    done = make(compressed, Target(tmp_path / "disk.vmdk", ImageFormat.VMDK), OpenOptions(on_progress=seen))
    ended = time.monotonic()
    decoded = max(at for at, fraction in seen.fractions if fraction <= 0.5)  # the last report of the decoding
    assert decoded - began <= done.seconds <= ended - began


def test_stages_inside_a_part_are_mapped_into_it() -> None:
    seen = Recorder()
    outer = share(seen, 0.5, 1.0)
    inner = stage(outer, "checksumming", 0.8, 1.0)
    assert inner is not None
    inner(0.5)
    assert [(label, start, end) for _, label, start, end in seen.stages] == [("checksumming", 0.9, 1.0)]
    assert [fraction for _, fraction in seen.fractions] == [pytest.approx(0.95)]
    unstaged: list[float] = []
    plain = stage(unstaged.append, "checksumming", 0.8, 1.0)  # a plain callback sees only its part of the whole
    assert plain is not None
    plain(0.5)
    assert unstaged == [pytest.approx(0.9)]


def _terminal_stderr(args: list[str]) -> tuple[int, str, str]:
    """Run the CLI with stderr a terminal (where the bar is shown): its exit status, stdout and what the terminal
    received."""
    controller, terminal = pty.openpty()
    # A terminal's size, as a real one has (rows, columns): a bar of no columns is drawn as nothing.
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "imagepack", *args], stdout=subprocess.PIPE, stderr=terminal, text=True
    )
    os.close(terminal)
    shown = bytearray()
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError as e:  # EIO: every writer of the terminal has closed it
            assert e.errno == errno.EIO
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    stdout, _ = proc.communicate(timeout=120)
    return proc.returncode, stdout, shown.decode(errors="replace")


def test_the_bar_shows_each_stage_by_name(compressed: Path, tmp_path: Path) -> None:
    status, stdout, shown = _terminal_stderr(["convert", str(compressed), str(tmp_path / "disk.vmdk"), "--json"])
    assert status == 0, shown
    assert "(decompressing)" in shown and "(converting)" in shown
    assert shown.index("(decompressing)") < shown.rindex("(converting)")
    assert json.loads(stdout)["seconds"] > 0
