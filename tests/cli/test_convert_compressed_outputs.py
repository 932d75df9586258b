"""Targets named `disk.qcow2.zst`, `disk.raw.xz`, `image.oci.gz`: the artifact is written, then compressed into
place. The real zstd, xz and gzip read the result back; the temporary never outlives the command."""

from __future__ import annotations

import signal
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from imagepack.core.errors import InvalidValueError
from imagepack.formats import ImageFormat
from imagepack.verbs.build import Target, make
from imagepack.writers.sample import write_data_disk
from tests.conftest import file_digest, interrupt_when, leftovers, qemu_img, run_cli
from tests.unit.test_formats_detect import one_error_line

PACK_ARGS = ("--os", "Oracle Linux", "--os-version", "8")
DECOMPRESSORS = {"zst": ["zstd", "-q", "-d", "-c"], "xz": ["xz", "-d", "-c"], "gz": ["gzip", "-d", "-c"]}


def decompress_with_the_real_tool(packed: Path, out: Path) -> None:
    codec = packed.suffix.removeprefix(".")
    with open(out, "wb") as f:
        subprocess.run([*DECOMPRESSORS[codec], str(packed)], stdout=f, check=True)


@pytest.mark.parametrize("codec", sorted(DECOMPRESSORS))
@pytest.mark.parametrize(("fmt", "driver"), [("raw", "raw"), ("qcow2", "qcow2")])
def test_convert_to_a_compressed_disk_name_writes_a_stream_of_that_disk(
    codec: str, fmt: str, driver: str, sample_raw: Path, tmp_path: Path
) -> None:
    before = file_digest(sample_raw)
    target = tmp_path / f"disk.{fmt}.{codec}"
    done = run_cli("convert", str(sample_raw), str(target))
    assert done.returncode == 0, done.stderr
    inner = tmp_path / f"back.{fmt}"
    decompress_with_the_real_tool(target, inner)
    qemu_img("compare", "-f", "raw", "-F", driver, str(sample_raw), str(inner))
    assert file_digest(sample_raw) == before
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("codec", sorted(DECOMPRESSORS))
def test_pack_to_a_compressed_archive_name_writes_a_stream_of_the_archive(
    codec: str, sample_raw: Path, tmp_path: Path
) -> None:
    target = tmp_path / f"image.oci.{codec}"
    done = run_cli("pack", str(sample_raw), str(target), *PACK_ARGS)
    assert done.returncode == 0, done.stderr
    archive = tmp_path / "back.oci"
    decompress_with_the_real_tool(target, archive)
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["image_metadata.json", "output.QCOW2"]
        tar.extract("output.QCOW2", tmp_path, filter="data")
    qemu_img("compare", "-f", "raw", "-F", "qcow2", str(sample_raw), str(tmp_path / "output.QCOW2"))
    assert leftovers(tmp_path) == []


def test_a_compressed_archive_written_by_pack_reads_back_with_verify(sample_raw: Path, tmp_path: Path) -> None:
    target = tmp_path / "image.oci.zst"
    assert run_cli("pack", str(sample_raw), str(target), *PACK_ARGS).returncode == 0
    done = run_cli("verify", str(target))
    assert done.returncode == 3, done.stdout + done.stderr  # read whole; not ready until decompressed
    assert f"imagepack decompress {target}" in done.stdout


def test_a_zstd_target_carries_a_content_checksum_and_its_size(sample_raw: Path, tmp_path: Path) -> None:
    target = tmp_path / "disk.qcow2.zst"
    done = run_cli("convert", "--level", "5", "--threads", "2", str(sample_raw), str(target))
    assert done.returncode == 0, done.stderr
    frame = zstandard.get_frame_parameters(target.read_bytes())
    inner = tmp_path / "back.qcow2"
    decompress_with_the_real_tool(target, inner)
    assert frame.has_checksum and frame.content_size == inner.stat().st_size


def test_a_compressed_input_converts_to_a_compressed_output(sample_raw: Path, tmp_path: Path) -> None:
    source = tmp_path / "disk.raw.xz"
    assert run_cli("convert", str(sample_raw), str(source)).returncode == 0
    target = tmp_path / "disk.qcow2.gz"
    done = run_cli("convert", str(source), str(target))
    assert done.returncode == 0, done.stderr
    inner = tmp_path / "back.qcow2"
    decompress_with_the_real_tool(target, inner)
    qemu_img("compare", "-f", "raw", "-F", "qcow2", str(sample_raw), str(inner))
    assert leftovers(tmp_path) == []


def test_to_disagreeing_with_the_suffix_before_the_compression_is_a_usage_error(
    sample_raw: Path, tmp_path: Path
) -> None:
    target = tmp_path / "disk.qcow2.zst"
    done = run_cli("convert", "--to", "vmdk", str(sample_raw), str(target))
    assert done.returncode == 2
    assert "name it disk.vmdk.zst" in one_error_line(done)
    assert not target.exists() and leftovers(tmp_path) == []


def test_to_agreeing_with_the_suffix_before_the_compression_is_accepted(sample_raw: Path, tmp_path: Path) -> None:
    target = tmp_path / "disk.qcow2.zst"
    done = run_cli("convert", "--to", "qcow2", str(sample_raw), str(target))
    assert done.returncode == 0, done.stderr


def test_level_for_an_uncompressed_target_is_a_usage_error(sample_raw: Path, tmp_path: Path) -> None:
    done = run_cli("convert", "--level", "9", str(sample_raw), str(tmp_path / "disk.qcow2"))
    assert done.returncode == 2
    assert "level 9: a level applies only to a compressed target" in one_error_line(done)


def test_a_level_the_codec_has_not_is_a_usage_error(sample_raw: Path, tmp_path: Path) -> None:
    done = run_cli("convert", "--level", "12", str(sample_raw), str(tmp_path / "disk.qcow2.xz"))
    assert done.returncode == 2
    assert "xz takes 0 to 9" in one_error_line(done)


def test_a_library_target_whose_name_says_compressed_must_ask_for_it(sample_raw: Path, tmp_path: Path) -> None:
    target = tmp_path / "disk.qcow2.zst"
    with pytest.raises(InvalidValueError, match="the name says zst-compressed"):
        make(sample_raw, Target(target, ImageFormat.QCOW2))
    assert not target.exists()


def test_free_space_counts_the_temporary_and_the_output(tmp_path: Path, mount_tmpfs: Callable[[str], Path]) -> None:
    """Incompressible data: the qcow2 alone fits, the qcow2 and its compressed copy side by side do not."""
    source = tmp_path / "data.raw"
    write_data_disk(source, 64 * 1024**2, 12 * 1024**2)
    small = mount_tmpfs("20M")
    done = run_cli("convert", str(source), str(small / "disk.qcow2.zst"))
    assert done.returncode == 1
    assert f"{small}: needs about" in one_error_line(done)
    assert list(small.iterdir()) == []
    plain = run_cli("convert", str(source), str(small / "disk.qcow2"))
    assert plain.returncode == 0, plain.stderr


def test_an_interrupted_compression_leaves_neither_the_temporary_nor_the_output(tmp_path: Path) -> None:
    source = tmp_path / "data.raw"
    write_data_disk(source, 128 * 1024**2, 64 * 1024**2)  # random data: xz takes seconds over it
    out = tmp_path / "out"
    out.mkdir()
    target = out / "disk.qcow2.xz"

    def compressing() -> bool:
        """The compressed output's own hidden directory appears once the uncompressed disk is written: then both
        the uncompressed temporary and the output being written exist."""
        names = leftovers(out)
        return len(names) == 2 and any(name.startswith(".disk.qcow2.xz") for name in names)

    code, stderr = interrupt_when(["convert", str(source), str(target)], compressing)
    assert code == 128 + signal.SIGTERM, stderr
    assert stderr.strip().splitlines() == ["imagepack: interrupted; nothing was written"]
    assert list(out.iterdir()) == []
