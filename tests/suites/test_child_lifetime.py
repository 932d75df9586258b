"""Every program imagepack starts dies with it, even when imagepack (or a batch worker) is killed outright, as the
OOM killer does: no qemu-nbd left holding a lock on the source, no qemu-img left writing, no socket left on disk.
And the socket qemu-nbd serves on does not depend on where TMPDIR is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imagepack.writers.sample import write_data_disk
from tests.conftest import holds_open, leftovers, qemu_img, run_cli
from tests.readers import qemu_compare

MiB = 1024**2
STREAM = ("-o", "subformat=streamOptimized")


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie has ended: it holds no file, lock or memory)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def processes(where: Callable[[int, list[bytes]], bool]) -> list[int]:
    """Live processes whose pid and argv satisfy `where` (read from /proc: nothing is signalled)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path("/proc", entry, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if where(int(entry), argv) and alive(int(entry)):
            found.append(int(entry))
    return found


def blocked(pid: int) -> int:
    """The signals the process blocks (a mask, bit n-1 for signal n)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigBlk:")), 16)


def naming(program: str, text: str) -> Callable[[int, list[bytes]], bool]:
    return lambda pid, argv: argv[0].endswith(program.encode()) and any(text.encode() in a for a in argv)


def reading(program: str, path: Path) -> Callable[[int, list[bytes]], bool]:
    return lambda pid, argv: argv[0].endswith(program.encode()) and holds_open(pid, path)


def wait_until(condition: Callable[[], object], what: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def gone(pids: list[int]) -> Callable[[], bool]:
    return lambda: not any(alive(pid) for pid in pids)


def writable_lock_free(image: Path) -> subprocess.CompletedProcess[str]:
    """Open the image for writing (and write nothing): qemu refuses while another qemu holds its lock."""
    return subprocess.run(["qemu-io", "-c", "quit", str(image)], capture_output=True, text=True, check=False)


@pytest.fixture
def random_qcow2(tmp_path: Path) -> Path:
    """Random data as a qcow2: the stream vmdk writer reads it through qemu-nbd, for a few seconds."""
    raw = tmp_path / "random.raw"
    with open(raw, "wb") as f:
        for _ in range(128):
            f.write(os.urandom(MiB))
    path = tmp_path / "random.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(path))
    raw.unlink()
    return path


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts: killed at its end if still running, whatever the test asserted."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def start_cli(started: list[subprocess.Popen[bytes]], *args: str, env: dict[str, str] | None = None) -> int:
    proc = subprocess.Popen(
        [sys.executable, "-m", "imagepack", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    started.append(proc)
    return proc.pid


def kill_and_reap(started: list[subprocess.Popen[bytes]], pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    for proc in started:
        if proc.pid == pid:
            proc.wait()


def test_kill_9_during_a_stream_vmdk_write_takes_qemu_nbd_along(
    random_qcow2: Path, tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    pid = start_cli(started, "convert", *STREAM, "--threads", "1", str(random_qcow2), str(out / "d.vmdk"), env=env)
    serving = reading("qemu-nbd", random_qcow2)
    wait_until(lambda: processes(serving) and leftovers(out), "qemu-nbd serving the source while the vmdk is written")
    nbd = processes(serving)
    assert not blocked(nbd[0]) & (1 << (signal.SIGTERM - 1)), "qemu-nbd was started with SIGTERM blocked"
    kill_and_reap(started, pid)
    wait_until(gone(nbd), "qemu-nbd ended after imagepack was killed", within=10)
    assert processes(serving) == []
    locked = writable_lock_free(random_qcow2)
    assert locked.returncode == 0, locked.stderr
    assert list(tmpdir.iterdir()) == [], "a socket or its directory was left in TMPDIR"


def test_kill_9_during_a_conversion_takes_qemu_img_along(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    source = tmp_path / "busy.raw"
    write_data_disk(source, 1024 * MiB, 64 * MiB)
    args = ("convert", "--compress", "--stream-writer", "qemu", "--threads", "1")
    pid = start_cli(started, *args, str(source), str(tmp_path / "busy.qcow2"))
    writing = naming("qemu-img", str(tmp_path / ".busy.qcow2.imagepack-"))
    wait_until(lambda: processes(writing), "qemu-img writing the output")
    children = [child for child in processes(writing) if parent_of(child) == pid]
    assert children
    try:
        for child in children:
            os.kill(child, signal.SIGSTOP)  # it stays, stopped, until something kills it: nothing ends it on its own
        kill_and_reap(started, pid)
        wait_until(gone(children), "qemu-img ended after imagepack was killed", within=10)
    finally:
        for child in children:
            if alive(child):
                os.kill(child, signal.SIGKILL)


def batch_manifest(folder: Path, source: Path) -> Path:
    manifest = folder / "batch.toml"
    manifest.write_text(
        f'[[source]]\npath = "{source.name}"\n\n  [[source.output]]\n  path = "out/d.vmdk"\n'
        '  threads = 1\n  options = { subformat = "streamOptimized" }\n'
    )
    return manifest


def workers_of(batch: int) -> list[int]:
    def child_of_batch(pid: int, argv: list[bytes]) -> bool:
        return b"imagepack.verbs.batch.worker" in argv

    return [pid for pid in processes(child_of_batch) if parent_of(pid) == batch]


def parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


@pytest.mark.parametrize("victim", ["worker", "batch"])
def test_kill_9_in_a_batch_takes_the_workers_and_qemu_nbd_along(
    victim: str, random_qcow2: Path, tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    batch = start_cli(started, "batch", str(batch_manifest(tmp_path, random_qcow2)))
    serving = reading("qemu-nbd", random_qcow2)
    wait_until(lambda: processes(serving) and workers_of(batch), "a worker's qemu-nbd serving the source")
    workers, nbd = workers_of(batch), processes(serving)
    kill_and_reap(started, workers[0] if victim == "worker" else batch)
    wait_until(gone(nbd + workers), f"the worker and qemu-nbd ended after the {victim} was killed", within=10)
    # A batch that lost a worker goes on with its jobs (a new worker's qemu-nbd may hold the source meanwhile):
    # the lock is checked once it is done.
    for proc in started:
        if proc.pid == batch and proc.poll() is None:
            proc.wait(timeout=300)
    wait_until(lambda: not processes(serving), "no qemu-nbd left serving the source", within=10)
    locked = writable_lock_free(random_qcow2)
    assert locked.returncode == 0, locked.stderr


def test_a_long_tmpdir_does_not_reach_the_nbd_socket(tmp_path: Path) -> None:
    tmpdir = tmp_path / ("t" * 100) / ("m" * 90)
    tmpdir.mkdir(parents=True)
    assert len(str(tmpdir)) >= 200
    source = tmp_path / "disk.raw"
    write_data_disk(source, 64 * MiB, 8 * MiB)
    qcow2 = tmp_path / "disk.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(source), str(qcow2))
    out = tmp_path / "disk.vmdk"
    done = run_cli("convert", *STREAM, str(qcow2), str(out), env={**os.environ, "TMPDIR": str(tmpdir)})
    assert done.returncode == 0, done.stderr
    assert qemu_compare(source, "raw", out, "vmdk").returncode == 0
    assert list(tmpdir.iterdir()) == []


def test_qemu_nbd_failing_to_start_is_one_line(tmp_path: Path) -> None:
    """A qemu-nbd that cannot serve (here: one that fails at once, as on an image it cannot open) ends the run
    with its own last words, not a hang or a traceback."""
    failing = tmp_path / "qemu-nbd"
    failing.write_text("#!/bin/sh\necho 'qemu-nbd: Failed to blk_new_open: no such driver' >&2\nexit 1\n")
    failing.chmod(0o755)
    source = tmp_path / "disk.raw"
    write_data_disk(source, 8 * MiB, 1 * MiB)
    qcow2 = tmp_path / "disk.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(source), str(qcow2))
    env = {**os.environ, "IMAGEPACK_QEMU_NBD": str(failing)}
    done = run_cli("convert", *STREAM, str(qcow2), str(tmp_path / "d.vmdk"), env=env)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "imagepack: error: qemu-nbd could not export the source: Failed to blk_new_open: no such driver"
    ]
    assert not (tmp_path / "d.vmdk").exists()
