"""`imagepack checksum` and `--checksum`: the SHA-256 and the MD5s Object Storage shows, against values computed
here independently (hashlib over the parts by hand, sha256sum, md5sum | xxd -r -p | base64)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from imagepack.files.checksums import Digester, checksum_file
from tests.conftest import leftovers, run_cli
from tests.unit.test_formats_detect import one_error_line

MIB = 1024**2


def expected(path: Path, part_size: int) -> dict[str, object]:
    """What Object Storage would show for `path`, computed without imagepack: the file read whole, split into
    parts by hand, and the single-part values from the coreutils tools."""
    data = path.read_bytes()
    sha256 = subprocess.run(["sha256sum", str(path)], check=True, capture_output=True, text=True).stdout.split()[0]
    pipeline = f"md5sum < '{path}' | cut -d' ' -f1 | xxd -r -p | base64"
    md5 = subprocess.run(pipeline, shell=True, check=True, capture_output=True, text=True).stdout.strip()
    assert sha256 == hashlib.sha256(data).hexdigest()
    multipart = None
    if len(data) > part_size:
        parts = [hashlib.md5(data[i : i + part_size]).digest() for i in range(0, len(data), part_size)]
        multipart = base64.b64encode(hashlib.md5(b"".join(parts)).digest()).decode() + f"-{len(parts)}"
    return {"size": len(data), "sha256": sha256, "md5": md5, "multipart_md5": multipart}


def reported(checksum: dict[str, object]) -> dict[str, object]:
    return {key: checksum[key] for key in ("size", "sha256", "md5", "multipart_md5")}


def random_file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


SIZES = {
    "empty": 0,
    "one-byte": 1,
    "exactly-one-part": MIB,
    "one-part-and-a-byte": MIB + 1,
    "several-parts": 3 * MIB + 12345,
    "exactly-three-parts": 3 * MIB,
}


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_checksum_gives_what_object_storage_shows_for_files_around_the_part_size(tmp_path: Path, size: int) -> None:
    path = random_file(tmp_path / "file.bin", size)
    done = run_cli("checksum", str(path), "--part-size", "1MiB", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert reported(result) == expected(path, MIB)
    assert result["part_size"] == MIB
    assert result["parts"] == max(1, -(-size // MIB))
    assert result["md5_hex"] == hashlib.md5(path.read_bytes()).hexdigest()


def test_checksum_text_names_the_values_and_says_when_the_upload_is_single_part(tmp_path: Path) -> None:
    path = random_file(tmp_path / "small.bin", 1000)
    done = run_cli("checksum", str(path))
    assert done.returncode == 0, done.stderr
    want = expected(path, 128 * MIB)
    assert str(want["sha256"]) in done.stdout and str(want["md5"]) in done.stdout
    assert "uploaded in one part" in done.stdout and "128 MiB" in done.stdout
    done = run_cli("checksum", str(path), "--part-size", "1M")
    assert "uploaded in one part" in done.stdout
    bigger = random_file(tmp_path / "big.bin", 2 * MIB + 1)
    done = run_cli("checksum", str(bigger), "--part-size", "1M")
    assert f"{expected(bigger, MIB)['multipart_md5']}  (3 parts of 1 MiB)" in done.stdout


def test_a_sparse_file_is_checksummed_as_the_full_logical_bytes_with_the_default_part_size(tmp_path: Path) -> None:
    path = tmp_path / "sparse.raw"
    with open(path, "wb") as f:  # 129 MiB, mostly holes: two parts of oci os object put's 128 MiB
        f.write(os.urandom(4096))
        f.seek(128 * MIB + 5000)
        f.write(os.urandom(4096))
        f.truncate(129 * MIB)
    assert path.stat().st_blocks * 512 < MIB
    done = run_cli("checksum", str(path), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert reported(result) == expected(path, 128 * MIB)
    assert result["parts"] == 2 and str(result["multipart_md5"]).endswith("-2")


@pytest.mark.parametrize("threaded", [True, False], ids=["threaded", "one-thread"])
def test_the_digester_fed_in_pieces_that_straddle_parts_and_reuse_a_buffer_agrees(
    tmp_path: Path, threaded: bool
) -> None:
    path = random_file(tmp_path / "file.bin", 5 * MIB + 777)
    data = path.read_bytes()
    buffer = bytearray(700_001)  # not a divisor of the part size, and rewritten after every update
    with Digester(MIB, threaded=threaded) as digester:
        for start in range(0, len(data), len(buffer)):
            piece = data[start : start + len(buffer)]
            buffer[: len(piece)] = piece
            digester.update(memoryview(buffer)[: len(piece)])
            buffer[:] = bytes(len(buffer))
        fed = digester.result()
    assert reported(fed.to_json()) == expected(path, MIB)
    assert checksum_file(path, part_size=MIB, threaded=threaded) == fed


@pytest.mark.parametrize(
    ("part_size", "says"),
    [
        ("0", "use the default, 128MiB"),
        ("51G", "use 50GiB or less"),
        ("1000", "use 1MiB"),
        ("1.5M", "is not a size"),
    ],
    ids=["zero", "over-50GiB", "not-whole-MiB", "not-a-size"],
)
def test_checksum_refuses_a_part_size_object_storage_would_not_take(tmp_path: Path, part_size: str, says: str) -> None:
    path = random_file(tmp_path / "file.bin", 10)
    done = run_cli("checksum", str(path), "--part-size", part_size, "--json")
    assert done.returncode == 2
    assert says in one_error_line(done)
    assert json.loads(done.stdout)["error"]["code"] == "invalid-value"


def test_checksum_refuses_a_part_size_that_makes_more_than_ten_thousand_parts(tmp_path: Path) -> None:
    path = tmp_path / "huge.raw"
    with open(path, "wb") as f:
        f.truncate(20 * 1024**3)  # a hole: the refusal must come before any reading
    done = run_cli("checksum", str(path), "--part-size", "1MiB")
    assert done.returncode == 2
    line = one_error_line(done)
    assert "20480 parts" in line and "10000" in line and "use 3MiB or more" in line


def test_part_size_without_checksum_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    source = random_file(tmp_path / "file.bin", 1000)
    done = run_cli("compress", str(source), "--part-size", "8M")
    assert done.returncode == 2
    assert "--checksum" in one_error_line(done)
    assert not (tmp_path / "file.bin.zst").exists() and leftovers(tmp_path) == []


OCI = ["--os", "Oracle Linux", "--os-version", "9"]
WRITERS = {  # verb and arguments (SRC is the sample disk), and the file whose checksum it reports
    "convert-raw-read-back": (["convert", "{src}", "{dir}/disk.raw"], "disk.raw"),
    "convert-qcow2-read-back": (["convert", "{src}", "{dir}/disk.qcow2"], "disk.qcow2"),
    "convert-compressed-while-written": (["convert", "{src}", "{dir}/disk.vmdk.zst"], "disk.vmdk.zst"),
    "convert-raw-compressed-from-the-source": (["convert", "{src}", "{dir}/disk.raw.xz"], "disk.raw.xz"),
    "pack-read-back": (["pack", "{src}", "{dir}/disk.oci", *OCI], "disk.oci"),
    "pack-compressed-while-written": (["pack", "{src}", "{dir}/disk.oci.gz", *OCI], "disk.oci.gz"),
    "compress": (["compress", "--to", "gz", "{src}", "{dir}/disk.raw.gz"], "disk.raw.gz"),
}


@pytest.mark.parametrize(("args", "written"), WRITERS.values(), ids=WRITERS.keys())
def test_checksum_of_what_a_verb_wrote_agrees_with_checksum_of_the_file_afterwards(
    sample_raw: Path, tmp_path: Path, args: list[str], written: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    typed = [arg.format(src=sample_raw, dir=out) for arg in args]
    done = run_cli(*typed, "--checksum", "--part-size", "1MiB", "--json")
    assert done.returncode == 0, done.stderr
    reported_now = json.loads(done.stdout)["checksum"]
    again = run_cli("checksum", str(out / written), "--part-size", "1MiB", "--json")
    assert again.returncode == 0, again.stderr
    assert {**json.loads(again.stdout), "source": None} == {**reported_now, "source": None}
    assert reported(reported_now) == expected(out / written, MIB)
    again_out = tmp_path / "text"
    again_out.mkdir()
    text = run_cli(*[arg.replace(str(out), str(again_out)) for arg in typed], "--checksum", "--part-size", "1M")
    assert text.returncode == 0, text.stderr
    want = expected(again_out / written, MIB)  # a vmdk's CID, an archive's mtime: not the first run's bytes
    assert f"sha256:            {want['sha256']}" in text.stdout
    assert f"Content-MD5:       {want['md5']}" in text.stdout
    assert f"opc-multipart-md5: {want['multipart_md5'] or 'none'}" in text.stdout


def test_decompress_checksums_the_holes_it_leaves_as_the_zeroes_they_read_as(sample_raw: Path, tmp_path: Path) -> None:
    packed = tmp_path / "disk.raw.zst"
    subprocess.run(["zstd", "-q", str(sample_raw), "-o", str(packed)], check=True)
    back = tmp_path / "back.raw"
    done = run_cli("decompress", str(packed), str(back), "--checksum", "--part-size", "1MiB", "--json")
    assert done.returncode == 0, done.stderr
    assert back.stat().st_blocks * 512 < back.stat().st_size  # holes were left
    assert reported(json.loads(done.stdout)["checksum"]) == expected(back, MIB) == expected(sample_raw, MIB)


def test_unpack_and_meta_set_report_the_checksums_of_the_disk_and_the_archive(sample_raw: Path, tmp_path: Path) -> None:
    archive = tmp_path / "disk.oci"
    assert run_cli("pack", str(sample_raw), str(archive), *OCI).returncode == 0
    done = run_cli("unpack", str(archive), "-d", str(tmp_path / "out"), "--checksum", "--json")
    assert done.returncode == 0, done.stderr
    assert reported(json.loads(done.stdout)["checksum"]) == expected(tmp_path / "out" / "disk.qcow2", 128 * MIB)
    done = run_cli("meta", "set", str(archive), "launchMode=NATIVE", "--checksum", "--part-size", "1M", "--json")
    assert done.returncode == 0, done.stderr
    assert reported(json.loads(done.stdout)["checksum"]) == expected(archive, MIB)
    done = run_cli("meta", "shapes", "add", str(archive), "VM.Standard2.1", "--checksum")
    assert done.returncode == 0, done.stderr
    assert f"sha256:            {expected(archive, MIB)['sha256']}" in done.stdout


def test_without_checksum_the_result_says_none(sample_raw: Path, tmp_path: Path) -> None:
    done = run_cli("convert", str(sample_raw), str(tmp_path / "disk.qcow2"), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["checksum"] is None


def test_convert_refuses_a_bad_part_size_before_it_writes_anything(sample_raw: Path, tmp_path: Path) -> None:
    target = tmp_path / "disk.qcow2"
    done = run_cli("convert", str(sample_raw), str(target), "--checksum", "--part-size", "51GiB")
    assert done.returncode == 2
    assert "50GiB" in one_error_line(done)
    assert not target.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("what", ["missing", "directory"])
def test_checksum_of_something_that_is_not_a_file_is_one_line(tmp_path: Path, what: str) -> None:
    path = tmp_path / what
    if what == "directory":
        path.mkdir()
    done = run_cli("checksum", str(path))
    assert done.returncode == 1
    assert str(path) in one_error_line(done)
