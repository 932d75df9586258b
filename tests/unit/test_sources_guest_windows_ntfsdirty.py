"""The NTFS dirty flag read from $Volume's $VOLUME_INFORMATION, on real volumes made by mkntfs, checked against
ntfs-3g's own reading of it."""

from __future__ import annotations

import re
import struct
import subprocess
from pathlib import Path

from imagepack.sources.guest.guestfs import Kind
from imagepack.sources.guest.windows import ntfs_volume_dirty
from tests.ntfsguest import NtfsGuest
from tests.ntfsmake import make_ntfs


def _ntfsinfo(image: Path) -> dict[str, str]:
    shown = subprocess.run(["ntfsinfo", "-f", "-m", str(image)], check=True, capture_output=True, text=True).stdout
    return dict(re.findall(r"^\s*([^:\n]+): (.*)$", shown, re.MULTILINE))


def _mark_dirty(image: Path) -> None:
    """Set VOLUME_IS_DIRTY in $Volume's $VOLUME_INFORMATION, where ntfsinfo says the MFT and its mirror are."""
    info = _ntfsinfo(image)
    cluster, record = int(info["Cluster Size"]), int(info["MFT Record Size"])
    for lcn in (info["LCN of Data Attribute for FILE_MFT"], info["LCN of Data Attribute for File_MFTMirr"]):
        offset = int(lcn) * cluster + 3 * record
        with image.open("r+b") as volume:
            volume.seek(offset)
            data = bytearray(volume.read(record))
            attribute = data.index(b"\x70\x00\x00\x00")  # $VOLUME_INFORMATION
            content = attribute + struct.unpack_from("<H", data, attribute + 0x14)[0]
            data[content + 10] |= 1
            volume.seek(offset)
            volume.write(data)


def test_ntfs_dirty_flag_agrees_with_ntfs_3g(tmp_path: Path) -> None:
    image = make_ntfs(tmp_path / "volume.img", {})
    with image.open("rb") as volume:
        assert ntfs_volume_dirty(volume) is False
    _mark_dirty(image)
    assert _ntfsinfo(image)["Volume Flags"] == "0x0001 DIRTY"  # ntfs-3g reads it dirty too
    refused = subprocess.run(["ntfsinfo", "-m", str(image)], capture_output=True, text=True)
    assert refused.returncode != 0 and "scheduled for check" in refused.stderr + refused.stdout
    with image.open("rb") as volume:
        assert ntfs_volume_dirty(volume) is True
        with NtfsGuest(volume) as guest:  # and pyfsntfs still opens it
            assert guest.kind("/") is Kind.DIRECTORY
    subprocess.run(["ntfsfix", "-d", str(image)], check=True, capture_output=True)
    with image.open("rb") as volume:
        assert ntfs_volume_dirty(volume) is False


def test_ntfs_dirty_flag_of_what_is_not_a_whole_ntfs_volume(tmp_path: Path) -> None:
    image = make_ntfs(tmp_path / "volume.img", {})
    info = _ntfsinfo(image)
    record = int(info["MFT Record Size"])
    offset = int(info["LCN of Data Attribute for FILE_MFT"]) * int(info["Cluster Size"]) + 3 * record
    data = bytearray(image.read_bytes())
    torn = bytearray(data)
    torn[offset + 510] ^= 0xFF  # the update sequence number at the end of the record's first sector
    for name, content in (
        ("zeros", bytes(1024**2)),
        ("boot sector only", bytes(data[:512])),
        ("torn $Volume record", bytes(torn)),
    ):
        path = tmp_path / "case.img"
        path.write_bytes(content)
        with path.open("rb") as volume:
            assert ntfs_volume_dirty(volume) is None, name
