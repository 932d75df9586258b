"""Bytes that match no disk format are taken as a raw disk only when they look like one: a whole number of
512-byte sectors, and neither text, nor a program, nor an archive; `--from raw` takes them anyway."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from imagepack.writers.sample import write_sample_disk
from tests.conftest import leftovers, run_cli


def _text(path: Path, size: int) -> Path:
    line = b"ssh             22/tcp                          # SSH Remote Login Protocol\n"
    path.write_bytes((line * (size // len(line) + 1))[:size])
    return path


def _elf(path: Path, size: int) -> Path:
    data = Path(shutil.which("true") or "/bin/true").read_bytes()
    path.write_bytes(data[:size].ljust(size, b"\0"))
    return path


def _zip(path: Path, size: int) -> Path:
    member = path.with_name("member.bin")
    member.write_bytes(bytes(range(256)) * 64)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.write(member, "member.bin")
    member.unlink()
    with open(path, "ab") as f:  # a zip whose length happens to be whole sectors: its magic is what tells
        f.truncate(size)
    return path


def _cpio(path: Path, size: int) -> Path:
    path.write_bytes(b"070701" + bytes(size - 6))
    return path


def _sevenzip(path: Path, size: int) -> Path:
    path.write_bytes(b"7z\xbc\xaf\x27\x1c" + bytes(size - 6))
    return path


NOT_DISKS = {
    "text": (_text, "a text file", "input.text"),
    "elf": (_elf, "an ELF program", "input.elf"),
    "zip": (_zip, "a zip archive", "input.zip"),
    "cpio": (_cpio, "a cpio archive", "input.cpio"),
    "7z": (_sevenzip, "a 7-Zip archive", "input.7z"),
}


@pytest.mark.parametrize("kind", NOT_DISKS)
def test_a_file_that_is_not_a_disk_is_refused_even_in_whole_sectors(tmp_path: Path, kind: str) -> None:
    make, what, code = NOT_DISKS[kind]
    src = make(tmp_path / "notes.img", 64 * 512)
    out = tmp_path / "n.vmdk"
    done = run_cli("convert", str(src), str(out))
    assert done.returncode == 1, done.stdout
    assert f"this is {what}" in done.stderr, done.stderr
    assert "--from raw" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not out.exists()
    assert leftovers(tmp_path) == []
    shown = run_cli("info", "--json", str(src))
    assert code in shown.stdout + shown.stderr


def test_the_services_file_of_the_issue_is_refused(tmp_path: Path) -> None:
    src = _text(tmp_path / "notes.img", 12813)
    done = run_cli("convert", str(src), str(tmp_path / "n.vmdk"))
    assert done.returncode == 1
    assert "this is a text file, not a disk image" in done.stderr, done.stderr


def test_bytes_that_are_not_whole_sectors_are_refused(tmp_path: Path) -> None:
    src = tmp_path / "odd.img"
    write_sample_disk(src, 64 * 1024)
    with open(src, "ab") as f:
        f.write(b"\x01" * 200)
    out = tmp_path / "odd.qcow2"
    done = run_cli("convert", str(src), str(out))
    assert done.returncode == 1, done.stdout
    assert "65736 bytes is not a whole number of 512-byte sectors" in done.stderr, done.stderr
    assert "66048 bytes" in done.stderr
    assert "--from raw" in done.stderr
    assert not out.exists()


@pytest.mark.parametrize("verb", ["info", "verify", "inspect"])
def test_every_verb_refuses_bytes_that_are_not_whole_sectors_alike(tmp_path: Path, verb: str) -> None:
    """`info` describes what a file is: it says what convert says of it, not "raw"."""
    src = tmp_path / "odd.img"
    write_sample_disk(src, 64 * 1024)
    with open(src, "ab") as f:
        f.write(b"\x01" * 200)
    done = run_cli(verb, "--json", str(src))
    said = json.loads(done.stdout)
    if verb == "verify":  # verify reports what it finds: not ready
        assert done.returncode == 3, done.stdout
        assert [problem["code"] for problem in said["problems"]] == ["input.partial-sector"], done.stdout
    else:
        assert done.returncode == 1, done.stdout
        assert said["error"]["code"] == "input.partial-sector", done.stdout


def test_info_from_raw_describes_them_and_says_how_it_pads_once(tmp_path: Path) -> None:
    src = _text(tmp_path / "notes.img", 12813)
    done = run_cli("info", "--from", "raw", str(src))
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("12813 bytes is not a whole number of 512-byte sectors") == 1, done.stderr
    assert "virtual size:      13.0 KiB (13312 bytes)" in done.stdout, done.stdout


def test_from_raw_takes_them_anyway_and_says_how_it_pads(tmp_path: Path) -> None:
    src = _text(tmp_path / "notes.img", 12813)
    out = tmp_path / "n.raw"
    done = run_cli("convert", "--from", "raw", str(src), str(out))
    assert done.returncode == 0, done.stderr
    assert "12813 bytes is not a whole number of 512-byte sectors" in done.stderr
    assert "13312 bytes" in done.stderr
    data = out.read_bytes()
    assert data == src.read_bytes() + bytes(13312 - 12813)


def test_from_raw_takes_an_elf_in_whole_sectors_without_a_word(tmp_path: Path) -> None:
    src = _elf(tmp_path / "prog.img", 64 * 512)
    out = tmp_path / "p.raw"
    done = run_cli("convert", "--from", "raw", str(src), str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == src.read_bytes()


def test_a_real_raw_disk_still_converts(tmp_path: Path, sample_raw: Path) -> None:
    out = tmp_path / "s.qcow2"
    done = run_cli("convert", str(sample_raw), str(out))
    assert done.returncode == 0, done.stderr
    assert (
        subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "qcow2", str(sample_raw), str(out)]).returncode == 0
    )


def test_a_compressed_text_file_is_refused_too(tmp_path: Path) -> None:
    gz = shutil.which("gzip")
    assert gz, "gzip is needed"
    src = _text(tmp_path / "notes.raw", 64 * 512)
    subprocess.run([gz, "-k", str(src)], check=True)
    done = run_cli("convert", str(tmp_path / "notes.raw.gz"), str(tmp_path / "n.qcow2"))
    assert done.returncode == 1, done.stdout
    assert "text file" in done.stderr, done.stderr
