"""A guest is hostile: its symlinks are resolved inside its own tree and never on the host, loops and oversized
files are reported rather than followed or read, and the child that parses it stays within its limits."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.guestdisks import ext4, gpt_disk, qcow2_of, tree

ROOT_UUID = "1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d"
FSTAB = f"UUID={ROOT_UUID} / ext4 defaults 0 1\n"
HOST_SECRET = Path("/etc/shadow")


def guest(tmp: Path, files: dict[str, str], links: dict[str, str]) -> Path:
    root = tree(tmp / "root", {"etc/fstab": FSTAB, **files}, links)
    fs = ext4(tmp / "root.img", root, 24, uuid=ROOT_UUID, label="root")
    return gpt_disk(tmp / "guest.raw", [("8300", fs)], size_mib=28)


def inspected(image: Path, **env: str) -> tuple[dict[str, Any], str]:
    done = run_cli("inspect", "--json", str(image), env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stdout + done.stderr


def host_lines() -> list[str]:
    """Lines of the host's /etc/shadow that could not come from the guest by chance."""
    lines = HOST_SECRET.read_text().splitlines() if HOST_SECRET.exists() else []
    return [line for line in lines if len(line) > 8]


@pytest.mark.parametrize(
    "links",
    [
        {"etc/os-release": "/etc/shadow"},
        {"etc/os-release": "../../../../../../../etc/shadow"},
        {"usr/lib/os-release": "../../../../../../../../etc/shadow"},
        {"etc/os-release": "/usr/../../../etc/./shadow"},
    ],
    ids=["absolute", "dotdot-from-etc", "dotdot-from-usr-lib", "mixed"],
)
def test_a_symlink_to_etc_shadow_reads_the_guests_file_never_the_hosts(tmp_path: Path, links: dict[str, str]) -> None:
    image = guest(tmp_path, {"etc/shadow": "ID=guestshadow\nVERSION_ID=1\n", "usr/share/.keep": ""}, links)
    for disk in (image, qcow2_of(image)):
        report, output = inspected(disk)
        assert report["os"]["id"] == "guestshadow"  # the guest's own /etc/shadow, found inside the guest
        assert not [line for line in host_lines() if line in output]


def test_a_symlink_to_a_file_the_guest_lacks_is_missing_even_when_the_host_has_it(tmp_path: Path) -> None:
    image = guest(tmp_path, {}, {"etc/os-release": "/etc/shadow", "usr/lib/os-release": "/etc/hostname"})
    report, output = inspected(image)
    assert report["os"] == {"family": None}  # no release file in the guest: no Linux root, nothing guessed
    assert not [line for line in host_lines() if line in output]


def test_a_symlink_loop_reads_as_missing(tmp_path: Path) -> None:
    links = {"etc/os-release": "os-release.d", "etc/os-release.d": "/etc/os-release", "usr/lib/os-release": "../lib/x"}
    links["usr/lib/x"] = "/usr/lib/os-release"
    report, _ = inspected(guest(tmp_path, {"etc/oracle-release": "Oracle Linux Server release 7.9\n"}, links))
    assert (report["os"]["id"], report["os"]["version"]) == ("ol", "7.9")
    assert report["os"]["source"] == "/etc/oracle-release"


def test_a_huge_os_release_is_reported_not_read(tmp_path: Path) -> None:
    root = tree(tmp_path / "root", {"etc/fstab": FSTAB, "usr/lib/os-release": "ID=fallback\n"})
    with open(root / "etc/os-release", "wb") as f:
        f.truncate(1024**3)  # sparse: the file system holds a GiB of holes
    fs = ext4(tmp_path / "root.img", root, 24, uuid=ROOT_UUID, label="root")
    image = gpt_disk(tmp_path / "guest.raw", [("8300", fs)], size_mib=28)
    report, _ = inspected(image)
    assert report["os"]["id"] == "fallback"
    assert report["os"]["problems"] == ["/etc/os-release: 1073741824 bytes, above the 65536-byte limit for it"]
    assert report["bytes_read"] < 8 * 1024**2


def test_a_child_out_of_its_memory_limit_is_one_clear_line(tmp_path: Path) -> None:
    image = guest(tmp_path, {"etc/os-release": "ID=debian\n"}, {})
    for limit in ("5M", "24M"):  # before the interpreter is up, and while it loads the readers
        done = run_cli("inspect", str(image), env={**os.environ, "IMAGEPACK_INSPECT_MEMORY": limit})
        assert done.returncode == 1
        assert done.stderr.count("\n") == 1, done.stderr
        assert "reading the guest needed more than the" in done.stderr
        assert "IMAGEPACK_INSPECT_MEMORY=SIZE raises the limit" in done.stderr
        done = run_cli("inspect", "--json", str(image), env={**os.environ, "IMAGEPACK_INSPECT_MEMORY": limit})
        assert json.loads(done.stdout)["error"]["code"] == "inspect.memory"


def test_what_the_guest_states_is_printed_without_its_control_characters(tmp_path: Path) -> None:
    release = 'ID=evil\nPRETTY_NAME="\x1b]0;owned\x07\x1b[2JEvil OS"\nNAME="' + "N" * 5000 + '"\n'
    image = guest(tmp_path, {"etc/os-release": release}, {})
    report, _ = inspected(image)
    assert report["os"]["pretty_name"] == "\\x1b]0;owned\\x07\\x1b[2JEvil OS"
    assert len(report["os"]["name"]) == 1024
    done = run_cli("inspect", str(image))
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout
