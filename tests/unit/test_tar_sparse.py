"""GNU sparse members in every format GNU tar writes (old GNU, PAX 0.0, 0.1 and 1.0), made by hand: an honest map
reads back what `tar -x` extracts; a lying one (data past the real size, extents out of order or overlapping,
lengths that do not add up to what is stored, a map that never ends) is refused in one line, as GNU tar calls
them invalid, never read with data dropped and never a hang."""

from __future__ import annotations

import gzip
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from imagepack.core.errors import ArchiveError, UnreadableError
from imagepack.tar.members import Member, extract_member, members, scan
from tests import sparsetar
from tests.conftest import file_digest, leftovers, run_cli

FORMATS = ["old", "0.0", "0.1", "1.0"]
MIB = 1024**2


def member(fmt: str, name: str, real_size: int, extents: list[sparsetar.Extent], data: bytes) -> bytes:
    if fmt == "old":
        return sparsetar.old_gnu(name, real_size, extents, data)
    return sparsetar.pax(fmt, name, real_size, extents, data)


def honest(fmt: str, name: str = "disk.raw") -> bytes:
    """1 MiB: data at 0, 64 KiB and across the middle, a hole to the end (GNU's closing empty extent)."""
    extents = [(0, 4096), (65536, 512), (500_000, 30_000), (MIB, 0)]
    data = b"".join(bytes([i + 1]) * size for i, (_, size) in enumerate(extents))
    return member(fmt, name, MIB, extents, data)


LIES: dict[str, tuple[int, list[sparsetar.Extent], bytes]] = {
    "past-real-size": (1024, [(0, 512), (2048, 512)], b"a" * 1024),
    "out-of-order": (4096, [(2048, 512), (0, 512)], b"a" * 1024),
    "overlapping": (4096, [(0, 1024), (512, 512)], b"a" * 1536),
    "stores-more": (4096, [(0, 512)], b"a" * 1024),
    "stores-less": (4096, [(0, 1024)], b"a" * 512),
    "empty-extent-inside": (4096, [(0, 0), (512, 512)], b"a" * 512),
}


def gnu_tar(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tar", *args], capture_output=True, text=True, check=False)


@dataclass(frozen=True)
class PlainTar:
    path: Path
    compressed: bool = False


def extract(tar: Path, found: Member, out: Path) -> int:
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        return extract_member(PlainTar(tar), found, fd, 0, limit=10 * MIB)
    finally:
        os.close(fd)


def refused_by_scan(path: Path) -> str:
    with pytest.raises((ArchiveError, UnreadableError)) as caught:
        scan(path, compressed=False, file_size=path.stat().st_size, member_limit=10 * MIB)
        list(members(path, compressed=False, holds="one file"))
    return str(caught.value)


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_honest_sparse_member_reads_back_what_gnu_tar_extracts(tmp_path: Path, fmt: str) -> None:
    tar = tmp_path / "honest.tar"
    tar.write_bytes(sparsetar.archive(honest(fmt), sparsetar.plain("next", b"after")))
    (tmp_path / "x").mkdir()
    assert gnu_tar("-xf", str(tar), "-C", str(tmp_path / "x")).returncode == 0
    expected = (tmp_path / "x" / "disk.raw").read_bytes()
    assert len(expected) == MIB
    scan(tar, compressed=False, file_size=tar.stat().st_size, member_limit=10 * MIB)
    found = {m.name: m for _, m in members(tar, compressed=False, holds="files")}
    assert sorted(found) == ["disk.raw", "next"] and found["disk.raw"].size == MIB and found["disk.raw"].sparse
    out = tmp_path / "out.raw"
    assert extract(tar, found["disk.raw"], out) == MIB
    assert out.read_bytes() == expected
    assert os.stat(out).st_blocks * 512 < MIB // 2  # the holes stay holes


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("lie", sorted(LIES))
def test_a_lying_sparse_map_is_refused(tmp_path: Path, fmt: str, lie: str) -> None:
    real_size, extents, data = LIES[lie]
    tar = tmp_path / "lying.tar"
    tar.write_bytes(sparsetar.archive(member(fmt, "f", real_size, extents, data), sparsetar.plain("z", b"zz")))
    message = refused_by_scan(tar)
    assert "invalid sparse map" in message and "'f'" in message


def test_gnu_tar_calls_the_same_maps_invalid(tmp_path: Path) -> None:
    """Where GNU tar itself refuses: an old-GNU map past the real size (listing), and less stored than mapped
    (extracting, in every format)."""
    past = tmp_path / "past.tar"
    past.write_bytes(sparsetar.archive(member("old", "f", *LIES["past-real-size"])))
    listed = gnu_tar("-tf", str(past))
    assert listed.returncode != 0 and "invalid sparse archive member" in listed.stderr
    assert "data past its real size" in refused_by_scan(past)
    for fmt in FORMATS:
        short = tmp_path / f"short-{fmt}.tar"
        short.write_bytes(sparsetar.archive(member(fmt, "f", *LIES["stores-less"]), sparsetar.plain("z", b"zz")))
        (tmp_path / fmt).mkdir()
        assert gnu_tar("-xf", str(short), "-C", str(tmp_path / fmt)).returncode != 0
        assert "it maps 1024 bytes, the archive stores 512" in refused_by_scan(short)


def test_a_pax_1_0_map_that_never_ends_is_refused_not_read_forever(tmp_path: Path) -> None:
    body = sparsetar.pax("1.0", "f", 4096, [(0, 512)], b"a" * 512)
    start = body.index(b"1\n0\n512\n")
    body = body[:start] + b"7" * 512 + body[start + 512 :]  # the count's line runs on through its block
    tar = tmp_path / "endless.tar"
    tar.write_bytes(sparsetar.archive(body))
    assert "malformed GNU sparse 1.0 map" in refused_by_scan(tar)


def test_an_old_gnu_map_that_goes_on_after_its_end_is_refused(tmp_path: Path) -> None:
    """GNU tar stops at the first empty slot and would read the extension block as data; tarfile reads it."""
    body = bytearray(sparsetar.old_gnu("f", 8192, [(0, 512)] + [(1024 * (i + 1), 512) for i in range(4)], b"a" * 2560))
    body[386 + 24 * 3 : 386 + 24 * 4] = bytes(24)  # empty the header's last slot, keep the extension flag
    body[148:156] = b" " * 8
    body[148:156] = f"{sum(body[:512]):06o}".encode() + b"\0 "
    tar = tmp_path / "after-end.tar"
    tar.write_bytes(sparsetar.archive(bytes(body)))
    assert "continues after its end" in refused_by_scan(tar)


@pytest.mark.parametrize("lie", ["past-real-size", "stores-less", "out-of-order"])
def test_a_gce_tarball_with_a_lying_map_is_refused_with_nothing_left(tmp_path: Path, lie: str) -> None:
    real_size, extents, data = LIES[lie]
    tar = tmp_path / "disk.tar"
    tar.write_bytes(sparsetar.archive(sparsetar.old_gnu("disk.raw", real_size, extents, data)))
    before = file_digest(tar)
    out = tmp_path / "out.qcow2"
    result = run_cli("convert", str(tar), str(out))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "invalid sparse map" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists() and leftovers(tmp_path) == []
    assert file_digest(tar) == before


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
def test_a_sparse_disk_of_a_tebibyte_is_read_by_its_map_not_by_its_holes(tmp_path: Path, gzipped: bool) -> None:
    """4 KiB stored in a 1 TiB disk.raw: the holes are never read, so this ends long before reading a tebibyte of
    zeroes could (the run's timeout is the guard)."""
    tib = 1024**4
    body = sparsetar.archive(sparsetar.old_gnu("disk.raw", tib, [(0, 4096), (tib, 0)], b"\x01" * 4096))
    tar = tmp_path / ("disk.tar.gz" if gzipped else "disk.tar")
    tar.write_bytes(gzip.compress(body) if gzipped else body)
    result = run_cli("info", str(tar), "--json", "--max-size", "2T", timeout=60)
    assert result.returncode == 0, result.stderr
    assert f'"virtual_size": {tib}' in result.stdout


@pytest.mark.parametrize("version", ["oldgnu", "0.0", "0.1", "1.0"])
def test_what_gnu_tar_writes_in_each_sparse_format_is_taken_whole(tmp_path: Path, version: str) -> None:
    disk = tmp_path / "disk.raw"
    with open(disk, "wb") as f:
        f.truncate(8 * MIB)
        f.seek(3_000_000)
        f.write(b"data" * 1000)
    tar = tmp_path / "s.tar"
    form = ["--format=oldgnu"] if version == "oldgnu" else ["--format=pax", f"--sparse-version={version}"]
    assert gnu_tar("-cS", *form, "-f", str(tar), "-C", str(tmp_path), "disk.raw").returncode == 0
    scan(tar, compressed=False, file_size=tar.stat().st_size, member_limit=10 * MIB)
    [(_, found)] = list(members(tar, compressed=False, holds="one file"))
    assert (found.name, found.size, found.sparse) == ("disk.raw", 8 * MIB, True)
    out = tmp_path / "out.raw"
    extract(tar, found, out)
    assert out.read_bytes() == disk.read_bytes()
