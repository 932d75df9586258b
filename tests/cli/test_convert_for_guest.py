"""`convert --for gcp|azure|aws` reads the guest inside and checks it against that cloud's readiness rules."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from imagepack.core.errors import EXIT_FAILURE
from tests.cli.test_convert_for import AZURE_SIZE, json_of, sample
from tests.conftest import leftovers, run_cli
from tests.readers import VHD_FIXED, read_vhd_footer

# --- The guest inside, against the cloud's readiness rules ------------------------------------------------------


def test_for_aws_of_a_real_uefi_guest_says_what_the_aws_rules_say(
    debian_guests: dict[str, Path], tmp_path: Path
) -> None:
    """A real guest through the cloud rules (AWS: its stream vmdk is quick to write; GCP's rules are the same code,
    and the refusal below goes through them)."""
    out = tmp_path / "debian.vmdk"
    done = run_cli("convert", str(debian_guests["uefi-ext4"]), str(out), "--for", "aws", "--json", timeout=300)
    result = json_of(done)
    guest: dict[str, Any] = result["guest"]  # type: ignore[assignment]
    assert guest["checked"] is True and guest["for"] == "aws"
    assert (guest["os"]["id"], guest["os"]["version"], guest["firmware"]) == ("debian", "12", ["UEFI_64"])
    # Debian's cloud kernel has nvme and ena: what is left to say is that the image must be created as UEFI.
    assert [rule["id"] for rule in guest["rules"]] == ["aws.uefi-image"]
    (note,) = [p for p in result["problems"] if p["code"] == "aws.uefi-image"]  # type: ignore[union-attr,index]
    assert note["severity"] == "note"
    text = run_cli("convert", str(debian_guests["uefi-ext4"]), str(out), "--for", "aws", "--force", timeout=300)
    assert text.returncode == 0, text.stderr
    assert "guest: Debian GNU/Linux 12 (bookworm), boots with UEFI_64; rules for aws checked" in text.stdout
    (line,) = [line for line in text.stderr.splitlines() if "aws.uefi-image" in line or "uefi" in line.lower()]
    assert line.startswith("imagepack: note: guest: it boots only by UEFI")


def test_for_gcp_refuses_a_guest_whose_kernel_cannot_find_its_disk_there(tmp_path: Path) -> None:
    from tests.cli.test_inspect_rules import bios_disk, root_only_root

    disk = bios_disk(tmp_path / "guest", root_only_root)  # virtio modules on the root file system only
    out = tmp_path / "guest.tar.gz"
    done = run_cli("convert", str(disk), str(out), "--for", "gcp", "--resize-up", "--json")
    assert done.returncode == EXIT_FAILURE
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "gcp.drivers" and "virtio_scsi (module-not-in-initramfs)" in error["message"]
    assert "echo virtio_scsi >> /etc/initramfs-tools/modules" in error["message"]
    # Without --resize-up, the container's refusal and the guest's come in one.
    done = run_cli("convert", str(disk), str(out), "--for", "gcp")
    assert done.returncode == EXIT_FAILURE
    assert "whole number of GiB" in done.stderr and "virtio_scsi" in done.stderr
    assert not out.exists() and leftovers(tmp_path) == []
    # A batch output made for gcp is checked by the same code.
    manifest = tmp_path / "m.toml"
    manifest.write_text(
        f'[[source]]\npath = "{disk}"\n  [[source.output]]\n  path = "out/guest.tar.gz"\n  for = "gcp"\n'
        "  resize_up = true\n"
    )
    batch = run_cli("batch", str(manifest), "--json", timeout=300)
    assert batch.returncode != 0
    (output,) = json.loads(batch.stdout)["outputs"]
    assert output["status"] == "failed" and output["error"]["code"] == "gcp.drivers"
    assert not (tmp_path / "out" / "guest.tar.gz").exists()


@pytest.mark.parametrize("preset,name", [("azure", "disk.vhd"), ("aws", "disk.vmdk")])
def test_a_disk_with_no_os_still_converts_with_the_rules_own_warnings(tmp_path: Path, preset: str, name: str) -> None:
    result = json_of(
        run_cli("convert", str(sample(tmp_path, AZURE_SIZE)), str(tmp_path / name), "--for", preset, "--json")
    )
    guest: dict[str, Any] = result["guest"]  # type: ignore[assignment]
    assert guest["checked"] is False
    said = {p["code"]: p for p in result["problems"]}  # type: ignore[union-attr,index]
    assert said["guest.not-checked"]["severity"] == "warning"
    assert said["guest.firmware"]["severity"] == "warning"
    assert "no boot loader was found on the disk" in said["guest.firmware"]["message"]
    assert (tmp_path / name).exists()


def test_presets_without_guest_rules_do_not_read_the_guest(tmp_path: Path) -> None:
    result = json_of(
        run_cli("convert", str(sample(tmp_path, AZURE_SIZE)), str(tmp_path / "d.vdi"), "--for", "virtualbox", "--json")
    )
    assert "guest" not in result
    assert not any(p["code"].startswith("guest.") for p in result["problems"])  # type: ignore[union-attr,index]


def test_a_guest_that_cannot_be_read_is_a_warning_not_a_refusal(tmp_path: Path) -> None:
    env = {**os.environ, "IMAGEPACK_QEMU_NBD": str(tmp_path / "no-such-qemu-nbd")}  # nothing exports the guest
    out = tmp_path / "d.vhd"
    done = run_cli("convert", str(sample(tmp_path, AZURE_SIZE)), str(out), "--for", "azure", "--json", env=env)
    result = json_of(done)
    (unread,) = [p for p in result["problems"] if p["code"] == "guest.not-checked"]  # type: ignore[union-attr,index]
    assert unread["severity"] == "warning" and "no-such-qemu-nbd" in unread["message"]
    assert result["guest"] == {"checked": False, "why": unread["message"].removeprefix("the guest was not checked: ")}
    assert read_vhd_footer(out).disk_type == VHD_FIXED
