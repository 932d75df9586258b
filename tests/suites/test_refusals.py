"""What `imagepack convert` refuses: each refusal is one line on stderr, a non-zero exit, no output and no
temporary file left behind, and the input untouched."""

from __future__ import annotations

import os
import resource
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from imagepack.core.errors import EXIT_FAILURE, EXIT_USAGE
from imagepack.writers.sample import write_sample_disk
from tests.conftest import file_digest, leftovers, run_cli
from tests.readers import qemu_compare, read_guest_disk


def assert_refused(done: subprocess.CompletedProcess[str], exit_code: int, *words: str) -> str:
    """One line on stderr naming the problem, nothing on stdout, and the exit status for this kind of refusal."""
    assert done.returncode == exit_code, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    line = lines[0]
    assert line.startswith("imagepack: error: "), line
    for word in words:
        assert word in line, line
    assert done.stdout == ""
    return line


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


# --- the output ---------------------------------------------------------------------------------------------------


def test_convert_refuses_to_replace_an_existing_output_without_force(sample_raw: Path, out_dir: Path) -> None:
    target = out_dir / "disk.qcow2"
    target.write_bytes(b"someone's work")
    done = run_cli("convert", str(sample_raw), str(target))
    assert_refused(done, EXIT_FAILURE, "already exists", "--force")
    assert target.read_bytes() == b"someone's work"
    assert leftovers(out_dir) == []


def test_convert_with_force_replaces_an_existing_output(sample_raw: Path, out_dir: Path) -> None:
    target = out_dir / "disk.qcow2"
    target.write_bytes(b"old")
    done = run_cli("convert", "--force", str(sample_raw), str(target))
    assert done.returncode == 0, done.stderr
    assert qemu_compare(sample_raw, "raw", target, "qcow2").returncode == 0
    assert leftovers(out_dir) == []


@pytest.mark.parametrize("force", [False, True], ids=["plain", "with-force"])
def test_convert_refuses_an_output_that_is_the_input(force: bool, make_image: Callable[..., Path]) -> None:
    source = make_image("qcow2")
    before = file_digest(source)
    done = run_cli("convert", *(["--force"] if force else []), str(source), str(source))
    assert_refused(done, EXIT_FAILURE, "overwrite the input")
    assert file_digest(source) == before
    assert leftovers(source.parent) == []


def test_convert_refuses_an_output_that_is_a_symlink_to_the_input(
    make_image: Callable[..., Path], out_dir: Path
) -> None:
    source = make_image("qcow2")
    before = file_digest(source)
    link = out_dir / "other-name.qcow2"
    link.symlink_to(source)
    done = run_cli("convert", "--force", str(source), str(link))
    assert_refused(done, EXIT_FAILURE, "overwrite the input")
    assert file_digest(source) == before
    assert link.is_symlink()
    assert leftovers(out_dir) == [] and leftovers(source.parent) == []


def test_convert_refuses_an_output_that_is_a_hard_link_to_the_input(
    make_image: Callable[..., Path], out_dir: Path
) -> None:
    source = make_image("vmdk")
    before = file_digest(source)
    link = out_dir / "copy.vmdk"
    os.link(source, link)
    done = run_cli("convert", "--force", str(source), str(link))
    assert_refused(done, EXIT_FAILURE, "overwrite the input")
    assert file_digest(source) == before
    assert leftovers(out_dir) == []


def test_convert_with_force_replaces_a_symlinked_output_and_leaves_its_target_alone(
    sample_raw: Path, out_dir: Path
) -> None:
    elsewhere = out_dir / "unrelated.bin"
    elsewhere.write_bytes(b"not yours to write")
    before = file_digest(elsewhere)
    target = out_dir / "disk.vdi"
    target.symlink_to(elsewhere)
    done = run_cli("convert", "--force", str(sample_raw), str(target))
    assert done.returncode == 0, done.stderr
    assert not target.is_symlink() and target.is_file()
    assert file_digest(elsewhere) == before
    assert read_guest_disk(target, "vdi") == read_guest_disk(sample_raw, "raw")
    assert leftovers(out_dir) == []


def test_convert_refuses_a_symlinked_output_without_force(sample_raw: Path, out_dir: Path) -> None:
    elsewhere = out_dir / "unrelated.bin"
    elsewhere.write_bytes(b"not yours to write")
    target = out_dir / "disk.vdi"
    target.symlink_to(elsewhere)
    done = run_cli("convert", str(sample_raw), str(target))
    assert_refused(done, EXIT_FAILURE, "already exists")
    assert target.is_symlink() and elsewhere.read_bytes() == b"not yours to write"
    assert leftovers(out_dir) == []


@pytest.mark.parametrize("force", [False, True], ids=["plain", "with-force"])
def test_convert_refuses_an_output_that_is_a_directory(force: bool, sample_raw: Path, out_dir: Path) -> None:
    folder = out_dir / "disk.qcow2"
    folder.mkdir()
    (folder / "keep").write_bytes(b"x")
    done = run_cli("convert", *(["--force"] if force else []), str(sample_raw), str(folder))
    assert_refused(done, EXIT_FAILURE, "is a directory")
    assert sorted(p.name for p in folder.iterdir()) == ["keep"]
    assert leftovers(out_dir) == []


def test_convert_refuses_an_output_name_that_names_no_format(sample_raw: Path, out_dir: Path) -> None:
    target = out_dir / "disk.bin"
    done = run_cli("convert", str(sample_raw), str(target))
    assert_refused(done, EXIT_USAGE, "--to")
    assert list(out_dir.iterdir()) == []


def test_convert_refuses_an_output_in_a_missing_directory(sample_raw: Path, tmp_path: Path) -> None:
    target = tmp_path / "no-such-dir" / "disk.qcow2"
    done = run_cli("convert", str(sample_raw), str(target))
    assert_refused(done, EXIT_FAILURE, "does not exist")
    assert not target.parent.exists()


# --- qemu-img -----------------------------------------------------------------------------------------------------


def test_convert_without_qemu_img_at_the_configured_path_says_how_to_get_it(sample_raw: Path, out_dir: Path) -> None:
    target = out_dir / "disk.qcow2"
    env = {**os.environ, "IMAGEPACK_QEMU_IMG": "/nonexistent"}
    done = run_cli("convert", str(sample_raw), str(target), env=env)
    assert_refused(done, EXIT_FAILURE, "IMAGEPACK_QEMU_IMG=/nonexistent", "install")
    assert list(out_dir.iterdir()) == []


def test_convert_without_qemu_img_on_path_says_how_to_get_it(sample_raw: Path, out_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "IMAGEPACK_QEMU_IMG"}
    env["PATH"] = str(empty)
    target = out_dir / "disk.qcow2"
    done = run_cli("convert", str(sample_raw), str(target), env=env)
    assert_refused(done, EXIT_FAILURE, "qemu-img is not installed", "qemu-utils")
    assert list(out_dir.iterdir()) == []


# --- options ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target_name", "args", "words"),
    [
        ("disk.qcow2", ["-o", "flavour=mint"], ["-o flavour", "not an option of qcow2", "compat"]),
        ("disk.vmdk", ["-o", "subformat=monolithicFlat"], ["subformat=monolithicFlat", "streamOptimized"]),
        ("disk.qcow2", ["-o", "compat=0.10", "-o", "compression_type=zstd"], ["zstd", "compat=1.1"]),
        ("disk.qcow2", ["-o", "cluster_size=3k"], ["cluster_size=3k", "power of two"]),
        ("disk.vdi", ["--compress"], ["--compress", "vdi"]),
        ("disk.vmdk", ["--compress", "-o", "subformat=monolithicSparse"], ["--compress", "streamOptimized"]),
        ("disk.qcow2", ["-o", "compat"], ["KEY=VALUE"]),
        ("disk.qcow2", ["--to", "vhdx"], ["vhdx", "qcow2"]),
    ],
    ids=[
        "unknown-key",
        "multi-file-vmdk-subformat",
        "zstd-needs-compat-1.1",
        "cluster-size-not-a-power-of-two",
        "compress-for-vdi",
        "compress-with-sparse-vmdk",
        "option-without-value",
        "unknown-target-format",
    ],
)
def test_convert_refuses_options_the_format_cannot_take_as_a_usage_error(
    target_name: str, args: list[str], words: list[str], sample_raw: Path, out_dir: Path
) -> None:
    target = out_dir / target_name
    done = run_cli("convert", *args, str(sample_raw), str(target))
    assert_refused(done, EXIT_USAGE, *words)
    assert list(out_dir.iterdir()) == []


# --- the input ----------------------------------------------------------------------------------------------------


def test_convert_refuses_a_directory_as_input(tmp_path: Path, out_dir: Path) -> None:
    folder = tmp_path / "disk.raw"
    folder.mkdir()
    done = run_cli("convert", str(folder), str(out_dir / "disk.qcow2"))
    assert_refused(done, EXIT_FAILURE, "directory")
    assert list(out_dir.iterdir()) == []


def test_convert_refuses_a_fifo_as_input_without_waiting_for_a_writer(tmp_path: Path, out_dir: Path) -> None:
    fifo = tmp_path / "disk.raw"
    os.mkfifo(fifo)
    done = run_cli("convert", str(fifo), str(out_dir / "disk.qcow2"), timeout=30)
    assert_refused(done, EXIT_FAILURE, "regular file")
    assert list(out_dir.iterdir()) == []


def test_convert_refuses_a_missing_input(tmp_path: Path, out_dir: Path) -> None:
    done = run_cli("convert", str(tmp_path / "nowhere.qcow2"), str(out_dir / "disk.raw"))
    assert_refused(done, EXIT_FAILURE, "nowhere.qcow2", "no such file")
    assert list(out_dir.iterdir()) == []


def test_info_refuses_a_missing_input(tmp_path: Path) -> None:
    done = run_cli("info", str(tmp_path / "nowhere.qcow2"))
    assert_refused(done, EXIT_FAILURE, "no such file")


# --- room to write ------------------------------------------------------------------------------------------------


def test_convert_refuses_when_the_output_file_system_lacks_room(
    sample_raw: Path, mount_tmpfs: Callable[[str], Path]
) -> None:
    small = mount_tmpfs("1m")
    target = small / "disk.qcow2"
    done = run_cli("convert", str(sample_raw), str(target))
    assert_refused(done, EXIT_FAILURE, "MiB is free")
    assert list(small.iterdir()) == []


@pytest.mark.parametrize("fmt", ["raw", "qcow2", "vmdk", "vdi", "vhd"])
def test_convert_to_a_sparse_format_needs_room_only_for_the_data(
    fmt: str, tmp_path: Path, mount_tmpfs: Callable[[str], Path]
) -> None:
    """A 1 GiB disk holding a few hundred KiB converts onto a 128 MiB file system (a 400 GiB cloud disk must
    not need 400 GiB free to become a sparse vmdk)."""
    source = tmp_path / "big-but-empty.raw"
    write_sample_disk(source, 1024**3)
    small = mount_tmpfs("128m")
    target = small / f"disk.{fmt}"
    done = run_cli("convert", str(source), str(target))
    assert done.returncode == 0, done.stderr
    assert qemu_compare(source, "raw", target, fmt).returncode == 0
    assert leftovers(small) == []


def _limit_file_size_to_1_mib() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024**2, 1024**2))


def test_convert_removes_its_temporary_file_when_the_write_fails_midway(sample_raw: Path, out_dir: Path) -> None:
    """RLIMIT_FSIZE (inherited by qemu-img) makes the write fail once the output passes 1 MiB."""
    before = file_digest(sample_raw)
    target = out_dir / "disk.qcow2"
    done = run_cli("convert", str(sample_raw), str(target), preexec_fn=_limit_file_size_to_1_mib)
    assert_refused(done, EXIT_FAILURE, "qemu-img convert failed", "File too large")
    assert list(out_dir.iterdir()) == []
    assert file_digest(sample_raw) == before


def test_a_failed_conversion_with_force_keeps_the_existing_output(sample_raw: Path, out_dir: Path) -> None:
    """--force replaces the output only with a whole new one: a write that fails leaves the old file as it was."""
    target = out_dir / "disk.qcow2"
    target.write_bytes(b"yesterday's good image")
    done = run_cli("convert", "--force", str(sample_raw), str(target), preexec_fn=_limit_file_size_to_1_mib)
    assert_refused(done, EXIT_FAILURE, "File too large")
    assert target.read_bytes() == b"yesterday's good image"
    assert leftovers(out_dir) == []


def test_a_failed_write_names_the_output_not_the_temporary_file(sample_raw: Path, out_dir: Path) -> None:
    target = out_dir / "disk.raw"  # qemu-img sizes a raw target first, and names the file when that fails
    done = run_cli("convert", str(sample_raw), str(target), preexec_fn=_limit_file_size_to_1_mib)
    line = assert_refused(done, EXIT_FAILURE, "File too large", str(target))
    assert ".imagepack-" not in line
    assert list(out_dir.iterdir()) == []
