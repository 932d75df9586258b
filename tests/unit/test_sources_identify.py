"""identify: what an input is, told once from its name and first bytes, by the rules every verb opens it with (an
OVA before a .oci, a .oci by name or by a tar's content, a GCE image tarball, a compressed stream, else a disk);
and what a stream holds, told by the same rules from its content."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from imagepack.compression import decompressed
from imagepack.core.errors import InputError
from imagepack.formats import Container, ImageFormat
from imagepack.sources.identify import SourceKind, content_kind, identify, peek_kind
from tests.cli.test_convert_ova import python_tar
from tests.conftest import qemu_img, run_cli

MiB = 1024**2
PACK = ("--os", "Oracle Linux", "--os-version", "9", "--firmware", "BIOS")


@pytest.fixture
def qcow2(tmp_path: Path) -> Path:
    path = tmp_path / "disk.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(path), str(MiB))
    return path


def _zstd(path: Path, name: str) -> Path:
    out = path.with_name(name)
    out.write_bytes(subprocess.run(["zstd", "-q", "-c", str(path)], check=True, capture_output=True).stdout)
    return out


def _gzip(path: Path, name: str) -> Path:
    out = path.with_name(name)
    out.write_bytes(gzip.compress(path.read_bytes()))
    return out


def test_a_disk_is_a_disk_and_its_detection_is_kept(qcow2: Path) -> None:
    found = identify(qcow2)
    assert found.kind is SourceKind.DISK
    assert found.stream is None and found.compression is None and not found.archive
    assert found.detection.content is ImageFormat.QCOW2


def test_a_oci_archive_by_content_and_its_gzip_wrapping(tmp_path: Path, qcow2: Path) -> None:
    packed = run_cli("pack", str(qcow2), str(tmp_path / "disk.oci"), *PACK)
    assert packed.returncode == 0, packed.stderr
    plain = (tmp_path / "disk.oci").rename(tmp_path / "archive.bin")  # no name to go by
    found = identify(plain)
    assert (found.kind, found.stream, found.archive) == (SourceKind.OCI, None, True)
    wrapped = identify(_gzip(plain, "archive.gz"))
    assert (wrapped.kind, wrapped.stream, wrapped.archive) == (SourceKind.OCI, Container.GZIP, True)


def test_a_oci_by_name_is_read_as_an_archive_whatever_it_holds(tmp_path: Path, qcow2: Path) -> None:
    named = qcow2.rename(tmp_path / "disk.oci")
    assert identify(named).kind is SourceKind.OCI  # the archive reader then says what the file really is


def test_an_ova_comes_before_a_oci_and_a_stated_format_makes_it_a_disk(tmp_path: Path) -> None:
    tar = python_tar(tmp_path / "vm.oci", [("vm.ovf", b"<Envelope/>"), ("disk.vmdk", b"\0" * 512)])
    assert identify(tar).kind is SourceKind.OVA
    assert identify(tar, claimed=ImageFormat.RAW).kind is SourceKind.DISK
    assert identify(tar, claimed=ImageFormat.RAW).archive  # a tar still, as verify reports it


def test_a_gce_tarball_plain_and_gzip_wrapped(tmp_path: Path) -> None:
    tar = python_tar(tmp_path / "image.tar", [("disk.raw", b"\0" * MiB)])
    assert identify(tar).kind is SourceKind.GCE
    wrapped = identify(_gzip(tar, "image.tar.gz"))
    assert (wrapped.kind, wrapped.compression) == (SourceKind.GCE, "gzip")


def test_a_compressed_stream_is_told_by_its_content_once_decompressed_or_peeked(tmp_path: Path, qcow2: Path) -> None:
    packed = run_cli("pack", str(qcow2), str(tmp_path / "disk.oci"), *PACK)
    assert packed.returncode == 0, packed.stderr
    gce = python_tar(tmp_path / "image.tar", [("disk.raw", b"\0" * MiB)])
    ova = python_tar(tmp_path / "vm.tar", [("vm.ovf", b"<Envelope/>")])
    cases = {
        _zstd(qcow2, "disk.qcow2.zst"): SourceKind.COMPRESSED,
        _zstd(tmp_path / "disk.oci", "disk.oci.zst"): SourceKind.OCI,
        _zstd(gce, "image.tar.zst"): SourceKind.GCE,
        _zstd(ova, "vm.tar.zst"): SourceKind.OVA,
        _gzip(qcow2, "disk.qcow2.gz"): SourceKind.COMPRESSED,
    }
    for path, inside in cases.items():
        found = identify(path)
        assert found.kind is SourceKind.COMPRESSED, path
        assert peek_kind(path, found) is inside, path
        assert found.stream is not None
        with decompressed(path, found.stream, scratch=tmp_path) as content:
            assert content_kind(content) is inside, path


def test_a_stream_named_for_another_is_refused_before_anything_else(qcow2: Path) -> None:
    renamed = qcow2.rename(qcow2.with_name("disk.qcow2.xz"))
    with pytest.raises(InputError, match="the name says xz"):
        identify(renamed)


def test_info_describes_a_compressed_disk_named_oci_as_convert_reads_it(tmp_path: Path, qcow2: Path) -> None:
    """The name said .oci, so info asked open_source for an archive and met a disk (an internal error); the one
    identity makes it the zstd-compressed qcow2 that convert reads."""
    named = _zstd(qcow2, "disk.oci")
    done = run_cli("info", "--json", str(named))
    assert done.returncode == 0, done.stderr
    assert '"format": "qcow2"' in done.stdout and '"compression": "zstd"' in done.stdout, done.stdout
    converted = run_cli("convert", str(named), str(tmp_path / "out.raw"))
    assert converted.returncode == 0, converted.stderr
