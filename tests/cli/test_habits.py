"""qemu-img's habits work: `-f FMT` is the source format, `-O FMT` the output format; where a verb has no such
option, the one meant is named. `--force` keeps its long name only."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.readers import qemu_compare


def test_convert_takes_f_as_the_source_format_and_o_as_the_output_format(
    make_image: Callable[..., Path], sample_raw: Path, tmp_path: Path
) -> None:
    source = make_image("qcow2")
    out = tmp_path / "b.img"  # the name says raw: -O says otherwise
    done = run_cli("convert", "-f", "qcow2", str(source), str(out), "-O", "vmdk", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["format"] == "vmdk"
    assert out.read_bytes()[:4] == b"KDMV"
    assert qemu_compare(sample_raw, "raw", out, "vmdk").returncode == 0


def test_f_states_the_format_so_a_wrong_one_is_refused(make_image: Callable[..., Path], tmp_path: Path) -> None:
    source = make_image("qcow2")
    done = run_cli("convert", "-f", "raw", str(source), str(tmp_path / "b.vmdk"), "--json")
    assert done.returncode != 0
    assert "raw" in json.loads(done.stdout)["error"]["message"]
    assert not (tmp_path / "b.vmdk").exists()


@pytest.mark.parametrize("verb", ["info", "pack"])
def test_info_and_pack_take_f_as_the_source_format(verb: str, make_image: Callable[..., Path], tmp_path: Path) -> None:
    source = make_image("qcow2")
    args = [str(source)] if verb == "info" else [str(source), str(tmp_path / "a.oci"), "--os", "Ubuntu"]
    args += ["--os-version", "22.04"] if verb == "pack" else []
    done = run_cli(verb, "-f", "vmdk", *args, "--json")
    assert done.returncode == 1, done.stdout + done.stderr  # the content is qcow2: -f was read as a format
    assert "vmdk" in json.loads(done.stdout)["error"]["message"]


def test_unpack_takes_o_as_the_output_format(make_image: Callable[..., Path], tmp_path: Path) -> None:
    source = make_image("qcow2")
    archive = tmp_path / "a.oci"
    packed = run_cli("pack", str(source), str(archive), "--os", "Ubuntu", "--os-version", "22.04", "--firmware", "BIOS")
    assert packed.returncode == 0, packed.stderr
    done = run_cli("unpack", str(archive), "-d", str(tmp_path / "out"), "-O", "vhdx", "--json")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "a.vhdx").exists()


def test_f_no_longer_replaces_an_output(sample_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.qcow2"
    out.write_bytes(b"mine")
    done = run_cli("convert", str(sample_raw), str(out), "-f")
    assert done.returncode == 2
    assert out.read_bytes() == b"mine"


def test_a_verb_without_from_answers_f_with_force(sample_raw: Path) -> None:
    done = run_cli("compress", str(sample_raw), "-f", "--json")
    assert done.returncode == 2
    assert "--force" in json.loads(done.stdout)["error"]["message"]
