"""Files imagepack did not write: every format qemu knows is recognised by its bytes, never taken for a raw disk.
VHDX is read and written; the others (QED, qcow v1, LUKS, Parallels, DMG, bochs, cloop), lz4 streams and
files that are two formats at once are refused by every verb, with their name and what to do."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import struct
import subprocess
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path

import pycdlib
import pytest
import zstandard

from imagepack.formats.vhdx import crc32c
from tests.conftest import ODD_SIZE, QEMU_IMG, file_digest, leftovers, qemu_img, run_cli
from tests.luks import luks_container
from tests.readers import qemu_compare, qemu_info, read_guest_disk
from tests.unit.test_formats_detect import one_error_line

MiB = 1024**2
PACK_ARGS = ("--os", "Oracle Linux", "--os-version", "9", "--firmware", "UEFI_64")


def _qemu_create(fmt: str) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        qemu_img("create", "-q", "-f", fmt, str(path), "8M")

    return build


def _luks(path: Path) -> None:
    luks_container(path.parent, name=path.name)


def _dmg(path: Path) -> None:
    """Data, then the 512-byte 'koly' trailer that qemu's dmg driver looks for at the end."""
    trailer = struct.pack(">4sII", b"koly", 4, 512).ljust(512, b"\0")
    path.write_bytes(bytes(range(256)) * 4096 + trailer)


def _bochs(path: Path) -> None:
    header = b"Bochs Virtual HD Image".ljust(32, b"\0") + b"Redolog".ljust(16, b"\0") + b"Growing".ljust(16, b"\0")
    path.write_bytes(header.ljust(MiB, b"\0"))


def _cloop(path: Path) -> None:
    header = b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n"
    path.write_bytes(header.ljust(MiB, b"\0"))


# (what the refusal calls it, how to build one)
FOREIGN: dict[str, tuple[str, Callable[[Path], None]]] = {
    "qed": ("a QED image", _qemu_create("qed")),
    "qcow": ("a qcow version 1 image", _qemu_create("qcow")),
    "parallels": ("a Parallels image", _qemu_create("parallels")),
    "luks": ("a LUKS-encrypted volume", _luks),
    "dmg": ("an Apple disk image (DMG)", _dmg),
    "bochs": ("a Bochs image", _bochs),
    "cloop": ("a cloop image", _cloop),
}
VERBS = ["convert", "pack", "info", "verify"]


def run_verb(verb: str, source: Path, out_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if verb == "convert":
        return run_cli("convert", *args, str(source), str(out_dir / "out.qcow2"))
    if verb == "pack":
        return run_cli("pack", *args, str(source), str(out_dir / "out.oci"), *PACK_ARGS)
    return run_cli(verb, *args, str(source))


def assert_refused(done: subprocess.CompletedProcess[str], *words: str) -> str:
    """Refused: non-zero exit, one line (verify lists it as its one problem), no traceback."""
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr
    text = (done.stdout + done.stderr).strip()
    for word in words:
        assert word in text, text
    return text


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_a_format_qemu_knows_is_named_and_refused_never_taken_for_raw(
    kind: str, verb: str, tmp_path: Path, out_dir: Path
) -> None:
    what, build = FOREIGN[kind]
    source = tmp_path / "download.img"  # the name claims nothing: the bytes decide
    build(source)
    before = file_digest(source)
    done = run_verb(verb, source, out_dir)
    text = assert_refused(done, what)
    assert "raw" not in text.split(what, 1)[0], "the format must not be reported as raw"
    assert list(out_dir.iterdir()) == [] and leftovers(tmp_path) == []
    assert file_digest(source) == before


def _compressors() -> dict[str, tuple[str, Callable[[bytes], bytes]]]:
    return {
        "gzip": ("gunzip", gzip.compress),
        "xz": ("xz -d", lzma.compress),
        "bzip2": ("bunzip2", bz2.compress),
        "zstd": ("zstd -d", zstandard.ZstdCompressor().compress),
        "lz4": ("lz4 -d", _lz4),
    }


def _lz4(data: bytes) -> bytes:
    done = subprocess.run(["lz4", "-c", "-q"], input=data, capture_output=True, check=True)
    return done.stdout


@pytest.mark.parametrize("from_raw", [False, True], ids=["detected", "with-from-raw"])
def test_an_lz4_disk_is_refused_with_how_to_decompress_it(
    from_raw: bool, sample_raw: Path, tmp_path: Path, out_dir: Path
) -> None:
    """imagepack reads no lz4; taking its bytes as a disk writes a disk of compressed bytes: even `--from raw` may
    not."""
    tool, compress = _compressors()["lz4"]
    source = tmp_path / "disk.raw.lz4"
    source.write_bytes(compress(sample_raw.read_bytes()))
    args = ("--from", "raw") if from_raw else ()
    done = run_cli("convert", *args, str(source), str(out_dir / "out.qcow2"))
    assert done.returncode == 1
    line = one_error_line(done)
    assert "lz4-compressed" in line and "decompress it first" in line and tool in line
    assert "--from raw" not in line
    assert list(out_dir.iterdir()) == [] and leftovers(tmp_path) == []


@pytest.mark.parametrize("kind", sorted(set(_compressors()) - {"lz4"}))
def test_a_compressed_disk_stated_raw_is_decompressed_not_taken_as_its_bytes(
    kind: str, sample_raw: Path, tmp_path: Path, out_dir: Path
) -> None:
    """`--from raw` states the disk inside the stream; the stream is still found by its bytes."""
    _, compress = _compressors()[kind]
    source = tmp_path / f"disk.raw.{kind}"
    source.write_bytes(compress(sample_raw.read_bytes()))
    target = out_dir / "out.qcow2"
    done = run_cli("convert", "--from", "raw", str(source), str(target))
    assert done.returncode == 0, done.stderr
    assert qemu_compare(sample_raw, "raw", target, "qcow2").returncode == 0
    assert [p.name for p in out_dir.iterdir()] == ["out.qcow2"] and leftovers(tmp_path) == []


def iso_polyglot(path: Path, tmp_path: Path) -> None:
    """An ISO 9660 image (isoinfo and every ISO reader see its files) whose 32 KiB system area holds a clean qcow2
    (qemu-img check finds no error in it)."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="POLYGLOT")
    data = b"hello\n"
    iso.add_fp(io.BytesIO(data), len(data), "/HELLO.TXT;1", rr_name="hello.txt", joliet_path="/hello.txt")
    iso.write(str(path))
    iso.close()
    qcow2 = tmp_path / "small.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", str(qcow2), "1M")
    head = qcow2.read_bytes()
    content = bytearray(path.read_bytes())
    assert len(head) <= 32 * 1024 and not any(content[: len(head)])
    content[: len(head)] = head
    path.write_bytes(content)
    assert subprocess.run([QEMU_IMG, "check", "-q", "-f", "qcow2", str(path)], check=False).returncode == 0
    reread = pycdlib.PyCdlib()
    reread.open(str(path))
    assert [child.file_identifier() for child in reread.list_children(iso_path="/")][2:] == [b"HELLO.TXT;1"]
    reread.close()


@pytest.mark.parametrize("claimed", [None, "qcow2"], ids=["detected", "from-qcow2"])
@pytest.mark.parametrize("verb", VERBS)
def test_an_iso_that_is_also_a_qcow2_is_refused_by_every_verb(
    verb: str, claimed: str | None, tmp_path: Path, out_dir: Path
) -> None:
    source = tmp_path / "image.qcow2"
    iso_polyglot(source, tmp_path)
    args = ("--from", claimed) if claimed and verb != "verify" else ()
    done = run_verb(verb, source, out_dir, *args)
    assert_refused(done, "matches both qcow2 and iso")
    assert list(out_dir.iterdir()) == [] and leftovers(tmp_path) == []


@pytest.mark.parametrize(("to", "name"), [("qcow2", "d.vmdk"), ("oci", "d.qcow2"), ("vmdk", "d.oci")])
def test_to_that_contradicts_the_suffix_is_refused_naming_both(
    to: str, name: str, sample_raw: Path, out_dir: Path
) -> None:
    target = out_dir / name
    done = run_cli("convert", "--to", to, str(sample_raw), str(target), *(PACK_ARGS if to == "oci" else ()))
    assert done.returncode == 2
    line = one_error_line(done)
    assert f"asked for, {to}," in line and f"says {target.suffix[1:]}" in line
    assert list(out_dir.iterdir()) == []


def test_pack_refuses_a_target_named_as_a_disk_format(sample_raw: Path, out_dir: Path) -> None:
    done = run_cli("pack", str(sample_raw), str(out_dir / "disk.qcow2"), *PACK_ARGS)
    assert done.returncode == 2
    assert "says qcow2" in one_error_line(done)
    assert list(out_dir.iterdir()) == []


def test_to_oci_writes_an_archive_under_an_img_name_which_claims_no_format(sample_raw: Path, out_dir: Path) -> None:
    target = out_dir / "image.img"
    done = run_cli("convert", "--to", "OCI", str(sample_raw), str(target), *PACK_ARGS)
    assert done.returncode == 0, done.stderr
    with tarfile.open(target) as tar:
        assert tar.getnames() == ["image_metadata.json", "output.QCOW2"]


def test_qcow_is_qemus_version_one_not_an_alias_for_qcow2(sample_raw: Path, out_dir: Path) -> None:
    done = run_cli("convert", "--to", "qcow", str(sample_raw), str(out_dir / "d.img"))
    assert done.returncode == 2
    assert "version 1" in one_error_line(done)
    assert list(out_dir.iterdir()) == []


# --- VHDX: read and written ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "subformat", "block"),
    [(None, "dynamic", None), ("subformat=fixed", "fixed", None), ("block_size=1M", "dynamic", MiB)],
)
def test_vhdx_is_written_with_its_options_and_read_back_by_an_independent_reader(
    options: str | None, subformat: str, block: int | None, sample_raw: Path, out_dir: Path
) -> None:
    target = out_dir / "disk.vhdx"
    done = run_cli("convert", *(["-o", options] if options else []), str(sample_raw), str(target))
    assert done.returncode == 0, done.stderr
    assert qemu_compare(sample_raw, "raw", target, "vhdx").returncode == 0
    assert qemu_info(target, "vhdx")["virtual-size"] == ODD_SIZE
    assert read_guest_disk(target, "vhdx") == read_guest_disk(sample_raw, "raw")
    described = run_cli("info", "--json", str(target))
    assert '"format": "vhdx"' in described.stdout and f'"subformat": "{subformat}"' in described.stdout
    if block:
        assert f'"cluster_size": {block}' in described.stdout


def test_a_vhdx_block_size_outside_the_format_is_a_usage_error(sample_raw: Path, out_dir: Path) -> None:
    done = run_cli("convert", "-o", "block_size=3M", str(sample_raw), str(out_dir / "disk.vhdx"))
    assert done.returncode == 2
    assert "block_size=3M" in one_error_line(done)
    assert list(out_dir.iterdir()) == []


def _vhdx(tmp_path: Path, sample_raw: Path) -> Path:
    path = tmp_path / "disk.vhdx"
    qemu_img("convert", "-f", "raw", "-O", "vhdx", str(sample_raw), str(path))
    return path


def _metadata_item(path: Path, item: uuid.UUID) -> int:
    """The file offset of one metadata item (the region table at 192 KiB names the metadata region)."""
    data = path.read_bytes()
    (count,) = struct.unpack_from("<I", data, 192 * 1024 + 8)
    for i in range(count):
        guid, offset, _length, _required = struct.unpack_from("<16sQII", data, 192 * 1024 + 16 + 32 * i)
        if uuid.UUID(bytes_le=guid) == uuid.UUID("8B7CA206-4790-4B9A-B8FE-575F050F886E"):
            (entries,) = struct.unpack_from("<H", data, offset + 10)
            for j in range(entries):
                item_guid, item_offset = struct.unpack_from("<16sI", data, offset + 32 + 32 * j)
                if uuid.UUID(bytes_le=item_guid) == item:
                    return int(offset + item_offset)
    raise AssertionError("no such metadata item")


def vhdx_differencing(path: Path) -> None:
    """The file parameters say HasParent: the disk's data is partly in a parent file."""
    at = _metadata_item(path, uuid.UUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B"))
    with open(path, "r+b") as f:
        f.seek(at + 4)
        (flags,) = struct.unpack("<I", f.read(4))
        f.seek(at + 4)
        f.write(struct.pack("<I", flags | 2))


def vhdx_log_to_replay(path: Path) -> None:
    """Both headers name a log (a log GUID) and the log holds a valid entry of it: a VHDX that was not closed
    cleanly, whose last writes are in the log and not yet in the disk."""
    log_guid = uuid.UUID("11111111-2222-3333-4444-555555555555").bytes_le
    size = path.stat().st_size
    with open(path, "r+b") as f:
        for offset in (64 * 1024, 128 * 1024):
            f.seek(offset)
            header = bytearray(f.read(4096))
            header[48:64] = log_guid
            header[4:8] = bytes(4)
            header[4:8] = struct.pack("<I", crc32c(bytes(header)))
            f.seek(offset)
            f.write(header)
        log_length, log_offset = struct.unpack_from("<IQ", header, 68)
        assert log_length >= 4096
        # One entry with no descriptors: signature, checksum, length, tail, sequence, count, GUID, file offsets.
        entry = bytearray(4096)
        struct.pack_into("<4sIIIQII16sQQ", entry, 0, b"loge", 0, 4096, 0, 1, 0, 0, log_guid, size, size)
        entry[4:8] = struct.pack("<I", crc32c(bytes(entry)))
        f.seek(log_offset)
        f.write(entry)


def vhdx_truncated(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(MiB)


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (vhdx_differencing, "differencing disk"),
        (vhdx_log_to_replay, "log that must be replayed"),
        (vhdx_truncated, "truncated"),
    ],
    ids=["differencing", "log-to-replay", "truncated"],
)
def test_a_vhdx_that_cannot_be_read_alone_is_refused_before_anything_is_written(
    damage: Callable[[Path], None], words: str, sample_raw: Path, tmp_path: Path, out_dir: Path
) -> None:
    source = _vhdx(tmp_path, sample_raw)
    damage(source)
    before = file_digest(source)
    done = run_cli("convert", str(source), str(out_dir / "out.raw"))
    assert done.returncode == 1
    assert words in one_error_line(done)
    assert list(out_dir.iterdir()) == [] and leftovers(tmp_path) == []
    assert file_digest(source) == before


def test_the_log_fixture_is_one_qemu_also_will_not_read_as_it_is(sample_raw: Path, tmp_path: Path) -> None:
    """The crafted log header is checked against qemu: opened read-only, it must ask for the log to be replayed."""
    source = _vhdx(tmp_path, sample_raw)
    vhdx_log_to_replay(source)
    done = subprocess.run(
        [QEMU_IMG, "info", "-f", "vhdx", "--force-share", str(source)], capture_output=True, text=True, check=False
    )
    assert done.returncode != 0 and "log" in done.stderr.lower()
