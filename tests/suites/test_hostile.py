"""Untrusted images: every crafted file in tests/hostile.py is refused before qemu-img can follow it, with one
line naming the file, the problem and the option that allows it; and the benign controls still convert."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from imagepack.formats import ImageFormat, SafetyPolicy, spec
from imagepack.sources.disk import recheck_qemu_info
from tests import hostile, luks
from tests.conftest import ODD_SIZE, file_digest, leftovers, qemu_img, run_cli

TIME_BOUND = 20.0  # seconds; a refusal must never wait on the file's claimed size


def regular_files(folder: Path) -> dict[Path, tuple[str, int]]:
    """Every regular file under `folder` (links, FIFOs and devices are never opened), with hash and mtime."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if stat.S_ISREG(os.lstat(path).st_mode):
            found[path] = file_digest(path)
    return found


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    return folder


@pytest.fixture
def canary(corpus: Path) -> Path:
    return hostile.write_canary(corpus)


def assert_one_line_refusal(stderr: str, *fragments: str) -> None:
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("imagepack: error: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


@pytest.mark.parametrize("case", hostile.HOSTILE, ids=lambda c: c.id)
def test_convert_refuses_hostile_image_and_writes_nothing(
    case: hostile.Hostile, tmp_path: Path, corpus: Path, canary: Path
) -> None:
    source = case.build(corpus, canary)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / "converted.qcow2"
    before = regular_files(tmp_path)
    source_state = os.lstat(source).st_mtime_ns

    started = time.monotonic()
    done = run_cli("convert", "--quiet", *case.args, str(source), str(target), timeout=60)
    elapsed = time.monotonic() - started

    assert done.returncode == 1, done.stderr
    assert elapsed < TIME_BOUND
    assert done.stdout == ""
    assert_one_line_refusal(done.stderr, str(source), case.expect, *([case.allow] if case.allow else []))
    assert list(out_dir.iterdir()) == []
    assert leftovers(out_dir) == leftovers(corpus) == []
    after = regular_files(tmp_path)
    assert after == before  # the input and every neighbour untouched, nothing new anywhere
    assert os.lstat(source).st_mtime_ns == source_state
    secret = canary.read_bytes()
    assert not [p for p in after if p not in before and secret[:4096] in p.read_bytes()]


@pytest.mark.parametrize("case", hostile.HOSTILE, ids=lambda c: c.id)
def test_info_says_why_a_hostile_image_would_be_refused(case: hostile.Hostile, corpus: Path, canary: Path) -> None:
    source = case.build(corpus, canary)
    before = regular_files(corpus)

    started = time.monotonic()
    done = run_cli("info", "--json", *case.args, str(source), timeout=60)

    assert time.monotonic() - started < TIME_BOUND
    assert "Traceback" not in done.stderr
    if case.info == "refused":
        assert done.returncode == 0, done.stderr
        described = json.loads(done.stdout)
        assert described["safe"] is False
        problems = described["problems"]
        assert any(case.expect in problem["message"] for problem in problems), problems
        assert all(problem["code"] and "--" not in problem["message"] for problem in problems), problems
        if case.allow:
            # The library names the remedy; the command line names the option that applies it.
            remedy, _, value = case.allow.removeprefix("--").partition(" ")
            assert any(p["remedy"] == remedy and p["value"] == (value or None) for p in problems), problems
    else:
        assert done.returncode == 1
        assert case.expect in json.loads(done.stdout)["error"]["message"]  # --json: the refusal as an error object
        assert_one_line_refusal(done.stderr, str(source), case.expect)
    assert regular_files(corpus) == before


# Cases whose danger `qemu-img info` itself reveals (the others it refuses to open, or cannot see): the second
# layer must refuse each of them even if the header checks had let it through.
SEEN_BY_QEMU_IMG_INFO = {
    "qcow2-backing-file-is-canary": ImageFormat.QCOW2,
    "qcow2-backing-json-pseudo-protocol": ImageFormat.QCOW2,
    "qcow2-external-data-file": ImageFormat.QCOW2,
    "qcow2-luks-encrypted": ImageFormat.QCOW2,
    "qcow2-64KiB-file-claims-512TiB": ImageFormat.QCOW2,
    "vmdk-flat-descriptor-extent-is-canary": ImageFormat.VMDK,
    "vmdk-flat-descriptor-etc-passwd": ImageFormat.VMDK,
    "vmdk-flat-descriptor-indented-extent": ImageFormat.VMDK,
    "vmdk-twoGbMaxExtentSparse-descriptor": ImageFormat.VMDK,
    "vmdk-sparse-delta-with-parentFileNameHint": ImageFormat.VMDK,
    "vmdk-parent-hint-without-descriptor": ImageFormat.VMDK,
    "vmdk-capacity-zero-embedded-descriptor": ImageFormat.VMDK,
    "vmdk-stream-footer-claims-512TiB": ImageFormat.VMDK,
}


@pytest.mark.parametrize("case_id", sorted(SEEN_BY_QEMU_IMG_INFO))
def test_second_layer_refuses_what_qemu_img_info_reports(case_id: str, corpus: Path, canary: Path) -> None:
    case = next(c for c in hostile.HOSTILE if c.id == case_id)
    fmt = SEEN_BY_QEMU_IMG_INFO[case_id]
    source = case.build(corpus, canary)
    found = json.loads(qemu_img("info", "--output=json", "-f", spec(fmt).driver, str(source)).stdout)

    problems = recheck_qemu_info(found, fmt, SafetyPolicy())

    assert problems, found


def test_luks_container_is_a_volume_qemu_img_info_opens(corpus: Path) -> None:
    source = luks.luks_container(corpus, size=64 * hostile.KiB)

    found = json.loads(qemu_img("info", "--output=json", "-f", "luks", str(source)).stdout)

    assert source.read_bytes()[:6] == b"LUKS\xba\xbe"
    assert found["encrypted"] is True
    assert found["virtual-size"] == 64 * hostile.KiB
    assert found["format-specific"]["data"]["cipher-alg"] == "aes-256"


def test_every_hostile_case_has_its_own_id() -> None:
    ids = [case.id for case in hostile.HOSTILE]
    assert len(ids) == len(set(ids))
    assert set(SEEN_BY_QEMU_IMG_INFO) <= set(ids)


@pytest.mark.parametrize("case", hostile.BENIGN, ids=lambda c: c.id)
def test_benign_image_still_converts_to_the_same_disk(case: hostile.Benign, sample_raw: Path, tmp_path: Path) -> None:
    source = hostile.build_benign(case, tmp_path, sample_raw)
    digest = file_digest(source)
    target = tmp_path / "out.qcow2"

    done = run_cli("convert", "--quiet", str(source), str(target))

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert file_digest(source) == digest
    driver = "vpc" if case.fmt == "vhd" else case.fmt
    qemu_img("compare", "-q", "-f", driver, "-F", "qcow2", str(source), str(target))
    qemu_img("compare", "-q", "-f", "raw", "-F", "qcow2", str(sample_raw), str(target))
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("case", hostile.BENIGN, ids=lambda c: c.id)
def test_info_calls_a_benign_image_safe(case: hostile.Benign, sample_raw: Path, tmp_path: Path) -> None:
    source = hostile.build_benign(case, tmp_path, sample_raw)

    done = run_cli("info", "--json", str(source))

    assert done.returncode == 0, done.stderr
    described = json.loads(done.stdout)
    assert (described["safe"], described["problems"]) == (True, [])
    assert described["format"] == case.fmt
    assert described["virtual_size"] >= ODD_SIZE


def test_max_size_lowers_the_cap_and_is_named_in_the_refusal(make_image: Callable[..., Path], tmp_path: Path) -> None:
    source = make_image("qcow2")

    done = run_cli("convert", "--quiet", "--max-size", "1M", str(source), str(tmp_path / "out.raw"))

    assert done.returncode == 1
    assert_one_line_refusal(done.stderr, str(source), "above the limit", "--max-size")
    assert not (tmp_path / "out.raw").exists()


def test_max_size_raises_the_cap_for_a_disk_above_400GiB(tmp_path: Path) -> None:
    source = tmp_path / "one-tebibyte.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(source), "1T")

    refused = run_cli("info", "--json", str(source))
    allowed = run_cli("info", "--json", "--max-size", "2T", str(source))

    assert refused.returncode == 0 and json.loads(refused.stdout)["safe"] is False
    assert allowed.returncode == 0, allowed.stderr
    described = json.loads(allowed.stdout)
    assert (described["safe"], described["virtual_size"]) == (True, 1024**4)


def test_allow_backing_is_the_option_that_really_follows_a_trusted_backing_file(
    corpus: Path, canary: Path, tmp_path: Path
) -> None:
    source = hostile.qcow2_backing_canary(corpus, canary)
    target = tmp_path / "flattened.raw"

    done = run_cli("convert", "--quiet", "--allow-backing", str(source), str(target))

    assert done.returncode == 0, done.stderr
    assert target.read_bytes() == canary.read_bytes()
