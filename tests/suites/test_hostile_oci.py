"""Archives that must be refused: one line on stderr, exit 1, nothing written, the archive untouched."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import SPEC_METADATA, file_digest, leftovers, run_cli

GOOD_METADATA = SPEC_METADATA


def write_tar(path: Path, entries: list[tarfile.TarInfo | tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tar.addfile(entry)
            else:
                name, data = entry
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def special(name: str, kind: bytes, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def hostile_cases(qcow2: bytes, canary: Path, bomb: Path) -> dict[str, Callable[[Path], None]]:
    meta = json.dumps(GOOD_METADATA).encode()
    ok_meta = ("image_metadata.json", meta)
    ok_disk = ("output.QCOW2", qcow2)

    def tar(*entries: tarfile.TarInfo | tuple[str, bytes]) -> Callable[[Path], None]:
        return lambda path: write_tar(path, list(entries))

    def truncated(path: Path) -> None:
        write_tar(path, [ok_meta, ok_disk])
        data = path.read_bytes()
        path.write_bytes(data[: 512 + 512 * 3 + len(qcow2) // 2])

    def gzip_bomb(path: Path) -> None:
        shutil.copyfile(bomb, path)

    def raw_header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.size = 0
        block = bytearray(info.tobuf(tarfile.GNU_FORMAT))
        block[124:136] = (b"\xff" if size < 0 else b"\x80") + (size % 2**88).to_bytes(11, "big")  # base-256
        block[148:156] = b"        "
        block[148:155] = b"%06o\0" % sum(block)
        return bytes(block)

    def header_only(name: str, size: int, kind: bytes = tarfile.REGTYPE, *, gz: bool = False) -> Callable[[Path], None]:
        def write(path: Path) -> None:
            data = raw_header(name, size, kind) + bytes(1024)
            path.write_bytes(gzip.compress(data) if gz else data)

        return write

    def hidden_after_end(path: Path) -> None:
        write_tar(path, [ok_meta, ok_disk])
        with open(path, "ab") as f:
            f.write(b"\x07" * 512)  # garbage: tarfile stops here, GNU tar and bsdtar read on
            f.write(raw_header("evil.qcow2", 512) + qcow2[:512] + bytes(1024))

    def bad_crc(path: Path) -> None:
        write_tar(path, [ok_meta, ok_disk])
        data = bytearray(gzip.compress(path.read_bytes()))
        data[-8] ^= 0xFF
        path.write_bytes(bytes(data))

    deep = ("[" * 100_000 + "]" * 100_000).encode()
    return {
        "missing-metadata": tar(ok_disk),
        "missing-disk": tar(ok_meta),
        "extra-member": tar(ok_meta, ok_disk, ("README", b"hello")),
        "two-disks": tar(ok_meta, ok_disk, ("second.qcow2", qcow2)),
        "duplicate-metadata": tar(ok_meta, ok_meta, ok_disk),
        "duplicate-after-normalising": tar(ok_meta, ("./image_metadata.json", meta), ok_disk),
        "symlink-disk": tar(ok_meta, special("output.QCOW2", tarfile.SYMTYPE, str(canary))),
        "hardlink-disk": tar(ok_meta, special("output.QCOW2", tarfile.LNKTYPE, "image_metadata.json")),
        "directory-member": tar(ok_meta, special("output.QCOW2", tarfile.DIRTYPE)),
        "device-member": tar(ok_meta, ok_disk, special("dev", tarfile.CHRTYPE)),
        "absolute-name": tar(ok_meta, ("/tmp/output.QCOW2", qcow2)),
        "dotdot-name": tar(ok_meta, ("../output.QCOW2", qcow2)),
        "disk-not-qcow2": tar(ok_meta, ("output.QCOW2", b"\0" * 65536)),
        "truncated": truncated,
        "metadata-not-json": tar(("image_metadata.json", b"{not json"), ok_disk),
        "metadata-over-1mib": tar(("image_metadata.json", b" " * (1024 * 1024 + 1)), ok_disk),
        "metadata-deeply-nested": tar(("image_metadata.json", deep), ok_disk),
        "metadata-wrong-enum": tar(
            (
                "image_metadata.json",
                json.dumps(
                    {
                        **GOOD_METADATA,
                        "externalLaunchOptions": {**GOOD_METADATA["externalLaunchOptions"], "firmware": "COREBOOT"},
                    }
                ).encode(),
            ),  # type: ignore[dict-item]
            ok_disk,
        ),
        "gzip-bomb": gzip_bomb,
        "pax-header-of-1.5-gib": header_only("pax", 3 * 1024**3 // 2, tarfile.XHDTYPE),
        "longname-header-of-1-gib": header_only("././@LongLink", 1024**3, tarfile.GNUTYPE_LONGNAME, gz=True),
        "gzip-member-claiming-2-to-the-80": header_only("output.QCOW2", 2**80, gz=True),
        "negative-size": header_only("output.QCOW2", -8192),
        "member-hidden-after-the-end": hidden_after_end,
        "gzip-bad-crc": bad_crc,
        "not-a-tar": lambda path: path.write_bytes(b"\0" * 4096),
    }


@pytest.fixture(scope="module")
def gzip_bomb(tmp_path_factory: pytest.TempPathFactory, small_qcow2: bytes) -> Path:
    """A real qcow2 header followed by 1.5 GiB of zeroes, gzip-wrapped into ~1.5 MiB: extraction must stop at
    what the qcow2's own header says it can need, not at the archive's claim."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.oci"
    with gzip.open(path, "wb", compresslevel=1) as gz, tarfile.open(fileobj=gz, mode="w|") as t:
        info = tarfile.TarInfo("output.QCOW2")
        info.size = 3 * 1024**3 // 2
        t.addfile(info, io.BufferedReader(_QcowThenZeros(small_qcow2), 1024 * 1024))
    return path


class _QcowThenZeros(io.RawIOBase):
    def __init__(self, head: bytes) -> None:
        self.head = head
        self.pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        mv = memoryview(b)
        n = len(mv)
        mv[:] = bytes(n)
        if self.pos < len(self.head):
            part = self.head[self.pos : self.pos + n]
            mv[: len(part)] = part
        self.pos += n
        return n


@pytest.fixture(scope="module")
def small_qcow2(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    from tests.conftest import qemu_img

    path = tmp_path_factory.mktemp("q") / "small.qcow2"
    qemu_img("create", "-f", "qcow2", str(path), "1M")
    return path.read_bytes()


CASES = [
    "missing-metadata",
    "missing-disk",
    "extra-member",
    "two-disks",
    "duplicate-metadata",
    "duplicate-after-normalising",
    "symlink-disk",
    "hardlink-disk",
    "directory-member",
    "device-member",
    "absolute-name",
    "dotdot-name",
    "disk-not-qcow2",
    "truncated",
    "metadata-not-json",
    "metadata-over-1mib",
    "metadata-deeply-nested",
    "metadata-wrong-enum",
    "gzip-bomb",
    "not-a-tar",
    "pax-header-of-1.5-gib",
    "longname-header-of-1-gib",
    "gzip-member-claiming-2-to-the-80",
    "negative-size",
    "member-hidden-after-the-end",
    "gzip-bad-crc",
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("command", ["unpack", "convert", "info"])
def test_hostile_archive_is_refused_cleanly(
    case: str, command: str, small_qcow2: bytes, gzip_bomb: Path, tmp_path: Path
) -> None:
    canary = tmp_path / "canary"
    canary.write_bytes(b"CANARY-" + bytes(range(256)) * 4)
    archive = tmp_path / f"{case}.oci"
    hostile_cases(small_qcow2, canary, gzip_bomb)[case](archive)
    before = file_digest(archive)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = {
        "unpack": ["unpack", str(archive), "-d", str(out_dir)],
        "convert": ["convert", str(archive), str(out_dir / "disk.raw")],
        "info": ["info", str(archive)],
    }[command]
    done = run_cli(*args, "--max-size", "1G", timeout=60)
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert str(archive) in lines[0]
    assert list(out_dir.iterdir()) == []
    assert leftovers(tmp_path) == []
    assert file_digest(archive) == before
    assert b"CANARY-" not in done.stdout.encode() + done.stderr.encode()
