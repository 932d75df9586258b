"""Format option values are checked against what each may be (a number in its range, a word from a fixed set)
before they reach qemu-img's command line or a vmdk descriptor: `-o`, a preset's, a batch manifest's `options`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from imagepack.core.errors import InvalidValueError
from imagepack.formats import ImageFormat
from imagepack.formats.create_options import create_options
from imagepack.writers.vmdkstream import layout
from tests.conftest import leftovers, run_cli

# A line that would name a host file as a FLAT extent of the vmdk written, were it copied into its descriptor.
EXTENT = 'RW 64 FLAT "/etc/hostname" 0'
INJECTIONS = {
    "newline": f'4"\n{EXTENT}\n#',
    "carriage-return": f'4"\r{EXTENT}\r#',
    "quote": '4" ddb.x = "1',
    "single-quote": "4'",
    "backslash": "4\\n",
    "trailing-newline": "4\n",
    "tab": "4\t",
    "inner-space": "4 4",
    "equals": "4=4",
    "line-separator": f"4\u2028{EXTENT}",
    "paragraph-separator": f"4\u2029{EXTENT}",
    "next-line": f"4\x85{EXTENT}",
    "unicode-digit": "\u0664",  # ARABIC-INDIC DIGIT FOUR: int() takes it, a descriptor reader would not
    "very-long": "4" * 100_000,
    "empty": "",
}
# Where a value is written into a descriptor or a command line by imagepack's writers: (output name, key, options).
OPTIONS = {
    "hwversion": ("disk.vmdk", "hwversion", {"subformat": "streamOptimized"}),
    "toolsversion": ("disk.vmdk", "toolsversion", {"subformat": "streamOptimized"}),
    "qemu-hwversion": ("disk.vmdk", "hwversion", {"subformat": "monolithicSparse"}),
    "adapter_type": ("disk.vmdk", "adapter_type", {}),
    "subformat": ("disk.vmdk", "subformat", {}),
    "cluster_size": ("disk.qcow2", "cluster_size", {}),
    "block_size": ("disk.vhdx", "block_size", {}),
}


def _error(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    error: dict[str, str] = json.loads(done.stdout)["error"]
    return error


@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("variant", INJECTIONS)
def test_an_option_value_that_is_not_what_it_may_be_is_refused_on_the_command_line(
    sample_raw: Path, tmp_path: Path, option: str, variant: str
) -> None:
    name, key, others = OPTIONS[option]
    out = tmp_path / "out" / name
    out.parent.mkdir()
    given = [f"{other}={value}" for other, value in others.items()]
    args = [arg for pair in [*given, f"{key}={INJECTIONS[variant]}"] for arg in ("-o", pair)]
    done = run_cli("convert", str(sample_raw), str(out), *args, "--json")
    assert done.returncode == 2, done.stdout + done.stderr
    error = _error(done)
    assert error["code"] == "invalid-value"
    assert error["message"].startswith(f"-o {key}=") and "\n" not in error["message"]
    assert len(error["message"]) < 300
    assert not out.exists() and leftovers(out.parent) == []


def test_a_comma_in_a_value_is_refused_not_taken_for_a_second_option(sample_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "disk.vmdk"
    done = run_cli("convert", str(sample_raw), str(out), "-o", f"hwversion=4,{EXTENT}", "--json")
    assert done.returncode == 2 and _error(done)["code"] == "invalid-value"
    assert not out.exists()


def test_an_injected_value_is_refused_for_a_preset_s_output(sample_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "disk.vmdk"
    done = run_cli("convert", str(sample_raw), str(out), "--for", "esxi", "-o", f"hwversion=17\n{EXTENT}", "--json")
    assert done.returncode == 2 and _error(done)["code"] == "invalid-value"
    assert "hwversion=" in _error(done)["message"]
    assert not out.exists()


def _toml_string(value: str) -> str:
    return json.dumps(value)  # JSON's string escapes (\n, \", \uXXXX) are TOML basic-string escapes


BATCH_INJECTIONS = {**INJECTIONS, "nul": f"4\0{EXTENT}", "comma": f"4,{EXTENT}"}


@pytest.mark.parametrize("key", ["hwversion", "toolsversion", "adapter_type"])
@pytest.mark.parametrize("variant", BATCH_INJECTIONS)
def test_an_option_value_that_is_not_what_it_may_be_is_refused_in_a_batch_manifest(
    sample_raw: Path, tmp_path: Path, key: str, variant: str
) -> None:
    manifest = tmp_path / "release.toml"
    value = _toml_string(BATCH_INJECTIONS[variant])
    manifest.write_text(
        f'[[source]]\npath = "{sample_raw.name}"\n'
        "  [[source.output]]\n"
        '  path = "out/disk.vmdk"\n'
        f'  options = {{ subformat = "streamOptimized", {key} = {value} }}\n'
    )
    done = run_cli("batch", str(manifest), "--json")
    assert done.returncode != 0, done.stdout + done.stderr
    assert "invalid-value" in done.stdout
    assert "options" in done.stdout
    assert not (tmp_path / "out" / "disk.vmdk").exists()


def test_a_batch_manifest_s_number_values_are_taken(sample_raw: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "release.toml"
    manifest.write_text(
        f'[[source]]\npath = "{sample_raw.name}"\n'
        "  [[source.output]]\n"
        '  path = "out/disk.vmdk"\n'
        '  options = { subformat = "streamOptimized", hwversion = 14, toolsversion = 12352 }\n'
    )
    done = run_cli("batch", str(manifest), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    head = (tmp_path / "out" / "disk.vmdk").read_bytes()[:4096]
    assert b'ddb.virtualHWVersion = "14"' in head and b'ddb.toolsVersion = "12352"' in head


def test_good_values_are_written_as_qemu_img_spells_them() -> None:
    options = create_options(ImageFormat.QCOW2, {"cluster_size": "64k", "lazy_refcounts": "ON"})
    assert options == {"cluster_size": "65536", "lazy_refcounts": "on"}
    vmdk = create_options(ImageFormat.VMDK, {"hwversion": "21", "toolsversion": "2147483647"})
    assert vmdk == {"hwversion": "21", "toolsversion": "2147483647"}


@pytest.mark.parametrize("key", ["hwversion", "toolsversion", "adapter_type", "compat6"])
def test_the_stream_writer_s_descriptor_refuses_a_value_given_past_the_checks(key: str) -> None:
    with pytest.raises(InvalidValueError, match=f"-o {key}="):
        layout.descriptor("disk.vmdk", 2048, {key: f'4"\n{EXTENT}\n#'}, 1)
