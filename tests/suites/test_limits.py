"""imagepack started under resource limits (ulimit -v, ulimit -t, prlimit): the limits it gives qemu-img never
exceed its own, which it could not raise, and a qemu-img that its own limit kills is named as such, in one line."""

from __future__ import annotations

import json
import resource
from collections.abc import Callable
from pathlib import Path

import pytest

from imagepack.writers.sample import write_data_disk
from tests.conftest import leftovers, qemu_img, run_cli
from tests.readers import qemu_compare

MiB = 1024**2


def limited(which: int, amount: int) -> Callable[[], None]:
    """What `prlimit --as=N` or `ulimit -v` does to the process it starts: soft and hard limit both."""
    return lambda: resource.setrlimit(which, (amount, amount))


@pytest.fixture
def qcow2(tmp_path: Path, sample_raw: Path) -> Path:
    path = tmp_path / "disk.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(sample_raw), str(path))
    return path


@pytest.mark.parametrize(
    ("which", "amount"),
    [(resource.RLIMIT_AS, 900 * MiB), (resource.RLIMIT_CPU, 100)],
    ids=["address-space-900MiB", "cpu-100s"],
)
def test_every_verb_runs_under_a_limit_below_what_qemu_img_is_allowed(
    which: int, amount: int, qcow2: Path, sample_raw: Path, tmp_path: Path
) -> None:
    limit = limited(which, amount)
    info = run_cli("info", "--json", str(qcow2), preexec_fn=limit)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["format"] == "qcow2"
    out = tmp_path / "out.vmdk"
    converted = run_cli("convert", str(qcow2), str(out), preexec_fn=limit)
    assert converted.returncode == 0, converted.stderr
    assert qemu_compare(sample_raw, "raw", out, "vmdk").returncode == 0
    verified = run_cli("verify", "--json", str(qcow2), preexec_fn=limit)
    assert verified.returncode in (0, 3), verified.stderr  # a sample disk may not be ready; it must be checked
    assert "internal error" not in verified.stderr
    assert json.loads(verified.stdout)["format"] == "qcow2"


def test_a_qemu_img_killed_by_the_callers_limit_is_named_in_one_line(tmp_path: Path) -> None:
    source = tmp_path / "busy.raw"
    write_data_disk(source, 256 * MiB, 32 * MiB)
    out = tmp_path / "busy.qcow2"
    # qemu-img, not the in-process writer, with as many coroutines as it takes: their threads need the memory
    args = ("convert", "--compress", "--stream-writer", "qemu", "--threads", "16")

    # Threads take their stacks' size from RLIMIT_STACK: with 96 MiB each, qemu-img's RCU thread and one
    # compressing thread cannot both fit in 200 MiB, however few requests it keeps in flight (imagepack itself
    # starts no thread on this path).
    def limits() -> None:
        limited(resource.RLIMIT_STACK, 96 * MiB)()
        limited(resource.RLIMIT_AS, 200 * MiB)()

    done = run_cli(*args, str(source), str(out), preexec_fn=limits)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("imagepack: error: qemu-img "), lines[0]
    assert "address-space limit of 200 MiB" in lines[0] and "ulimit -v" in lines[0], lines[0]
    assert not out.exists() and leftovers(tmp_path) == []
