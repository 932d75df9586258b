"""GCE image tarballs in a zstd, xz or bzip2 stream: `disk.raw` tarred by GNU tar (old GNU format, sparse or not)
and compressed by the real tools, read through every verb as the gzip-wrapped one is; and the tarballs that must
be refused, in one line, with nothing left behind."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from imagepack.sources.open import OpenOptions, SourceKind, open_source
from imagepack.writers.sample import write_sample_disk
from tests.cli.test_convert_ova import python_tar
from tests.conftest import file_digest, leftovers, qemu_img, run_cli
from tests.readers import qemu_compare, read_guest_disk
from tests.unit.test_formats_detect import one_error_line

MIB = 1024**2
SIZE = 8 * MIB
PACK_ARGS = ("--os", "Oracle Linux", "--os-version", "9", "--firmware", "UEFI_64")
# The real compressors, each writing to stdout.
TOOLS = {"zstd": ["zstd", "-q", "-c"], "xz": ["xz", "-c"], "bzip2": ["bzip2", "-c"]}
SUFFIXES = {"zstd": ".zst", "xz": ".xz", "bzip2": ".bz2"}


@pytest.fixture
def raw_disk(tmp_path: Path) -> Path:
    path = tmp_path / "guest.raw"
    write_sample_disk(path, SIZE)
    return path


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


def run_in(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with its system temporary directory in `tmp_path`, so that `leftovers` sees what info and verify
    would leave there."""
    return run_cli(*args, env={**os.environ, "TMPDIR": str(tmp_path)})


def gnu_tar(tmp_path: Path, disk: Path, *, sparse: bool, name: str = "image.tar", extra: Path | None = None) -> Path:
    """As GCE's import wants it: `disk` as disk.raw, GNU tar's old format, holes recorded with -S when `sparse`."""
    folder = tmp_path / f"parts-{name}"
    folder.mkdir()
    if disk.is_symlink():
        (folder / "disk.raw").symlink_to(os.readlink(disk))
    else:
        subprocess.run(["cp", "--sparse=always", str(disk), str(folder / "disk.raw")], check=True)
    names = ["disk.raw"]
    if extra is not None:
        subprocess.run(["cp", str(extra), str(folder / extra.name)], check=True)
        names.append(extra.name)
    out = tmp_path / name
    flags = "-cSf" if sparse else "-cf"
    subprocess.run(["tar", "--format=oldgnu", flags, str(out), "-C", str(folder), *names], check=True)
    return out


def compress(tar: Path, kind: str) -> Path:
    out = tar.with_name(tar.name + SUFFIXES[kind])
    with open(out, "wb") as f:
        subprocess.run([*TOOLS[kind], str(tar)], stdout=f, check=True)
    return out


def assert_nothing_left(*folders: Path) -> None:
    for folder in folders:
        assert leftovers(folder) == []


# --- reading -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
@pytest.mark.parametrize("kind", sorted(TOOLS))
def test_a_compressed_gce_tarball_converts_to_the_same_disk(
    kind: str, sparse: bool, tmp_path: Path, raw_disk: Path, out_dir: Path
) -> None:
    source = compress(gnu_tar(tmp_path, raw_disk, sparse=sparse), kind)
    before = file_digest(source)
    out = out_dir / "out.qcow2"
    done = run_in(tmp_path, "convert", str(source), str(out))
    assert done.returncode == 0, done.stderr
    assert qemu_compare(raw_disk, "raw", out, "qcow2").returncode == 0
    assert read_guest_disk(out, "qcow2") == read_guest_disk(raw_disk, "raw")
    assert sorted(p.name for p in out_dir.iterdir()) == ["out.qcow2"]
    assert_nothing_left(tmp_path, out_dir)
    assert file_digest(source) == before


@pytest.mark.parametrize("kind", sorted(TOOLS))
def test_info_of_a_compressed_gce_tarball_says_the_stream_then_the_tarball(
    kind: str, tmp_path: Path, raw_disk: Path
) -> None:
    tar = gnu_tar(tmp_path, raw_disk, sparse=True)
    gzipped = tmp_path / "image.tar.gz"
    with open(gzipped, "wb") as f:
        subprocess.run(["gzip", "-c", str(tar)], stdout=f, check=True)
    source = compress(tar, kind)
    done = run_in(tmp_path, "info", "--json", str(source))
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["path"] == f"{source}:disk.raw"
    assert found["format"] == "raw" and found["virtual_size"] == SIZE and found["safe"]
    assert found["partition_table"] == "gpt" and found["firmware_guess"] == "UEFI_64"
    assert list(found["details"])[:2] == ["compression", "container"]
    assert found["details"]["compression"] == kind and found["details"]["container"] == f"gce-tarball ({kind})"
    gz = json.loads(run_in(tmp_path, "info", "--json", str(gzipped)).stdout)
    assert gz["details"]["compression"] == "gzip" and gz["details"]["container"] == "gce-tarball (gzip)"
    text = run_in(tmp_path, "info", str(source))
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    layers = [line.split()[1] for line in lines if line.startswith(("compression:", "container:"))]
    assert layers == [kind, "gce-tarball"] and ".imagepack-" not in text.stdout
    assert_nothing_left(tmp_path)


def test_pack_reads_a_zstd_gce_tarball(tmp_path: Path, raw_disk: Path, out_dir: Path) -> None:
    source = compress(gnu_tar(tmp_path, raw_disk, sparse=True), "zstd")
    archive = out_dir / "image.oci"
    done = run_in(tmp_path, "pack", str(source), str(archive), *PACK_ARGS)
    assert done.returncode == 0, done.stderr
    back = tmp_path / "back.raw"
    assert run_cli("convert", str(archive), str(back)).returncode == 0
    assert qemu_compare(raw_disk, "raw", back, "raw").returncode == 0
    assert read_guest_disk(back, "raw") == read_guest_disk(raw_disk, "raw")
    assert_nothing_left(tmp_path, out_dir)


@pytest.mark.parametrize("kind", ["xz", "bzip2"])
def test_verify_reads_the_disk_of_a_compressed_gce_tarball(kind: str, tmp_path: Path, raw_disk: Path) -> None:
    source = compress(gnu_tar(tmp_path, raw_disk, sparse=False), kind)
    done = run_in(tmp_path, "verify", "--json", str(source))
    report = json.loads(done.stdout)
    assert done.returncode == 3, done.stdout  # raw is not what OCI imports; everything else was read and checked
    assert report["format"] == "raw" and report["virtual_size"] == SIZE
    assert report["facts"]["compression"] == kind and report["facts"]["partition_table"] == "gpt"
    codes = [p["code"] for p in report["problems"] if not p["code"].startswith("guest.")]  # a blank guest: warnings
    assert codes == ["oci.compressed", "oci.format"]
    assert_nothing_left(tmp_path)


@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
def test_a_plain_member_is_read_in_place_in_the_decompressed_tar_and_a_sparse_one_extracted(
    sparse: bool, tmp_path: Path, raw_disk: Path
) -> None:
    source = compress(gnu_tar(tmp_path, raw_disk, sparse=sparse), "zstd")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with open_source(source, OpenOptions(scratch=scratch)) as opened:
        assert opened.kind is SourceKind.GCE and opened.compression == "zstd"
        assert opened.disk.label == f"{source}:disk.raw"
        ref = opened.disk.ref
        if sparse:  # expanded from its packed runs into a file of its own
            assert ref.path.name == "disk.raw" and ref.offset == 0
        else:  # the decompressed tar itself, at the member's data
            assert ref.path.name == "image.tar" and ref.offset == 512 and ref.size == SIZE
        assert len(leftovers(scratch)) == (2 if sparse else 1)
    assert_nothing_left(scratch)


# --- refusals ------------------------------------------------------------------------------------------------------


def with_another_member(tmp_path: Path, raw_disk: Path) -> Path:
    note = tmp_path / "notes.txt"
    note.write_text("not a disk\n")
    return gnu_tar(tmp_path, raw_disk, sparse=True, extra=note)


def with_an_escaping_member(tmp_path: Path, raw_disk: Path) -> Path:
    return python_tar(tmp_path / "image.tar", [("disk.raw", raw_disk.read_bytes()), ("../disk.raw", b"x" * 512)])


def as_a_link(tmp_path: Path, raw_disk: Path) -> Path:
    link = tmp_path / "link.raw"
    link.symlink_to("/etc/passwd")
    return gnu_tar(tmp_path, link, sparse=False)


def cut_short(tmp_path: Path, raw_disk: Path) -> Path:
    tar = gnu_tar(tmp_path, raw_disk, sparse=True)
    subprocess.run(["truncate", "-s", str(tar.stat().st_size // 2), str(tar)], check=True)
    return tar


def cut_short_dense(tmp_path: Path, raw_disk: Path) -> Path:
    tar = gnu_tar(tmp_path, raw_disk, sparse=False)
    subprocess.run(["truncate", "-s", str(SIZE // 2), str(tar)], check=True)
    return tar


def holding_a_qcow2(tmp_path: Path, raw_disk: Path) -> Path:
    qcow2 = tmp_path / "disk.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw_disk), str(qcow2))
    return gnu_tar(tmp_path, qcow2, sparse=True)


HOSTILE: dict[str, tuple[Callable[[Path, Path], Path], str]] = {
    "another-member": (with_another_member, "a GCE image tarball holds disk.raw alone, not disk.raw, notes.txt"),
    "escaping-member": (with_an_escaping_member, "member name '../disk.raw' is not a plain file name"),
    "link": (as_a_link, "member 'disk.raw' is a link"),
    "cut-short": (cut_short, "more than this archive can hold"),
    "cut-short-dense": (cut_short_dense, "more than this archive can hold"),
    "qcow2-named-raw": (holding_a_qcow2, "disk.raw holds a qcow2 image, not a raw disk"),
}


@pytest.mark.parametrize("kind", sorted(TOOLS))
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_compressed_gce_tarball_is_refused_in_one_line_with_nothing_left(
    case: str, kind: str, tmp_path: Path, raw_disk: Path, out_dir: Path
) -> None:
    make, says = HOSTILE[case]
    source = compress(make(tmp_path, raw_disk), kind)
    out = out_dir / "out.qcow2"
    done = run_in(tmp_path, "convert", str(source), str(out))
    assert done.returncode == 1, done.stdout + done.stderr
    line = one_error_line(done)
    assert says in line and str(source) in line, line
    assert ".imagepack-" not in line  # the temporary's name is never shown
    assert list(out_dir.iterdir()) == []
    assert_nothing_left(tmp_path, out_dir)


def test_info_and_verify_refuse_a_compressed_gce_tarball_with_another_member(tmp_path: Path, raw_disk: Path) -> None:
    source = compress(with_another_member(tmp_path, raw_disk), "xz")
    described = run_in(tmp_path, "info", str(source))
    assert described.returncode == 1, described.stdout + described.stderr
    assert "holds disk.raw alone" in one_error_line(described)
    verified = run_in(tmp_path, "verify", "--json", str(source))
    assert verified.returncode == 3, verified.stdout + verified.stderr  # verify reports a refusal as a problem
    problems = json.loads(verified.stdout)["problems"]
    assert len(problems) == 1 and "holds disk.raw alone" in problems[0]["message"], problems
    assert_nothing_left(tmp_path)


def flip_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    path.write_bytes(bytes(data))


def cut_stream_short(path: Path) -> None:
    subprocess.run(["truncate", "-s", str(path.stat().st_size // 2), str(path)], check=True)


@pytest.mark.parametrize("damage", [flip_middle, cut_stream_short], ids=["corrupted", "truncated"])
@pytest.mark.parametrize("kind", sorted(TOOLS))
def test_a_damaged_stream_around_a_gce_tarball_is_refused_with_nothing_left(
    kind: str, damage: Callable[[Path], None], tmp_path: Path, raw_disk: Path, out_dir: Path
) -> None:
    source = compress(gnu_tar(tmp_path, raw_disk, sparse=False), kind)
    damage(source)
    done = run_in(tmp_path, "convert", str(source), str(out_dir / "out.qcow2"))
    assert done.returncode == 1, done.stdout + done.stderr
    line = one_error_line(done)
    assert f"{source}: the {kind} stream is damaged or cut short (" in line, line
    assert list(out_dir.iterdir()) == []
    assert_nothing_left(tmp_path, out_dir)


def test_a_compressed_gce_tarball_expanding_past_the_limit_is_refused_before_it_is_all_written(
    tmp_path: Path, out_dir: Path
) -> None:
    """Bounded as a compressed .oci is: the tar may expand only as far as the largest disk member allowed (with
    --max-size 8M, a qcow2 file of 8 MiB's 264 MiB and a .oci's slack), never to its declared 512 MiB."""
    folder = tmp_path / "zeros"
    folder.mkdir()
    with open(folder / "disk.raw", "wb") as f:
        f.truncate(512 * MIB)
    source = tmp_path / "image.tar.zst"
    with open(source, "wb") as f:  # no tar on disk: its zeroes go straight into zstd
        tar = subprocess.Popen(
            ["tar", "--format=oldgnu", "-cf", "-", "-C", str(folder), "disk.raw"], stdout=subprocess.PIPE
        )
        subprocess.run(["zstd", "-q", "-c"], stdin=tar.stdout, stdout=f, check=True)
        assert tar.wait() == 0
    done = run_in(tmp_path, "convert", "--max-size", "8M", str(source), str(out_dir / "out.qcow2"))
    assert done.returncode == 1, done.stdout + done.stderr
    line = one_error_line(done)
    assert f"{source}: the zstd stream expands past " in line, line
    assert list(out_dir.iterdir()) == []
    assert_nothing_left(tmp_path, out_dir)
