"""What the environment imagepack is started in can take away (closed standard descriptors, few open files): each
gives a run that works or one clear line, never an internal error."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import qemu_img, run_cli
from tests.readers import qemu_compare


def closing(*fds: int) -> Callable[[], None]:
    """What `<&-`, `>&-` and `2>&-` do to the process a shell starts."""

    def close() -> None:
        for fd in fds:
            os.close(fd)

    return close


@pytest.fixture
def qcow2(tmp_path: Path, sample_raw: Path) -> Path:
    path = tmp_path / "disk.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(sample_raw), str(path))
    return path


@pytest.mark.parametrize("fds", [(0,), (2,), (0, 2), (0, 1, 2)], ids=["stdin", "stderr", "stdin-stderr", "all"])
def test_a_conversion_with_standard_descriptors_closed_works(
    fds: tuple[int, ...], qcow2: Path, sample_raw: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.vmdk"
    argv = [sys.executable, "-m", "imagepack", "convert", "-o", "subformat=streamOptimized", str(qcow2), str(out)]
    done = subprocess.run(argv, preexec_fn=closing(*fds), check=False, timeout=120, capture_output=1 not in fds)
    assert done.returncode == 0, done.stderr
    assert qemu_compare(sample_raw, "raw", out, "vmdk").returncode == 0


def test_info_with_stderr_closed_prints_its_answer(qcow2: Path) -> None:
    done = run_cli("info", "--json", str(qcow2), stderr=None, preexec_fn=closing(2))
    assert done.returncode == 0, done.stdout
    assert json.loads(done.stdout)["format"] == "qcow2"


def test_too_few_open_files_is_one_line_saying_so(qcow2: Path) -> None:
    def few_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (8, 8))

    done = run_cli("info", str(qcow2), preexec_fn=few_files)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imagepack: error: cannot start qemu-img: "), done.stderr
    assert "ulimit -n" in lines[0] and "install" not in lines[0], lines[0]


@pytest.mark.parametrize("args", [["info"], ["info", "--json"], ["verify"]], ids=["info", "info-json", "verify"])
def test_an_answer_for_a_closed_stdout_is_an_error_not_a_silent_success(args: list[str], qcow2: Path) -> None:
    done = run_cli(*args, str(qcow2), stdout=None, preexec_fn=closing(1))
    assert done.returncode == 1, done.stderr
    assert (
        done.stderr.strip().splitlines()[-1]
        == "imagepack: error: standard output is closed: the answer cannot be written"
    )
