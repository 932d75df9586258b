"""A batch writes many files (each output, the record beside it, a SHA256SUMS per directory, the report): two of
them that are one file, or one that is an input, are refused before any work, naming both uses."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from imagepack.writers.sample import write_sample_disk
from tests.conftest import run_cli

MiB = 1024**2


def manifest_with(tmp_path: Path, *outputs: str) -> Path:
    """A manifest of one source, a.raw, and the outputs given as TOML lines each."""
    write_sample_disk(tmp_path / "a.raw", 2 * MiB)
    (tmp_path / "out").mkdir()
    text = '[[source]]\npath = "a.raw"\n' + "".join(f"  [[source.output]]\n{o}\n" for o in outputs)
    manifest = tmp_path / "m.toml"
    manifest.write_text(text)
    return manifest


def refused(manifest: Path, *args: str) -> str:
    """The one error line of a batch refused up front; nothing was written into out/."""
    before = sorted(os.listdir(manifest.parent / "out"))
    done = run_cli("batch", str(manifest), *args)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imagepack: error: "), done.stderr
    assert sorted(os.listdir(manifest.parent / "out")) == before
    return lines[0]


@pytest.mark.parametrize(
    ("outputs", "said"),
    [
        (
            ['  path = "out/a.qcow2"', '  path = "out/SHA256SUMS"\n  format = "raw"'],
            "output 2 (out/SHA256SUMS), key path: is the name of the checksum list",
        ),
        (
            ['  path = "out/a.qcow2"', '  path = "out/sha256sums.shard-0-of-2"\n  format = "raw"'],
            "key path: is the name of the checksum list",
        ),
        (
            ['  path = "out/a.qcow2"', '  path = "out/A.QCOW2"'],
            "output 2 (out/A.QCOW2), key path: is also the path of source 1 (a.raw), output 1 (out/a.qcow2)",
        ),
        (
            ['  path = "out/.b.qcow2.imagepack.json"\n  format = "raw"', '  path = "out/b.qcow2"'],
            "output 2 (out/b.qcow2), key path: its record (.b.qcow2.imagepack.json, written beside it) is also "
            "the path of source 1 (a.raw), output 1 (out/.b.qcow2.imagepack.json)",
        ),
        (['  path = "out/x.raw"', '  path = "m.toml"\n  format = "raw"'], "is the manifest; an output must not"),
        (['  path = "link/a.qcow2"', '  path = "out/a.qcow2"'], "output 2 (out/a.qcow2), key path: is also the path"),
    ],
    ids=["sums", "shard-sums-any-case", "case", "record", "manifest", "symlinked-dir"],
)
def test_two_files_of_a_batch_that_are_one_are_refused_naming_both(
    outputs: list[str], said: str, tmp_path: Path
) -> None:
    manifest = manifest_with(tmp_path, *outputs)
    (tmp_path / "link").symlink_to("out")
    line = refused(manifest, "--dry-run")
    assert said in line
    assert refused(manifest) == line  # the run refuses it as the plan does


def test_an_output_hard_linked_to_the_source_is_the_source(tmp_path: Path) -> None:
    manifest = manifest_with(tmp_path, '  path = "out/copy.raw"')
    os.link(tmp_path / "a.raw", tmp_path / "out" / "copy.raw")
    before = (tmp_path / "a.raw").read_bytes()
    assert "output 1 (out/copy.raw), key path: is the source a.raw; an output must not overwrite an input" in refused(
        manifest, "--force"
    )
    assert (tmp_path / "a.raw").read_bytes() == before


@pytest.mark.parametrize(
    ("report", "said"),
    [
        ("out/a.qcow2", "is also source 1 (a.raw), output 1 (out/a.qcow2); give the report its own path"),
        ("link/../out/a.qcow2", "is also source 1 (a.raw), output 1 (out/a.qcow2)"),
        ("out/SHA256SUMS", "is also the checksum list the batch writes in that directory"),
        ("out/.a.qcow2.imagepack.json", "is also the record .a.qcow2.imagepack.json of source 1 (a.raw), output 1"),
        ("link/../a.raw", "is also the source a.raw; an input must not be overwritten"),
        ("m.toml", "is also the manifest"),
    ],
    ids=["output", "output-via-link", "sums", "record", "source", "manifest"],
)
def test_a_report_that_is_a_file_of_the_batch_is_refused_before_any_work(
    report: str, said: str, tmp_path: Path
) -> None:
    manifest = manifest_with(tmp_path, '  path = "out/a.qcow2"')
    (tmp_path / "link").symlink_to("out")
    for args in (("--dry-run",), ()):
        line = refused(manifest, "--report", str(tmp_path / report), *args)
        assert f"--report {tmp_path / report}: {said}" in line, line
    assert manifest.read_text().startswith("[[source]]")


def test_a_report_beside_the_outputs_under_its_own_name_is_written(tmp_path: Path) -> None:
    manifest = manifest_with(tmp_path, '  path = "out/a.qcow2"')
    done = run_cli("batch", str(manifest), "--report", str(tmp_path / "out" / "report.json"))
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "out" / "report.json").read_text())["outputs"][0]["path"] == "out/a.qcow2"
    assert (tmp_path / "out" / "SHA256SUMS").read_text().endswith("  a.qcow2\n")
