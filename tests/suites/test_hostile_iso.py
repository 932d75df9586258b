"""ISOs whose directory names or records try to send `info`'s walk round in circles: a Joliet, Rock Ridge or plain
ISO 9660 directory named '/.', '..' or '../..', a directory whose record points back at the root. Written with
pycdlib and patched byte by byte; each is refused in one clear line, fast, and never loops."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pycdlib
import pytest

from tests.conftest import run_cli


def make_iso(path: Path, *, name: str, joliet: bool = True, rock_ridge: bool = True) -> Path:
    """A small ISO with the folder DIRA (Joliet and Rock Ridge name `name`) holding a file, and a user-data."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3 if joliet else None, rock_ridge="1.09" if rock_ridge else None)
    iso.add_directory("/DIRA", rr_name=name if rock_ridge else None, joliet_path=f"/{name}" if joliet else None)
    for iso_path, rr_name, joliet_path, data in [
        ("/DIRA/F.;1", "f", f"/{name}/f", b"hello\n"),
        ("/USERDATA.;1", "user-data", "/user-data", b"#cloud-config\n"),
    ]:
        iso.add_fp(
            io.BytesIO(data),
            len(data),
            iso_path,
            rr_name=rr_name if rock_ridge else None,
            joliet_path=joliet_path if joliet else None,
        )
    iso.write(str(path))
    iso.close()
    return path


def patch_once(data: bytearray, old: bytes, new: bytes) -> int:
    at = data.find(old)
    assert at >= 0 and data.find(old, at + 1) < 0, f"{old!r} is not in the image exactly once"
    data[at : at + len(new)] = new
    return at


def joliet_named(tmp_path: Path, new: str) -> Path:
    """A Joliet folder record renamed to `new` (same length), its path table entries left as they were."""
    old = "abcdefgh"[: len(new)]
    iso = make_iso(tmp_path / "base.iso", name=old)
    data = bytearray(iso.read_bytes())
    ident = old.encode("utf-16-be")
    patch_once(data, bytes([len(ident)]) + ident, bytes([len(ident)]) + new.encode("utf-16-be"))
    return write(tmp_path, data)


def rock_ridge_named(tmp_path: Path, new: str) -> Path:
    old = "abcdefgh"[: len(new)]
    iso = make_iso(tmp_path / "base.iso", name=old, joliet=False)
    data = bytearray(iso.read_bytes())
    entry = b"NM" + bytes([5 + len(old), 1, 0])
    patch_once(data, entry + old.encode(), entry + new.encode())
    return write(tmp_path, data)


def plain_named(tmp_path: Path, new: str) -> Path:
    iso = make_iso(tmp_path / "base.iso", name="dira", joliet=False, rock_ridge=False)
    data = bytearray(iso.read_bytes())
    patch_once(data, b"\x04DIRA", b"\x04" + new.encode())
    return write(tmp_path, data)


def joliet_loop(tmp_path: Path) -> Path:
    """The Joliet folder's record points at the Joliet root's extent: a directory that contains itself."""
    iso_path = make_iso(tmp_path / "base.iso", name="ab")
    reader = pycdlib.PyCdlib()
    reader.open(str(iso_path))
    assert reader.joliet_vd is not None
    root = reader.joliet_vd.root_directory_record().extent_location()
    reader.close()
    data = bytearray(iso_path.read_bytes())
    at = data.find(b"\x04" + "ab".encode("utf-16-be")) - 32  # the name sits 33 bytes into its record
    data[at + 2 : at + 10] = struct.pack("<I", root) + struct.pack(">I", root)
    return write(tmp_path, data)


def write(tmp_path: Path, data: bytearray) -> Path:
    out = tmp_path / "hostile.iso"
    out.write_bytes(bytes(data))
    return out


NOT_A_NAME = "which is not a file name"
HOSTILE = {
    "joliet-slash-dot": (lambda p: joliet_named(p, "/."), NOT_A_NAME),
    "joliet-dot": (lambda p: joliet_named(p, "."), NOT_A_NAME),
    "joliet-dotdot": (lambda p: joliet_named(p, ".."), NOT_A_NAME),
    "joliet-dotdot-dotdot": (lambda p: joliet_named(p, "../.."), NOT_A_NAME),
    "joliet-slash": (lambda p: joliet_named(p, "a/b"), NOT_A_NAME),
    "rock-ridge-slash-dot": (lambda p: rock_ridge_named(p, "/."), NOT_A_NAME),
    "rock-ridge-dotdot": (lambda p: rock_ridge_named(p, ".."), NOT_A_NAME),
    "rock-ridge-dotdot-dotdot": (lambda p: rock_ridge_named(p, "../.."), NOT_A_NAME),
    "plain-slash-dots": (lambda p: plain_named(p, "/../"), NOT_A_NAME),
    "plain-dots": (lambda p: plain_named(p, "A/.."), NOT_A_NAME),
    "joliet-loop": (joliet_loop, "loop"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_crafted_iso_is_refused_at_once(tmp_path: Path, kind: str) -> None:
    build, expected = HOSTILE[kind]
    iso = build(tmp_path)
    result = run_cli("info", str(iso), timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "internal error" not in result.stderr


@pytest.mark.parametrize("options", [{}, {"joliet": False}, {"joliet": False, "rock_ridge": False}])
def test_the_unpatched_iso_lists_its_folder(tmp_path: Path, options: dict[str, bool]) -> None:
    iso = make_iso(tmp_path / "good.iso", name="dira", **options)
    result = run_cli("info", str(iso), timeout=60)
    assert result.returncode == 0, result.stderr
    assert ("DIRA/F: 6 bytes" if options.get("rock_ridge") is False else "dira/f: 6 bytes") in result.stdout
