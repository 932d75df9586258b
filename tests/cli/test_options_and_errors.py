"""The command line as one language: pack's positional target, -o as format options everywhere, choices in any
case stored canonically, the JSON error object, one exit code per kind of mistake, options that do not apply
refused, help with examples, and shell completion."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import tarfile
from pathlib import Path

import pytest

from imagepack.cli.output import REMEDY_TEXT, with_remedy
from imagepack.core.errors import (
    EXIT_FAILURE,
    EXIT_USAGE,
    ArchiveError,
    ImagepackError,
    InputError,
    InvalidValueError,
    MetadataError,
    OutputError,
    QemuImgError,
    UnreadableError,
    UnsafeImageError,
)
from imagepack.core.problems import Remedy
from imagepack.oci.metadata import SET_KEYS
from tests.conftest import qemu_img, run_cli
from tests.hostile import qcow2_backing_canary

PACK_ARGS = ["--os", "Oracle Linux", "--os-version", "9", "--firmware", "BIOS"]


def packed(source: Path, archive: Path, *extra: str) -> Path:
    done = run_cli("pack", str(source), str(archive), *PACK_ARGS, *extra)
    assert done.returncode == 0, done.stderr
    return archive


def metadata_of(archive: Path) -> dict[str, object]:
    shown = run_cli("meta", "show", str(archive))
    assert shown.returncode == 0, shown.stderr
    doc: dict[str, object] = json.loads(shown.stdout)
    return doc


def launch_of(archive: Path) -> dict[str, object]:
    launch = metadata_of(archive)["externalLaunchOptions"]
    assert isinstance(launch, dict)
    return launch


def error_object(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """The --json error object on stdout, after checking the one line on stderr."""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imagepack: error: "), done.stderr
    doc = json.loads(done.stdout)
    assert list(doc) == ["error"] and sorted(doc["error"]) == ["code", "message"], doc
    assert doc["error"]["message"] == lines[0].removeprefix("imagepack: error: ")
    error: dict[str, str] = doc["error"]
    return error


def qcow2_member_version(archive: Path) -> int:
    """The qcow2 header version of the archive's disk member, read from the tar bytes."""
    with tarfile.open(archive) as tar:
        member = tar.getmember("output.QCOW2")
        stream = tar.extractfile(member)
        assert stream is not None
        magic, version = struct.unpack(">4sI", stream.read(8))
    assert magic == b"QFI\xfb"
    version_number: int = version
    return version_number


# --- pack SRC DST.oci ---------------------------------------------------------------------------------------


def test_pack_takes_its_archive_as_a_positional_argument(sample_raw: Path, tmp_path: Path) -> None:
    archive = packed(sample_raw, tmp_path / "disk.oci")
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["image_metadata.json", "output.QCOW2"]


def test_pack_still_takes_the_archive_as_output_for_one_release(sample_raw: Path, tmp_path: Path) -> None:
    archive = tmp_path / "disk.oci"
    done = run_cli("pack", str(sample_raw), "--output", str(archive), *PACK_ARGS)
    assert done.returncode == 0, done.stderr
    assert qcow2_member_version(archive) == 3


def test_pack_refuses_the_archive_given_both_ways(sample_raw: Path, tmp_path: Path) -> None:
    done = run_cli("pack", str(sample_raw), str(tmp_path / "a.oci"), "--output", str(tmp_path / "b.oci"), *PACK_ARGS)
    assert done.returncode == EXIT_USAGE, done.stderr
    assert "not both" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [sample_raw.name]


def test_pack_without_an_archive_to_write_is_a_usage_error(sample_raw: Path) -> None:
    done = run_cli("pack", str(sample_raw), *PACK_ARGS)
    assert done.returncode == EXIT_USAGE, done.stderr
    assert "pack SRC DST.oci" in done.stderr


def test_pack_format_options_reach_the_qcow2_inside(sample_raw: Path, tmp_path: Path) -> None:
    # compat=1.1 (version 3) is also what qemu-img writes by default, so the old format is the one that shows
    # that -o got through; 1.1 is checked after it, on the same path.
    old = packed(sample_raw, tmp_path / "old.oci", "-o", "compat=0.10")
    assert qcow2_member_version(old) == 2
    new = packed(sample_raw, tmp_path / "new.oci", "-o", "compat=1.1")
    assert qcow2_member_version(new) == 3


# --- choices in any case, stored canonically -----------------------------------------------------------------


def test_pack_reads_launch_mode_and_firmware_in_any_case_and_stores_oci_spelling(
    sample_raw: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "disk.oci"
    done = run_cli(
        "pack", str(sample_raw), str(archive), "--os", "Oracle Linux", "--os-version", "9",
        "--firmware", "uefi_64", "--launch-mode", "native",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    launch = launch_of(archive)
    assert launch["firmware"] == "UEFI_64"
    assert launch["launchOptionsSource"] == "NATIVE"


def test_meta_set_reads_a_value_in_any_case_and_stores_oci_spelling(sample_raw: Path, tmp_path: Path) -> None:
    archive = packed(sample_raw, tmp_path / "disk.oci", "--firmware", "UEFI_64")
    done = run_cli("meta", "set", str(archive), "firmware=bios")
    assert done.returncode == 0, done.stderr
    assert launch_of(archive)["firmware"] == "BIOS"


def test_convert_reads_a_format_option_choice_in_any_case(sample_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "disk.vmdk"
    done = run_cli("convert", str(sample_raw), str(out), "-o", "subformat=streamoptimized", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["options"]["subformat"] == "streamOptimized"
    info = json.loads(qemu_img("info", "-f", "vmdk", "--output=json", str(out)).stdout)
    assert info["format-specific"]["data"]["create-type"] == "streamOptimized"
    qemu_img("compare", "-f", "raw", "-F", "vmdk", str(sample_raw), str(out))


def test_convert_reads_format_names_in_any_case(sample_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "disk.img"
    done = run_cli("convert", "--from", "RAW", "--to", "QCOW2", str(sample_raw), str(out))
    assert done.returncode == 0, done.stderr
    assert json.loads(qemu_img("info", "-f", "qcow2", "--output=json", str(out)).stdout)["format"] == "qcow2"
    qemu_img("compare", "-f", "raw", "-F", "qcow2", str(sample_raw), str(out))


# --- errors as JSON, and one exit code per kind of mistake ---------------------------------------------------


def test_a_refused_input_with_json_prints_the_error_object_on_stdout(tmp_path: Path) -> None:
    done = run_cli("convert", str(tmp_path / "missing.raw"), str(tmp_path / "out.qcow2"), "--json")
    assert done.returncode == EXIT_FAILURE
    error = error_object(done)
    assert error["code"] == "input"
    assert "missing.raw" in error["message"]


def test_a_usage_error_with_json_prints_the_error_object_on_stdout(sample_raw: Path, tmp_path: Path) -> None:
    done = run_cli("convert", str(sample_raw), str(tmp_path / "out.qcow2"), "-o", "flavour=mint", "--json")
    assert done.returncode == EXIT_USAGE
    assert error_object(done)["code"] == "invalid-value"


def test_a_command_line_that_does_not_parse_with_json_prints_the_error_object(sample_raw: Path) -> None:
    done = run_cli("convert", str(sample_raw), "--json")
    assert done.returncode == EXIT_USAGE
    assert "Missing argument 'DST'" in done.stderr
    assert json.loads(done.stdout) == {"error": {"code": "usage", "message": "Missing argument 'DST'."}}


def test_without_json_a_failure_prints_nothing_on_stdout(tmp_path: Path) -> None:
    done = run_cli("convert", str(tmp_path / "missing.raw"), str(tmp_path / "out.qcow2"))
    assert done.returncode == EXIT_FAILURE
    assert done.stdout == ""


@pytest.mark.parametrize("assignment", ["bogusKey=1", "firmware=BIOSX"], ids=["unknown-key", "bad-value"])
def test_meta_set_with_an_unknown_key_or_a_bad_value_is_a_usage_error(
    assignment: str, sample_raw: Path, tmp_path: Path
) -> None:
    archive = packed(sample_raw, tmp_path / "disk.oci")
    before = archive.read_bytes()
    done = run_cli("meta", "set", str(archive), assignment, "--json")
    assert done.returncode == EXIT_USAGE, done.stderr
    assert error_object(done)["code"] == "invalid-value"
    assert archive.read_bytes() == before


@pytest.mark.parametrize("launch_option", ["bogusKey=1", "networkType=TOKENRING"], ids=["unknown-key", "bad-value"])
def test_pack_with_an_unknown_launch_option_or_a_bad_value_is_a_usage_error(
    launch_option: str, sample_raw: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "disk.oci"
    done = run_cli("pack", str(sample_raw), str(archive), *PACK_ARGS, "--launch-option", launch_option)
    assert done.returncode == EXIT_USAGE, done.stderr
    assert launch_option.split("=")[0] in done.stderr
    assert not archive.exists()


def test_an_empty_operating_system_is_a_usage_error_in_pack_as_in_meta_set(sample_raw: Path, tmp_path: Path) -> None:
    archive = packed(sample_raw, tmp_path / "disk.oci")
    edit = run_cli("meta", "set", str(archive), "operatingSystem=")
    assert edit.returncode == EXIT_USAGE, edit.stderr
    target = tmp_path / "empty.oci"
    pack = run_cli("pack", str(sample_raw), str(target), "--os", "", "--os-version", "9", "--firmware", "BIOS")
    assert pack.returncode == EXIT_USAGE, pack.stderr
    assert "operatingSystem is empty" in pack.stderr
    assert not target.exists()


def test_every_error_class_has_a_stable_code_a_raise_site_can_refine() -> None:
    codes = {
        cls: cls("x").code
        for cls in (
            ImagepackError,
            InvalidValueError,
            InputError,
            UnsafeImageError,
            OutputError,
            QemuImgError,
            ArchiveError,
            MetadataError,
            UnreadableError,
        )
    }
    assert len(set(codes.values())) == len(codes), codes
    refined = UnsafeImageError("x", code="qcow2.backing-file")
    assert refined.code == "qcow2.backing-file"
    assert UnsafeImageError("y").code == "unsafe-image"


def test_every_remedy_has_the_text_the_error_line_appends_naming_an_option() -> None:
    assert set(REMEDY_TEXT) == set(Remedy)
    for remedy in Remedy:
        # Each names the option (or the command) that does it.
        assert with_remedy("refused", remedy).startswith("refused; "), remedy
        assert "--" in REMEDY_TEXT[remedy] or "'imagepack " in REMEDY_TEXT[remedy], remedy
    assert with_remedy("plain", None) == "plain"


def test_a_hostile_image_with_json_gives_its_precise_code_and_the_option_that_allows_it(tmp_path: Path) -> None:
    canary = tmp_path / "canary.raw"
    canary.write_bytes(b"\0" * 65536)
    image = qcow2_backing_canary(tmp_path, canary)
    done = run_cli("convert", str(image), str(tmp_path / "out.raw"), "--json")
    assert done.returncode == EXIT_FAILURE
    error = error_object(done)
    assert error["code"] != UnsafeImageError.code and error["code"].startswith("qcow2."), error
    assert error["message"].endswith("; pass --allow-backing if you trust this image"), error
    assert not (tmp_path / "out.raw").exists()


# --- options that do not apply --------------------------------------------------------------------------------


def test_unpack_refuses_format_options_without_to(sample_raw: Path, tmp_path: Path) -> None:
    archive = packed(sample_raw, tmp_path / "disk.oci")
    out = tmp_path / "out"
    done = run_cli("unpack", str(archive), "-d", str(out), "-o", "compat=0.10")
    assert done.returncode == EXIT_USAGE, done.stderr
    assert "--to" in done.stderr
    assert not out.exists()


def test_convert_to_a_disk_refuses_a_pack_option(sample_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "disk.qcow2"
    done = run_cli("convert", str(sample_raw), str(out), "--launch-mode", "NATIVE")
    assert done.returncode == EXIT_USAGE, done.stderr
    assert "--launch-mode applies only to a .oci target" in done.stderr
    assert not out.exists()


# --- the same JSON keys across commands ----------------------------------------------------------------------


def test_pack_unpack_and_meta_set_name_their_files_with_the_same_json_keys(sample_raw: Path, tmp_path: Path) -> None:
    archive = tmp_path / "disk.oci"
    pack = run_cli("pack", str(sample_raw), str(archive), *PACK_ARGS, "--json")
    assert pack.returncode == 0, pack.stderr
    pack_doc = json.loads(pack.stdout)
    assert (pack_doc["source"], pack_doc["target"], pack_doc["format"]) == (str(sample_raw), str(archive), "oci")

    unpack = run_cli("unpack", str(archive), "-d", str(tmp_path / "out"), "--json")
    assert unpack.returncode == 0, unpack.stderr
    unpack_doc = json.loads(unpack.stdout)
    assert unpack_doc["source"] == str(archive)
    assert unpack_doc["target"] == str(tmp_path / "out" / "disk.qcow2")
    assert unpack_doc["format"] == "qcow2"
    assert unpack_doc["metadata"] == str(tmp_path / "out" / "disk.json")
    assert unpack_doc["virtual_size"] == pack_doc["virtual_size"] == sample_raw.stat().st_size

    edit = run_cli("meta", "set", str(archive), "operatingSystemVersion=8", "--json")
    assert edit.returncode == 0, edit.stderr
    edit_doc = json.loads(edit.stdout)
    assert (edit_doc["target"], edit_doc["format"]) == (str(archive), "oci")
    assert edit_doc["metadata"]["operatingSystemVersion"] == "8"


# --- help and completion -------------------------------------------------------------------------------------

COMMANDS = [
    [],
    ["meta"],
    ["meta", "shapes"],
    ["info"],
    ["convert"],
    ["pack"],
    ["unpack"],
    ["verify"],
    ["url"],
    ["import-request"],
    ["meta", "show"],
    ["meta", "set"],
    ["meta", "shapes", "list"],
    ["meta", "shapes", "add"],
    ["meta", "shapes", "remove"],
    ["seed-iso"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) or "imagepack" for c in COMMANDS])
def test_every_commands_help_ends_with_an_example_of_it(command: list[str]) -> None:
    done = run_cli(*command, "--help")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.rstrip().splitlines()
    heading = max(i for i, line in enumerate(lines) if line.strip() in ("Examples:", "Example:"))
    examples = [line.strip() for line in lines[heading + 1 :]]
    assert examples, done.stdout
    assert all(line.startswith(" ".join(["imagepack", *command]) + " ") for line in examples), examples


def test_meta_set_help_lists_every_key_it_takes() -> None:
    done = run_cli("meta", "set", "--help")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    for key in SET_KEYS:
        assert key in text, key


def test_help_offers_shell_completion() -> None:
    done = run_cli("--help")
    assert done.returncode == 0, done.stderr
    assert "--install-completion" in done.stdout
    assert "--show-completion" in done.stdout


@pytest.mark.parametrize("command", ["info", "convert", "pack", "unpack", "verify", "compress", "decompress"])
def test_dash_o_means_a_format_option_in_every_command_that_takes_it(command: str) -> None:
    done = run_cli(command, "--help")
    assert done.returncode == 0, done.stderr
    declared = [line for line in done.stdout.splitlines() if re.match(r"\s*-o[\s,]", line)]
    assert all("--option KEY=VALUE" in line for line in declared), declared
