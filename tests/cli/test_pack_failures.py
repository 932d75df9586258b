"""Packing that cannot finish (a full file system, a write that fails midway) leaves no archive behind."""

from __future__ import annotations

import resource
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import file_digest, leftovers, run_cli

PACK = ("--os", "Oracle Linux", "--os-version", "9")


def _limit_file_size_to_1_mib() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024**2, 1024**2))


@pytest.mark.parametrize("fmt", ["raw", "qcow2"], ids=["converted-in-place", "copied-in-the-kernel"])
def test_pack_whose_write_fails_midway_leaves_nothing(
    fmt: str, sample_raw: Path, make_image: Callable[..., Path], tmp_path: Path
) -> None:
    source = sample_raw if fmt == "raw" else make_image("qcow2")
    before = file_digest(source)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    done = run_cli("pack", str(source), str(out_dir / "disk.oci"), *PACK, preexec_fn=_limit_file_size_to_1_mib)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "disk.oci" in lines[0] and ".imagepack-" not in lines[0]
    assert list(out_dir.iterdir()) == []
    assert file_digest(source) == before


def test_pack_refuses_up_front_when_the_file_system_lacks_room(
    make_image: Callable[..., Path], mount_tmpfs: Callable[[str], Path]
) -> None:
    small = mount_tmpfs("1m")
    done = run_cli("pack", str(make_image("qcow2")), str(small / "disk.oci"), *PACK)
    assert done.returncode == 1
    assert "MiB is free" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert list(small.iterdir()) == []


def test_unpack_refuses_up_front_when_the_file_system_lacks_room(
    sample_raw: Path, tmp_path: Path, mount_tmpfs: Callable[[str], Path]
) -> None:
    archive = tmp_path / "disk.oci"
    assert run_cli("pack", str(sample_raw), str(archive), *PACK).returncode == 0
    small = mount_tmpfs("1m")
    done = run_cli("unpack", str(archive), "-d", str(small))
    assert done.returncode == 1
    assert "MiB is free" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert leftovers(small) == [] and list(small.iterdir()) == []
