"""`verify` of a compressed file: OCI imports the file exactly as it is uploaded, so a compressed one is never
"ready for import", in text or JSON, whatever it holds; the problem names the command that makes it ready, and
the file it writes then verifies as ready."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from imagepack.core.errors import EXIT_PROBLEMS
from tests.conftest import run_cli

PACK_ARGS = ("--os", "Oracle Linux", "--os-version", "9", "--firmware", "UEFI_64")
COMPRESSORS = {"xz": (".xz", ["xz", "-c"]), "zstd": (".zst", ["zstd", "-q", "-c"])}


def compressed(path: Path, kind: str) -> Path:
    suffix, command = COMPRESSORS[kind]
    out = path.with_name(path.name + suffix)
    with open(out, "wb") as f:
        subprocess.run([*command, str(path)], stdout=f, check=True)
    path.unlink()  # the command named must bring it back
    return out


@pytest.fixture
def ready_qcow2(sample_raw: Path, tmp_path: Path) -> Path:
    out = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(sample_raw), str(out)], check=True)
    assert run_cli("verify", str(out)).returncode == 0
    return out


@pytest.fixture
def ready_oci(sample_raw: Path, tmp_path: Path) -> Path:
    out = tmp_path / "disk.oci"
    assert run_cli("pack", str(sample_raw), str(out), *PACK_ARGS, "-q").returncode == 0
    assert run_cli("verify", str(out)).returncode == 0
    return out


@pytest.mark.parametrize(("which", "kind"), [("qcow2", "xz"), ("oci", "zstd"), ("qcow2", "zstd"), ("oci", "xz")])
def test_a_compressed_file_is_not_ready_and_the_command_named_makes_it_ready(
    which: str, kind: str, request: pytest.FixtureRequest
) -> None:
    plain: Path = request.getfixturevalue(f"ready_{which}")
    source = compressed(plain, kind)

    text = run_cli("verify", str(source))
    assert text.returncode == EXIT_PROBLEMS, text.stdout + text.stderr
    assert f"{source}: NOT ready for import" in text.stdout
    assert "ready for import" not in text.stdout.replace("NOT ready for import", "")
    errors = [line for line in text.stdout.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "exactly as it is uploaded" in errors[0], text.stdout

    as_json = run_cli("verify", "--json", str(source))
    assert as_json.returncode == EXIT_PROBLEMS
    report = json.loads(as_json.stdout)
    assert report["ready"] is False and report["facts"]["compression"] == kind
    problem = next(p for p in report["problems"] if p["code"] == "oci.compressed")
    assert problem["severity"] == "error"

    command = f"imagepack decompress {source}"
    assert command in problem["message"] and command in errors[0]
    made = run_cli("decompress", str(source))
    assert made.returncode == 0, made.stderr
    assert run_cli("verify", str(plain)).returncode == 0  # what the command wrote is ready
