"""Every compressed stream is read as its own tool reads it. For each file crafted here (several streams or frames,
skippable frames, padding, garbage, a damaged later stream, a name over other content), imagepack accepts it
exactly when the format's own `-t` accepts it without a word, and then gives exactly the bytes the tool decodes.
(`bzip2 -t` and `gzip -t` warn of garbage after the last stream and leave it out; a warning is not acceptance:
imagepack refuses such a file.)"""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.unit.test_formats_detect import one_error_line

# By suffix: the command that tests a file, and the one that decodes it to stdout.
TOOLS = {
    ".zst": (["zstd", "-t", "-q"], ["zstd", "-d", "-c", "-q"], ["zstd", "-q", "-c"]),
    ".xz": (["xz", "-t"], ["xz", "-d", "-c"], ["xz", "-c"]),
    ".gz": (["gzip", "-t"], ["gzip", "-d", "-c"], ["gzip", "-c", "-n"]),
    ".bz2": (["bzip2", "-t"], ["bzip2", "-d", "-c"], ["bzip2", "-c"]),
}
SKIPPABLE = 0x184D2A53


@dataclass(frozen=True)
class Case:
    name: str
    suffix: str
    build: Callable[[Callable[[bytes], bytes]], bytes]  # given the compressor of this suffix, the file's bytes


def flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0xFF
    return bytes(out)


def skippable(payload: bytes) -> bytes:
    return struct.pack("<II", SKIPPABLE, len(payload)) + payload


def zstd_window(frame: bytes, exponent: int) -> bytes:
    """A zstd frame written from a pipe (no content size) asking for a window of 2**(10+exponent) bytes."""
    assert frame[4] & 0x20 == 0, "a single-segment frame has no window descriptor"
    return frame[:5] + bytes([exponent << 3]) + frame[6:]


def xz_header_crc(stream: bytes) -> bytes:
    return stream[:8] + struct.pack("<I", zlib.crc32(stream[6:8]) ^ 1) + stream[12:]


DATA = bytes(range(256)) * 256 + bytes(64 * 1024)  # 128 KiB: a whole number of sectors
OTHER = b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(512))  # 16 KiB that do not compress


def cases() -> list[Case]:
    def c(name: str, suffix: str, build: Callable[[Callable[[bytes], bytes]], bytes]) -> Case:
        return Case(name, suffix, build)

    common = [
        ("plain", lambda z: z(DATA)),
        ("two-streams", lambda z: z(DATA) + z(OTHER)),
        ("garbage-after", lambda z: z(DATA) + b"garbage!"),
        ("eight-zeroes-after", lambda z: z(DATA) + bytes(8)),
        ("three-zeroes-after", lambda z: z(DATA) + bytes(3)),
        ("one-byte-after", lambda z: z(DATA) + b"B"),
        ("second-cut-short", lambda z: z(DATA) + z(OTHER)[:-5]),
        ("first-cut-short", lambda z: z(DATA)[:-3]),
        ("second-damaged-at-4", lambda z: z(DATA) + flip(z(OTHER), 4)),
        ("second-damaged-at-12", lambda z: z(DATA) + flip(z(OTHER), 12)),
        ("second-damaged-at-40", lambda z: z(DATA) + flip(z(OTHER), 40)),
        ("second-magic-damaged", lambda z: z(DATA) + flip(z(OTHER), 1)),
        ("first-magic-damaged", lambda z: flip(z(DATA), 1)),
        ("zeroes-before", lambda z: bytes(4) + z(DATA)),
        ("empty-file", lambda z: b""),
        ("raw-disk-named-so", lambda z: DATA),
    ]
    found = [c(name, suffix, build) for suffix in TOOLS for name, build in common]
    found += [
        c("skippable-first", ".zst", lambda z: skippable(b"pzstd") + z(DATA)),
        c("skippables-between", ".zst", lambda z: z(DATA) + skippable(b"") + skippable(b"x" * 9) + z(OTHER)),
        c("skippable-only", ".zst", lambda z: skippable(b"nothing else")),
        c("skippable-cut-short", ".zst", lambda z: skippable(b"abc")[:-1]),
        c("skippable-then-garbage", ".zst", lambda z: skippable(b"abc") + b"garbage!"),
        c("window-128MiB", ".zst", lambda z: zstd_window(z(DATA), 17)),
        c("window-256MiB", ".zst", lambda z: zstd_window(z(DATA), 18)),
        c("stream-header-crc-damaged", ".xz", lambda z: xz_header_crc(z(DATA))),
        c("second-header-crc-damaged", ".xz", lambda z: z(DATA) + xz_header_crc(z(OTHER))),
        c("stream-end-crc-damaged", ".bz2", lambda z: flip(z(DATA), -2)),
    ]
    return found


CASES = cases()


def compressor(suffix: str) -> Callable[[bytes], bytes]:
    def run(data: bytes) -> bytes:
        # From a pipe, as a stream: zstd then writes frames with a window descriptor.
        return subprocess.run(TOOLS[suffix][2], input=data, capture_output=True, check=True).stdout

    return run


def tool_verdict(path: Path) -> tuple[bool, bytes]:
    """Whether the format's own tool accepts `path` without a word, and what it decodes it to."""
    test, decode, _ = TOOLS[path.suffix]
    tested = subprocess.run([*test, str(path)], capture_output=True, check=False)
    decoded = subprocess.run([*decode, str(path)], capture_output=True, check=False)
    return tested.returncode == 0 and not tested.stderr.strip(), decoded.stdout


@pytest.mark.parametrize("case", CASES, ids=[f"{c.suffix[1:]}-{c.name}" for c in CASES])
def test_imagepack_accepts_a_stream_exactly_when_its_own_tool_does(case: Case, tmp_path: Path) -> None:
    source = tmp_path / f"disk.raw{case.suffix}"
    source.write_bytes(case.build(compressor(case.suffix)))
    accepted, decoded = tool_verdict(source)
    out = tmp_path / "out.raw"
    done = run_cli("decompress", str(source), str(out))
    if accepted:
        assert done.returncode == 0, done.stderr
        assert out.read_bytes() == decoded
    else:
        assert done.returncode != 0, f"imagepack accepted what the tool refuses: {done.stdout}"
        one_error_line(done)
        assert not out.exists()


def test_a_file_pzstd_writes_converts_as_the_disk_it_holds(tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    disk.write_bytes(DATA)
    source = tmp_path / "disk.raw.zst"
    subprocess.run(["pzstd", "-q", "-p", "2", str(disk), "-o", str(source)], check=True)
    assert struct.unpack("<I", source.read_bytes()[:4])[0] & 0xFFFFFFF0 == 0x184D2A50  # a skippable frame first
    out = tmp_path / "out.qcow2"
    done = run_cli("convert", str(source), str(out))
    assert done.returncode == 0, done.stderr
    compared = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "qcow2", str(disk), str(out)], check=False)
    assert compared.returncode == 0


def test_a_name_saying_a_stream_over_other_content_is_refused_saying_what_it_is(tmp_path: Path) -> None:
    source = tmp_path / "disk.qcow2.xz"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(source), "1M"], check=True)
    done = run_cli("info", "--json", str(source))
    assert done.returncode != 0
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "input.name-disagrees"
    assert "not an xz stream" in error["message"] and "qcow2" in error["message"]


def with_dictionary(xz: bytes, offset: int, props: int) -> bytes:
    """`xz` with the block header at `offset` declaring LZMA2 dictionary `props` (40: 4 GiB), its CRC made good."""
    size = (xz[offset] + 1) * 4
    header = bytearray(xz[offset : offset + size])
    at = header.index(b"\x21\x01", 2) + 2
    header[at] = props
    header[-4:] = struct.pack("<I", zlib.crc32(bytes(header[:-4])))
    return xz[:offset] + bytes(header) + xz[offset + size :]


@pytest.mark.parametrize("blocks", [1, 4])
def test_an_xz_block_declaring_a_4GiB_dictionary_is_refused_naming_the_memory(blocks: int, tmp_path: Path) -> None:
    data = OTHER * 8
    xz = subprocess.run(
        ["xz", "-c", "-T1", f"--block-size={len(data) // blocks}"], input=data, capture_output=True, check=True
    ).stdout
    source = tmp_path / "disk.raw.xz"
    source.write_bytes(with_dictionary(xz, 12, 40))  # the first block (a stream's blocks follow its 12-byte header)
    assert subprocess.run(["xz", "-t", str(source)], check=False).returncode == 0  # valid; only costly to decode
    done = run_cli("decompress", "--json", str(source), str(tmp_path / "out.raw"))
    assert done.returncode == 1
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "input.compressed-memory"
    assert "4096 MiB" in error["message"] and "4.0 GiB" in error["message"]
    assert not (tmp_path / "out.raw").exists()


def test_a_zstd_frame_asking_a_window_larger_than_zstd_decodes_names_the_memory(tmp_path: Path) -> None:
    source = tmp_path / "disk.raw.zst"
    source.write_bytes(zstd_window(compressor(".zst")(DATA), 21))
    done = run_cli("convert", str(source), str(tmp_path / "out.qcow2"))
    assert done.returncode == 1
    line = one_error_line(done)
    assert "window of 2.0 GiB" in line and "--memory=2048MB" in line
