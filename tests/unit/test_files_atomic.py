"""The final rename of an output: a new output never replaces a file another writer put at its name meanwhile,
and the temporaries of a run killed with SIGKILL are removed by the next run that writes there (only those)."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imagepack.core.errors import OutputError
from imagepack.files.atomic import atomic_output, check_target
from imagepack.files.leftovers import owner_tag
from tests.conftest import leftovers, run_cli

MIB = 1024**2


def test_a_file_that_appears_at_a_new_output_meanwhile_is_not_replaced(tmp_path: Path) -> None:
    target = tmp_path / "out.raw"
    check_target(target, force=False)
    with pytest.raises(OutputError) as refused, atomic_output(target) as temp:
        temp.write_bytes(b"ours")
        target.write_bytes(b"the other writer's")  # a second run finished first
    assert refused.value.code == "output.exists"
    assert target.read_bytes() == b"the other writer's"
    assert leftovers(tmp_path) == []


def test_with_force_the_file_that_appeared_is_replaced(tmp_path: Path) -> None:
    target = tmp_path / "out.raw"
    check_target(target, force=True)
    with atomic_output(target) as temp:
        temp.write_bytes(b"ours")
        target.write_bytes(b"the other writer's")
    assert target.read_bytes() == b"ours" and leftovers(tmp_path) == []


def test_a_dangling_symlink_that_appears_is_not_replaced_either(tmp_path: Path) -> None:
    target = tmp_path / "out.raw"
    check_target(target, force=False)
    with pytest.raises(OutputError), atomic_output(target) as temp:
        temp.write_bytes(b"ours")
        os.symlink(tmp_path / "nowhere", target)
    assert os.readlink(target) == str(tmp_path / "nowhere")


def test_two_converts_to_one_new_output_without_force_one_is_refused(sample_raw: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.vdi"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "imagepack", "convert", str(sample_raw), str(target)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=120), p.communicate()[1]) for p in procs]
    assert sorted(code for code, _ in results) == [0, 1], results
    refused = next(err for code, err in results if code == 1)
    assert "already exists" in refused
    assert leftovers(tmp_path) == []


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if ".imagepack-" in p.name]


def test_a_killed_convert_leaves_temporaries_the_next_run_removes(tmp_path: Path) -> None:
    """SIGKILL mid-decompression leaves the scratch directory (and the output's temporary); the next run writing
    into that directory removes them, but not a live process's, nor a look-alike that is not ours."""
    raw = tmp_path / "big.raw"
    block = os.urandom(MIB)
    with open(raw, "wb") as f:
        for i in range(160):
            f.write(block[i:] + block[:i])
    source = tmp_path / "big.raw.gz"
    with open(raw, "rb") as src, gzip.open(source, "wb", compresslevel=1) as out:
        while chunk := src.read(8 * MIB):
            out.write(chunk)
    raw.unlink()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "imagepack", "convert", str(source), str(out_dir / "big.qcow2")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not any(f.stat().st_size > MIB for d in _temporaries(out_dir) for f in d.iterdir()):
            assert proc.poll() is None, "the convert ended before it could be killed"
            assert time.monotonic() < deadline, "the convert never wrote its temporary"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    left = _temporaries(out_dir)
    assert left, "the kill left nothing to clean up"

    alive = out_dir / f".x.{owner_tag()}"  # this test's own process: alive
    alive.mkdir(mode=0o700)
    foreign = out_dir / ".y.imagepack-1-1-0123abcd.tmp"  # named like ours, but open to others: not ours
    foreign.mkdir(mode=0o755)
    os.chmod(foreign, 0o755)
    _, pid, _, system, _ = owner_tag().split("-")
    reused = out_dir / f".z.imagepack-{pid}-1-{system}-0123abcd.tmp"  # our pid, another start: a dead owner
    reused.mkdir(mode=0o700)
    elsewhere = out_dir / f".w.imagepack-{pid}-1-{int(system, 16) ^ 1:06x}-0123abcd.tmp"  # another container's
    elsewhere.mkdir(mode=0o700)

    small = tmp_path / "small.raw"
    small.write_bytes(bytes(MIB))
    done = run_cli("convert", str(small), str(out_dir / "small.qcow2"))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in _temporaries(out_dir)) == sorted([alive.name, foreign.name, elsewhere.name])
    assert not any(p.exists() for p in left) and not reused.exists()
