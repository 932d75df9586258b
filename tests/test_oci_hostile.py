"""Archives that must be refused: one line on stderr, exit 1, nothing written, the archive untouched."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import file_digest, leftovers, run_cli

GOOD_METADATA = {
    "version": 2,
    "externalLaunchOptions": {
        "firmware": "UEFI_64",
        "networkType": "PARAVIRTUALIZED",
        "bootVolumeType": "PARAVIRTUALIZED",
        "remoteDataVolumeType": "PARAVIRTUALIZED",
        "localDataVolumeType": "PARAVIRTUALIZED",
        "launchOptionsSource": "PARAVIRTUALIZED",
        "pvAttachmentVersion": 2,
        "pvEncryptionInTransitEnabled": False,
        "consistentVolumeNamingEnabled": False,
    },
    "imageCapabilityData": None,
    "imageCapsFormatVersion": None,
    "operatingSystem": "Oracle Linux",
    "operatingSystemVersion": "8",
    "additionalMetadata": {"shapeCompatibilities": []},
}

_BOMB = Path(tempfile.gettempdir()) / f"imagepack-test-bomb-{__import__('os').getpid()}.tar.gz"


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


def hostile_cases(qcow2: bytes, canary: Path) -> dict[str, Callable[[Path], None]]:
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
        # 1.5 GiB of zeroes as a disk member compresses to ~1.5 MiB; with --max-size 1G the bound on what
        # may be extracted is about 1.3 GiB.
        if _BOMB.exists():
            shutil.copyfile(_BOMB, path)
            return
        with gzip.open(_BOMB, "wb", compresslevel=1) as gz, tarfile.open(fileobj=gz, mode="w|") as t:
            info = tarfile.TarInfo("output.QCOW2")
            info.size = 3 * 1024**3 // 2

            class Zeros(io.RawIOBase):
                def readable(self) -> bool:
                    return True

                def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
                    mv = memoryview(b)
                    mv[:] = bytes(len(mv))
                    return len(mv)

            t.addfile(info, io.BufferedReader(Zeros(), 1024 * 1024))
        shutil.copyfile(_BOMB, path)

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
        "not-a-tar": lambda path: path.write_bytes(b"\0" * 4096),
    }


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
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("command", ["unpack", "convert", "info"])
def test_hostile_archive_is_refused_cleanly(case: str, command: str, small_qcow2: bytes, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    canary.write_bytes(b"CANARY-" + bytes(range(256)) * 4)
    archive = tmp_path / f"{case}.oci"
    hostile_cases(small_qcow2, canary)[case](archive)
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
