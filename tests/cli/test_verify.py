"""`imagepack verify` on files that are not what OCI imports: each refusal names what the file really is; and the
notes it gives on what the import cannot check (the Windows clock and licence, X5/X6/X7 hosts)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from imagepack.core.errors import EXIT_PROBLEMS
from tests.conftest import run_cli
from tests.unit.test_formats_detect import write_iso

# A compressed disk is read (tests/cli/test_convert_compressed_inputs.py); an lz4 one is refused by every verb
# (test_convert_formats.py).
NOT_ARCHIVES: dict[str, Callable[[Path, Path], None]] = {"iso": write_iso}


@pytest.mark.parametrize("kind", NOT_ARCHIVES)
def test_verify_of_an_iso_file_names_it_and_does_not_call_it_a_bad_tar(
    kind: str, sample_raw: Path, tmp_path: Path
) -> None:
    """Only tar and gzip are how archives come; any other container is refused as the file it is."""
    container = tmp_path / "download.img"
    NOT_ARCHIVES[kind](sample_raw, container)
    done = run_cli("verify", str(container))
    assert done.returncode == EXIT_PROBLEMS, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stdout.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stdout
    said = errors[0].replace(str(container), "")
    assert re.search(rf"\b{kind}\b", said, re.IGNORECASE) and "not a disk image" in said
    assert "tar" not in said and done.stderr == ""


def _verified(sample_raw: Path, tmp_path: Path, os_name: str, version: str) -> dict[str, object]:
    archive = tmp_path / "guided.oci"
    packed = run_cli("pack", str(sample_raw), str(archive), "--os", os_name, "--os-version", version, "-q")
    assert packed.returncode == 0, packed.stderr
    done = run_cli("verify", "--json", str(archive))
    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, object] = json.loads(done.stdout)
    return report


def test_verify_of_a_windows_archive_notes_the_clock_fix_the_licence_and_the_host_generations(
    sample_raw: Path, tmp_path: Path
) -> None:
    report = _verified(sample_raw, tmp_path, "Windows", "Server 2022 Datacenter")
    notes = {p["code"]: p for p in report["problems"] if p["code"].startswith("guidance.")}  # type: ignore[attr-defined]
    assert list(notes) == ["guidance.windows-clock", "guidance.windows-license", "guidance.host-generation"]
    assert all(note["severity"] == "note" for note in notes.values())
    clock = notes["guidance.windows-clock"]
    assert "TimeZoneInformation\\RealTimeIsUniversal is a DWORD set to 1" in clock["message"]
    assert clock["remedy"] == "windows-rtc-fix"
    assert "Server 2022 Datacenter" in notes["guidance.windows-license"]["message"]
    assert report["ready"] is True
    text = run_cli("verify", str(tmp_path / "guided.oci"))
    assert text.returncode == 0
    assert "imagepack seed-iso --windows-rtc-fix" in text.stdout and "note: " in text.stdout


@pytest.mark.parametrize(
    ("os_name", "version", "command"),
    [
        ("Ubuntu", "22.04", "'apt-get update && apt-get dist-upgrade'"),
        ("Oracle Linux", "8", "'yum update'"),
        ("CentOS", "7", "'yum update'"),
    ],
)
def test_verify_of_a_listed_linux_archive_notes_the_kernel_update_of_its_family(
    os_name: str, version: str, command: str, sample_raw: Path, tmp_path: Path
) -> None:
    report = _verified(sample_raw, tmp_path, os_name, version)
    notes = [p for p in report["problems"] if p["code"].startswith("guidance.")]  # type: ignore[attr-defined]
    assert [(note["code"], note["severity"]) for note in notes] == [("guidance.host-generation", "note")]
    assert "X5, X6 and X7" in notes[0]["message"] and notes[0]["message"].endswith(command)
    assert report["ready"] is True


def test_verify_gives_no_host_generation_note_for_a_system_off_the_list(sample_raw: Path, tmp_path: Path) -> None:
    report = _verified(sample_raw, tmp_path, "Debian", "12")
    assert not [p for p in report["problems"] if p["code"].startswith("guidance.")]  # type: ignore[attr-defined]


def test_verify_of_the_demos_sample_says_no_boot_loader_was_found_and_what_that_means(
    sample_raw: Path, tmp_path: Path
) -> None:
    """The demo's disk is an empty GPT with an ESP: no loader anywhere. Said as found, not as 'no firmware'."""
    report = _verified(sample_raw, tmp_path, "Oracle Linux", "9")
    (firmware,) = [p for p in report["problems"] if p["code"] == "guest.firmware"]  # type: ignore[attr-defined]
    assert firmware["severity"] == "warning"  # no OS was found to check: doubtful, not a refusal
    assert "no boot loader was found on the disk (no EFI loader, no MBR boot code)" in firmware["message"]
    assert "stops in a UEFI shell" in firmware["message"] and "no firmware" not in firmware["message"]
    (unchecked,) = [p for p in report["problems"] if p["code"] == "guest.not-checked"]  # type: ignore[attr-defined]
    said = "guest: the guest was not checked: no Linux root file system and no Windows system volume were found"
    assert unchecked["message"].startswith(said), unchecked["message"]
    assert "partition 2" not in unchecked["message"]  # zeroes, never formatted: empty, not unreadable
