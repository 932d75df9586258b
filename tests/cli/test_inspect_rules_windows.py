"""The Windows readiness rules, end to end: a GPT disk whose NTFS volume (mkntfs) holds real hives changed with
hivex as each case needs, inspected by the CLI with `--for oci`, and verified once packed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.guestdisks import fat, gpt_disk
from tests.ntfsmake import make_ntfs
from tests.unit.test_sources_guest_windows import CONFIG, CURRENT_VERSION, base, edit_hive

__all__ = ["base"]  # the hives fixture, shared

SERVICES = r"\ControlSet001\Services"
TIME_ZONE = r"\ControlSet001\Control\TimeZoneInformation"
SERVER_2019 = {
    "ProductName": "string:Windows Server 2019 Standard",
    "EditionID": "string:ServerStandard",
    "InstallationType": "string:Server",
    "CurrentBuild": "string:17763",
    "CurrentBuildNumber": "string:17763",
}
READY = {
    rf"{SERVICES}\viostor": {"Start": "dword:0", "Type": "dword:1"},
    rf"{SERVICES}\netkvm": {"Start": "dword:3", "Type": "dword:1"},
    rf"{SERVICES}\cloudbase-init": {"Start": "dword:2"},
    TIME_ZONE: {"RealTimeIsUniversal": "dword:1"},
    r"\ControlSet001\Control\Session Manager\Power": {"HiberbootEnabled": "dword:0"},
}


def windows_disk(base: dict[str, Path], folder: Path, system: dict[str, dict[str, str]], hiberfil: int = 0) -> Path:
    folder.mkdir()
    files = {
        f"{CONFIG}/SYSTEM": edit_hive(base["SYSTEM"], folder / "SYSTEM", system),
        f"{CONFIG}/SOFTWARE": edit_hive(base["SOFTWARE"], folder / "SOFTWARE", {CURRENT_VERSION: SERVER_2019}),
    }
    if hiberfil:
        (folder / "hiberfil").write_bytes(b"HIBR" + b"\1" * hiberfil)
        files["/hiberfil.sys"] = folder / "hiberfil"
    volume = make_ntfs(folder / "volume.img", files, 32 * 1024**2)
    esp = fat(folder / "esp.img", {"EFI/Microsoft/Boot/bootmgfw.efi": b"MZ"}, 8, label="SYSTEM")
    return gpt_disk(folder / "disk.raw", [("ef00", esp), ("0700", volume)], size_mib=48)


def findings(image: Path, *args: str, ready: bool) -> dict[str, dict[str, Any]]:
    """Each rule's finding by id (a rule firing twice: its messages joined)."""
    done = run_cli("inspect", "--json", str(image), "--for", "oci", *args)
    assert done.returncode == (0 if ready else 3), done.stderr
    found: dict[str, dict[str, Any]] = {}
    for finding in json.loads(done.stdout)["readiness"]["findings"]:
        if finding["id"] in found:
            found[finding["id"]]["message"] += " | " + finding["message"]
        else:
            found[finding["id"]] = finding
    return found


@pytest.fixture(scope="module")
def good(base: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return windows_disk(base, tmp_path_factory.mktemp("win") / "good", READY)


def test_a_prepared_windows_guest_is_ready_but_for_its_dirty_hive(good: Path) -> None:
    found = findings(good, ready=True)
    # The 1709 SYSTEM hive hivex edits keeps the unfinished write of the machine it came from: only that is said.
    assert set(found) <= {"windows.hive-dirty"}, found
    done = run_cli("inspect", str(good))
    assert "product: Windows Server 2019 Standard, edition ServerStandard, build 17763, Server" in done.stdout
    assert "RealTimeIsUniversal: yes" in done.stdout and "service viostor: boot" in done.stdout


def test_windows_rules_fire_on_a_guest_that_breaks_them(base: dict[str, Path], tmp_path: Path) -> None:
    bad = windows_disk(base, tmp_path / "bad", {rf"{SERVICES}\netkvm": {"Start": "dword:4"}}, hiberfil=4096)
    found = findings(bad, "--launch-mode", "EMULATED", ready=False)
    assert found["windows.launch-mode"]["severity"] == "error"
    virtio = found["windows.virtio-drivers"]
    assert virtio["severity"] == "error" and "no virtio storage driver starts at boot" in virtio["message"]
    assert "netkvm is disabled" in virtio["message"]
    rtc = found["windows.rtc"]
    assert rtc["severity"] == "warning" and "imagepack seed-iso --windows-rtc-fix" in rtc["fix"]
    assert rtc["evidence"] == [
        rf"{CONFIG}/SYSTEM: ControlSet001\Control\TimeZoneInformation\RealTimeIsUniversal = not set"
    ]
    assert found["windows.hibernated"]["severity"] == "error"
    assert found["windows.fast-startup"]["severity"] == "warning"
    assert found["windows.cloudbase-init"]["severity"] == "warning"


def test_verify_refuses_metadata_naming_another_edition_than_the_guest(good: Path, tmp_path: Path) -> None:
    packed = tmp_path / "dc.oci"
    # pack never writes another edition than the guest holds; an archive edited afterwards (or made elsewhere) can.
    assert "Datacenter" in run_cli("pack", str(good), str(packed), "--os-version", "Server 2019 Datacenter").stderr
    assert run_cli("pack", str(good), str(packed)).returncode == 0
    done = run_cli("meta", "set", str(packed), "operatingSystemVersion=Server 2019 Datacenter")
    assert done.returncode == 0, done.stderr
    done = run_cli("verify", "--json", str(packed))
    report = json.loads(done.stdout)
    assert done.returncode == 3 and report["ready"] is False
    (mismatch,) = [r for r in report["guest"]["rules"] if r["id"] == "windows.metadata-mismatch"]
    assert "edition Datacenter where the guest is Standard" in mismatch["message"]
    assert "Server 2019 Standard" in mismatch["fix"]
