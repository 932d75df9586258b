"""A manifest is checked by the command line's own rules (one library function for the metadata asked for), its
numbers bounded, and its refusals say what to set in the manifest, not which flag to pass."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from imagepack.cli.batch import BATCH_REMEDY_TEXT
from imagepack.core.problems import Remedy
from imagepack.writers.sample import write_sample_disk
from tests.conftest import run_cli

MiB = 1024**2


def one_line(done: object) -> str:
    stderr = done.stderr  # type: ignore[attr-defined]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imagepack: error: "), stderr
    assert "internal error" not in stderr and "Traceback" not in stderr
    return str(lines[0])


def library_part(line: str) -> str:
    """A refusal without what comes before the library's message and without the remedy that ends it."""
    message = line.removeprefix("imagepack: error: ").split("key os_version: ")[-1].split("key launch_mode: ")[-1]
    return re.split(r"; (pass|set) ", message)[0]


@pytest.mark.parametrize(
    ("oci", "flags", "key"),
    [
        ('os = "Windows"\n  os_version = "2019"', ["--os", "Windows", "--os-version", "2019"], "os_version"),
        (
            'os = "Windows"\n  os_version = "Server 2019 Standard Datacenter"',
            ["--os", "Windows", "--os-version", "Server 2019 Standard Datacenter"],
            "os_version",
        ),
        (
            'os = "Windows"\n  os_version = "Server 2022 Standard"\n  launch_mode = "EMULATED"',
            ["--os", "Windows", "--os-version", "Server 2022 Standard", "--launch-mode", "EMULATED"],
            "launch_mode",
        ),
        (
            'os = "Ubuntu"\n  os_version = "4.10"\n  strict = true',
            ["--os", "Ubuntu", "--os-version", "4.10", "--strict"],
            "os_version",
        ),
    ],
    ids=["windows-no-edition", "windows-two-editions", "windows-emulated", "strict-unlisted"],
)
def test_what_the_single_command_refuses_a_dry_run_refuses_by_the_same_rule(
    oci: str, flags: list[str], key: str, tmp_path: Path
) -> None:
    write_sample_disk(tmp_path / "a.raw", 2 * MiB)
    single = run_cli("convert", str(tmp_path / "a.raw"), str(tmp_path / "single.oci"), "--firmware", "BIOS", *flags)
    assert single.returncode == 1, single.stderr  # a rule of OCI's, as when the archive is made
    manifest = tmp_path / "m.toml"
    manifest.write_text(
        '[[source]]\npath = "a.raw"\n  [[source.output]]\n  path = "out/a.qcow2"\n'
        f'  [[source.output]]\n  path = "out/a.oci"\n  [source.output.oci]\n  firmware = "BIOS"\n  {oci}\n'
    )
    dry = run_cli("batch", str(manifest), "--dry-run")
    assert dry.returncode == 2, dry.stdout + dry.stderr
    line = one_line(dry)
    assert f"source 1 (a.raw), output 2 (out/a.oci), key {key}: " in line
    assert library_part(line) == library_part(one_line(single))
    run = run_cli("batch", str(manifest))
    assert run.returncode == 2 and one_line(run) == line
    assert not (tmp_path / "out").exists()  # refused before any work: the qcow2 was not built either


@pytest.mark.parametrize(
    ("suffix", "entry", "flags"),
    [
        (
            "vmdk",
            'options = { subformat = "streamOptimized" }\n  level = 99',
            ["-o", "subformat=streamOptimized", "--level", "99"],
        ),
        ("vmdk", 'for = "aws"\n  level = 0', ["--for", "aws", "--level", "0"]),
        ("vmdk", 'for = "esxi"\n  level = 13', ["--for", "esxi", "--level", "13"]),
        ("qcow2", "compress = true\n  level = 10", ["--compress", "--level", "10"]),
        (
            "qcow2",
            'compress = true\n  options = { compression_type = "zstd" }\n  level = 23',
            ["--compress", "-o", "compression_type=zstd", "--level", "23"],
        ),
        ("oci", 'compress = true\n  level = 0\n  oci = { os = "Ubuntu" }', ["--compress", "--level", "0"]),
    ],
    ids=["stream-vmdk-level-99", "aws-level-0", "esxi-level-13", "qcow2-zlib-10", "qcow2-zstd-23", "oci-zlib-0"],
)
def test_a_target_setting_the_single_command_refuses_a_dry_run_refuses_alike(
    suffix: str, entry: str, flags: list[str], tmp_path: Path
) -> None:
    """One pre-flight check of the target for both: a stream vmdk's grain level out of its range was refused by
    `convert` before any reading, but a manifest's dry run passed it and the batch failed once building; a
    compressed qcow2's cluster level alike."""
    write_sample_disk(tmp_path / "a.raw", 2 * MiB)
    single = run_cli("convert", str(tmp_path / "a.raw"), str(tmp_path / f"single.{suffix}"), *flags)
    assert single.returncode == 2, single.stderr
    message = one_line(single).removeprefix("imagepack: error: ")
    manifest = tmp_path / "m.toml"
    manifest.write_text(f'[[source]]\npath = "a.raw"\n  [[source.output]]\n  path = "out/a.{suffix}"\n  {entry}\n')
    dry = run_cli("batch", str(manifest), "--dry-run")
    assert dry.returncode == 2, dry.stdout + dry.stderr
    assert one_line(dry).endswith(f"source 1 (a.raw), output 1 (out/a.{suffix}), key level: {message}")
    assert not (tmp_path / "out").exists() and not (tmp_path / f"single.{suffix}").exists()


def test_a_batch_failure_says_which_key_to_set_not_which_flag_to_pass(tmp_path: Path) -> None:
    write_sample_disk(tmp_path / "a.raw", 2 * MiB)
    with open(tmp_path / "blank.raw", "wb") as blank:
        blank.truncate(2 * MiB)  # no partition table: its firmware must be stated
    manifest = tmp_path / "m.toml"
    manifest.write_text(
        '[[source]]\npath = "a.raw"\n  [[source.output]]\n  path = "out/a.vhd"\n  for = "azure"\n'
        '[[source]]\npath = "blank.raw"\n  [[source.output]]\n  path = "out/b.oci"\n  [source.output.oci]\n'
        '  os = "Oracle Linux"\n  os_version = "9"\n'
    )
    done = run_cli("batch", str(manifest), "--keep-going")
    assert done.returncode == 1
    failures = sorted(line for line in done.stderr.splitlines() if line.startswith("imagepack: error: "))
    assert len(failures) == 2, done.stderr
    assert failures[0].startswith("imagepack: error: out/a.vhd: ")
    assert failures[0].endswith(
        "; set resize_up = true in the output to grow it to 20971520 bytes (the source is not changed)"
    )
    assert failures[1].startswith("imagepack: error: out/b.oci: ")
    assert failures[1].endswith('; set firmware = "BIOS" or firmware = "UEFI_64" in the output\'s oci table')
    assert "--" not in done.stderr
    report = json.loads(run_cli("batch", str(manifest), "--keep-going", "--json").stdout)
    assert {o["error"]["remedy"] for o in report["outputs"]} == {"resize-up", "firmware"}  # codes stay the library's


def test_a_manifest_refusal_with_a_remedy_names_the_manifest_key(tmp_path: Path) -> None:
    write_sample_disk(tmp_path / "a.raw", 2 * MiB)
    manifest = tmp_path / "m.toml"
    manifest.write_text('[[source]]\npath = "a.raw"\ndisk = 2\n  [[source.output]]\n  path = "out/a.qcow2"\n')
    line = one_line(run_cli("batch", str(manifest)))
    assert "a.raw is not an OVA" in line and "--disk" not in line


def test_every_remedy_has_words_for_a_manifest() -> None:
    assert set(BATCH_REMEDY_TEXT) == set(Remedy)
    settings = [r for r in Remedy if r not in (Remedy.REPLACE_OUTPUT, Remedy.ALLOW_PARTIAL, Remedy.WINDOWS_CLOCK_FIX)]
    for remedy in settings:
        text = BATCH_REMEDY_TEXT[remedy]
        assert "pass --" not in text, remedy


@pytest.mark.parametrize(
    ("text", "args", "said"),
    [
        ("a = " + "[" * 100_000 + "]" * 100_000, [], "nested over 8 deep; this is not a manifest"),
        ("a" + ".a" * 100_000 + " = 1", [], "over 32 dots; this is not a manifest"),
        ("a = 1" + "0" * 5000, [], "not valid TOML: a number of over 4300 digits"),
        (None, ["--shard", "1/99999999999999999999"], "shard 1/99999999999999999999: 99999999999999999999 is too"),
        (None, ["--shard", "0/10001"], "shard count 10001: give 1 to 10000"),
        (None, ["--shard", "1/٣"], "write INDEX/COUNT"),
        ("  threads = 99999999999999999999999", [], "key threads: 99999999999999999999999: give 1 to 1024"),
        ("  level = 1" + "0" * 400, [], "key level: 100000000000... (401 digits): give -1000 to 1000"),
        ('  path = "out/x\\nbad.qcow2"', [], "a path with a line break, a control character or a backslash"),
        ('max_size = "' + "9" * 5000 + '"', [], "key max_size: max_size=999999999999999999999999... is larger"),
    ],
    ids=[
        "deep",
        "dotted",
        "long-integer",
        "shard-huge",
        "shards-many",
        "shard-not-ascii",
        "threads",
        "level",
        "newline",
        "max-size-digits",
    ],
)
def test_numbers_and_nesting_are_bounded_with_one_line(
    text: str | None, args: list[str], said: str, tmp_path: Path
) -> None:
    write_sample_disk(tmp_path / "a.raw", 2 * MiB)
    manifest = tmp_path / "m.toml"
    body = '[[source]]\npath = "a.raw"\n  [[source.output]]\n  path = "out/a.qcow2.zst"\n'
    if text is not None and text.startswith("max_size"):
        body = body.replace('path = "a.raw"\n', f'path = "a.raw"\n{text}\n', 1)
    elif text is not None and text.startswith("  path"):
        body = body.replace('  path = "out/a.qcow2.zst"\n', text + "\n")
    elif text is not None and text.startswith("  "):
        body += text + "\n"
    elif text is not None:
        body = text + "\n"
    manifest.write_text(body)
    done = run_cli("batch", str(manifest), "--dry-run", *args)
    assert done.returncode == 2, done.stderr
    assert said in one_line(done)


def test_shard_auto_with_a_huge_index_or_count_is_one_line(tmp_path: Path) -> None:
    write_sample_disk(tmp_path / "a.raw", 2 * MiB)
    manifest = tmp_path / "m.toml"
    manifest.write_text('[[source]]\npath = "a.raw"\n  [[source.output]]\n  path = "out/a.qcow2"\n')
    environ = {**os.environ, "JOB_COMPLETION_INDEX": "9" * 30}
    done = run_cli("batch", str(manifest), "--dry-run", "--shard", "auto", "--shards", "4", env=environ)
    assert done.returncode == 2
    assert "JOB_COMPLETION_INDEX" in one_line(done)
    environ = {**os.environ, "JOB_COMPLETION_INDEX": "0"}
    done = run_cli("batch", str(manifest), "--dry-run", "--shard", "auto", "--shards", "9" * 30, env=environ)
    assert done.returncode == 2
    assert "give 1 to 10000" in one_line(done)
