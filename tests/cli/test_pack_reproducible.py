"""Outputs are reproducible by default: the same inputs, written twice a second or more apart, give the same
bytes; SOURCE_DATE_EPOCH sets the time they carry."""

from __future__ import annotations

import hashlib
import os
import tarfile
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli

OCI = ["--os", "Oracle Linux", "--os-version", "9"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    return {**env, **extra}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _twice(tmp_path: Path, name: str, *args: str, env: dict[str, str] | None = None) -> tuple[Path, Path]:
    """Run the verb into a.NAME and, a second later, b/NAME (the same file name: some formats record it)."""
    outs = (tmp_path / "a" / name, tmp_path / "b" / name)
    for i, out in enumerate(outs):
        out.parent.mkdir()
        if i:
            time.sleep(1.1)
        done = run_cli(*[out.as_posix() if a == "OUT" else a for a in args], env=env or _env())
        assert done.returncode == 0, done.stderr
    return outs


@pytest.mark.parametrize("kind", ["qcow2", "vmdk"])
def test_the_same_pack_twice_gives_the_same_bytes(kind: str, make_image, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = make_image(kind)
    a, b = _twice(tmp_path, "disk.oci", "pack", str(source), "OUT", *OCI)
    assert _digest(a) == _digest(b)
    with tarfile.open(a) as tar:
        assert {m.mtime for m in tar.getmembers()} == {0}


def test_source_date_epoch_sets_the_time_and_still_reproduces(make_image, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = make_image("qcow2")
    a, b = _twice(tmp_path, "disk.oci", "pack", str(source), "OUT", *OCI, env=_env(SOURCE_DATE_EPOCH="1700000000"))
    assert _digest(a) == _digest(b)
    with tarfile.open(a) as tar:
        assert {m.mtime for m in tar.getmembers()} == {1700000000}


def test_a_bad_source_date_epoch_is_refused_in_one_line(make_image, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    done = run_cli("pack", str(make_image("qcow2")), str(tmp_path / "d.oci"), *OCI, env=_env(SOURCE_DATE_EPOCH="soon"))
    assert done.returncode != 0 and "SOURCE_DATE_EPOCH" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "d.oci").exists()


def test_the_same_seed_iso_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    user_data = tmp_path / "user-data"
    user_data.write_text("#cloud-config\nhostname: x\n")
    a, b = _twice(tmp_path, "seed.iso", "seed-iso", "--user-data", str(user_data), "OUT")
    assert _digest(a) == _digest(b)


def test_the_same_stream_vmdk_twice_gives_the_same_bytes(sample_raw: Path, tmp_path: Path) -> None:
    a, b = _twice(tmp_path, "disk.vmdk", "convert", str(sample_raw), "OUT", "-o", "subformat=streamOptimized")
    assert _digest(a) == _digest(b)


def test_the_same_gzip_twice_gives_the_same_bytes(sample_raw: Path, tmp_path: Path) -> None:
    a, b = _twice(tmp_path, "disk.raw.gz", "compress", str(sample_raw), "OUT", "--to", "gz")
    assert _digest(a) == _digest(b)
