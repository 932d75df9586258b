"""`imagepack batch merge-reports`: every shard of one plan exactly once (or a part, when told so), every field of
a report checked before it is copied, and a SHA256SUMS that `sha256sum -c` reads in the manifest's directory."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imagepack.writers.sample import write_sample_disk
from tests.conftest import run_cli

MiB = 1024**2
NAMES = ("alpha", "beta", "gamma", "delta", "eps", "zeta")


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A manifest of six sources, one qcow2 each, built in three shards: report-0.json to report-2.json."""
    folder = tmp_path_factory.mktemp("shards")
    text = ""
    for seed, name in enumerate(NAMES):
        write_sample_disk(folder / f"{name}.raw", MiB + seed * 64 * 1024, seed=seed + 1)
        text += f'[[source]]\npath = "{name}.raw"\n  [[source.output]]\n  path = "out/{name}.qcow2"\n'
    (folder / "release.toml").write_text(text)
    for index in range(3):
        done = run_cli(
            "batch",
            str(folder / "release.toml"),
            "--shard",
            f"{index}/3",
            "--report",
            str(folder / f"report-{index}.json"),
        )
        assert done.returncode == 0, done.stderr
    return folder


def reports(folder: Path, *indexes: int) -> list[str]:
    return [str(folder / f"report-{index}.json") for index in indexes]


def check_sums(sums: Path, folder: Path) -> list[str]:
    """sha256sum -c of `sums`, run in the manifest's directory: the names of the files it checked."""
    done = subprocess.run(["sha256sum", "--strict", "-c", str(sums)], cwd=folder, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return sorted(line.rpartition(": OK")[0] for line in done.stdout.splitlines())


def test_every_shard_merged_gives_a_sha256sums_that_sha256sum_checks_in_the_manifest_s_directory(
    shards: Path, tmp_path: Path
) -> None:
    merged = tmp_path / "merged" / "report.json"
    merged.parent.mkdir()
    done = run_cli("batch", "merge-reports", *reports(shards, 2, 0, 1), "--output", str(merged))
    assert done.returncode == 0, done.stderr
    assert "run sha256sum -c there" in done.stdout and "manifest's directory" in done.stdout
    report = json.loads(merged.read_text())
    assert report["shard"] is None and report["missing_shards"] == [] and report["planned"] == 6
    assert len(report["outputs"]) == 6
    assert check_sums(merged.parent / "SHA256SUMS", shards) == [f"out/{name}.qcow2" for name in sorted(NAMES)]


def test_a_missing_shard_is_refused_unless_a_part_is_asked_for(shards: Path, tmp_path: Path) -> None:
    merged = tmp_path / "report.json"
    done = run_cli("batch", "merge-reports", *reports(shards, 0, 1), "--output", str(merged))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "imagepack: error: no report of shard 2/3: the merged report would lack its outputs (4 of the plan's 6); "
        "give every shard's report; pass --allow-partial to merge only these"
    ]
    assert not merged.exists() and not (tmp_path / "SHA256SUMS").exists()
    done = run_cli("batch", "merge-reports", *reports(shards, 0, 1), "--output", str(merged), "--allow-partial")
    assert done.returncode == 0, done.stderr
    assert "no report of 1 shard (2)" in done.stdout
    report = json.loads(merged.read_text())
    assert report["missing_shards"] == [2] and len(report["outputs"]) == 4
    assert len(check_sums(tmp_path / "SHA256SUMS", shards)) == 4


def test_a_shard_given_twice_or_shards_of_two_splits_are_refused(shards: Path, tmp_path: Path) -> None:
    done = run_cli("batch", "merge-reports", *reports(shards, 0, 1, 1, 2), "--output", str(tmp_path / "r.json"))
    assert done.returncode == 1
    assert "are both the report of shard 1/3; give each shard's report once" in done.stderr
    whole = run_cli(
        "batch", str(shards / "release.toml"), "--shard", "0/2", "--report", str(tmp_path / "two.json"), "--json"
    )
    assert whole.returncode == 0, whole.stderr
    done = run_cli("batch", "merge-reports", *reports(shards, 0, 1, 2), str(tmp_path / "two.json"), "--json")
    assert done.returncode == 1
    assert json.loads(done.stdout)["error"]["code"] == "batch.report"
    assert "split 2 and 3 ways" in done.stderr


def forged(change: Callable[[dict[str, Any]], object]) -> Callable[[dict[str, Any]], object]:
    return change


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], object]:
    def change(report: dict[str, Any]) -> None:
        target: Any = report
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def _twice(report: dict[str, Any]) -> None:
    again = copy.deepcopy(report["outputs"][0])
    again["sha256"] = "0" * 64
    report["outputs"].append(again)


FORGERIES: dict[str, tuple[Callable[[dict[str, Any]], object], str]] = {
    "traversal": (_set(["outputs", 0, "path"], "../../../etc/shadow"), "outputs[0].path: '../../../etc/shadow'"),
    "absolute": (_set(["outputs", 0, "path"], "/etc/shadow"), "is not a path inside the manifest's directory"),
    "digest-not-hex": (_set(["outputs", 0, "sha256"], "z" * 64), "outputs[0].sha256: 'zzzz"),
    "digest-short": (_set(["outputs", 0, "sha256"], "ab"), "is not a SHA-256 in lowercase hex"),
    "newline-in-path": (_set(["outputs", 0, "path"], "out/a\n0000  b"), "holds a control character or a line break"),
    "backslash": (_set(["outputs", 0, "path"], "out\\a.qcow2"), "holds a backslash"),
    "output-twice": (_twice, "is twice in it; give each shard's report once"),
    "huge-estimate": (_set(["outputs", 0, "estimate"], 2**63), "outputs[0].estimate: 9223372036854775808 is out of"),
    "long-estimate": (_set(["outputs", 0, "estimate"], 10**30), "a number: 100000000000... has 31 digits"),
    "negative-size": (_set(["outputs", 0, "size"], -1), "outputs[0].size: -1 is out of range"),
    "seconds-inf": (_set(["seconds"], 1e308 * 10), "Infinity is not a number JSON allows"),
    "seconds-huge": (_set(["seconds"], 1e300), "seconds: 1e+300 is out of range"),
    "unknown-status": (_set(["outputs", 0, "status"], "hacked"), "outputs[0].status: 'hacked': one of built"),
    "built-without-size": (_set(["outputs", 0, "size"], None), "built without a size"),
    "other-manifest": (_set(["manifest_sha256"], "f" * 64), "a report of another manifest than"),
    "bad-shard": (_set(["shard"], "5/3"), "shard: '5/3' is not a shard I/N"),
    "huge-shard-count": (_set(["shard"], "0/99999999"), "of at most 10000"),
    "unknown-field": (_set(["extra"], 1), "unknown field 'extra'"),
    "escape-in-message": (_set(["outputs", 0, "error"], {"code": "x", "message": "\x1b[2J"}), "control character"),
}


@pytest.mark.parametrize("name", list(FORGERIES))
def test_a_forged_field_is_refused_naming_it_and_nothing_is_written(name: str, shards: Path, tmp_path: Path) -> None:
    change, said = FORGERIES[name]
    report = json.loads((shards / "report-2.json").read_text())
    change(report)
    forged_path = tmp_path / "report-2.json"
    forged_path.write_text(json.dumps(report))
    out = tmp_path / "out"
    out.mkdir()
    done = run_cli(
        "batch", "merge-reports", *reports(shards, 0, 1), str(forged_path), "--output", str(out / "r.json"), "--json"
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"imagepack: error: {forged_path}: "), done.stderr
    assert said in lines[0]
    assert json.loads(done.stdout)["error"]["code"] == "batch.report"
    assert os.listdir(out) == []


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
        (b'{"planned": 1' + b"0" * 5000 + b"}", "has 5001 digits"),
        (b'{"seconds": NaN}', "NaN is not a number JSON allows"),
        (b'{"manifest": "a", "manifest": "b"}', "the key 'manifest' is given twice"),
        (b"\xff\xfe", "not UTF-8 text"),
    ],
    ids=["deep", "long-number", "nan", "duplicate-key", "not-utf8"],
)
def test_a_report_that_is_not_one_is_one_line_not_an_internal_error(content: bytes, said: str, tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_bytes(content)
    done = run_cli("batch", "merge-reports", str(path))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and said in done.stderr, done.stderr
    assert "internal error" not in done.stderr


def test_a_report_of_a_gib_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    with open(path, "wb") as file:
        file.truncate(1024**3)  # sparse: no room taken
    done = run_cli("batch", "merge-reports", str(path))
    assert done.returncode == 1
    assert "larger than 64 MiB; this is not a batch report" in done.stderr


def test_a_merged_report_whose_sums_would_replace_it_is_refused(shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    done = run_cli("batch", "merge-reports", *reports(shards, 0, 1, 2), "--output", str(out / "SHA256SUMS"))
    assert done.returncode == 2
    assert "is also where the SHA256SUMS goes; give --sums another path" in done.stderr
    assert os.listdir(out) == []
    shutil.rmtree(out)
