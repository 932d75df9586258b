"""`imagepack seed-iso` and `info` of an ISO: cloud-init NoCloud seeds checked with tools that share no code with
pycdlib (blkid, isoinfo from genisoimage, xorriso, 7-Zip), user-data refused as cloud-init would ignore it, and
nothing left behind by a failure."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from imagepack.core.errors import EXIT_SIGTERM, EXIT_USAGE, InputError, Interrupted, OutputError
from imagepack.verbs.seed import default_user_data, make_seed_iso, read_iso
from tests.conftest import interrupt_when, leftovers, run_cli
from tests.unit.test_formats_detect import one_error_line

CLOUD_CONFIG = b"#cloud-config\nusers:\n  - name: opc\n    sudo: ALL=(ALL) NOPASSWD:ALL\nfinal_message: done\n"

needs_isoinfo = pytest.mark.skipif(shutil.which("isoinfo") is None, reason="isoinfo (genisoimage) is not installed")
needs_xorriso = pytest.mark.skipif(shutil.which("xorriso") is None, reason="xorriso is not installed")
needs_7zz = pytest.mark.skipif(shutil.which("7zz") is None, reason="7zz (7zip) is not installed")


def tool(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def blkid(path: Path) -> dict[str, str]:
    out = tool("blkid", "-p", "-o", "export", str(path))
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def isoinfo_names(path: Path, extension: str) -> list[str]:
    """The file names as isoinfo reads them through Rock Ridge (-R) or Joliet (-J)."""
    return sorted(tool("isoinfo", extension, "-f", "-i", str(path)).split())


def extract_7zz(path: Path, into: Path) -> dict[str, bytes]:
    into.mkdir()
    tool("7zz", "x", "-y", f"-o{into}", str(path))
    return {p.name: p.read_bytes() for p in into.iterdir()}


def seed(tmp_path: Path, *args: str, user_data: bytes = CLOUD_CONFIG) -> tuple[subprocess.CompletedProcess[str], Path]:
    source = tmp_path / "cloud.yaml"
    source.write_bytes(user_data)
    out = tmp_path / "seed.iso"
    return run_cli("seed-iso", str(out), "--user-data", str(source), *args), out


# --- what is written ----------------------------------------------------------------------------------------------


@needs_isoinfo
@needs_xorriso
@needs_7zz
def test_a_seed_from_cloud_config_reads_back_with_independent_tools(tmp_path: Path) -> None:
    done, out = seed(tmp_path, "--hostname", "web1", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["target"], report["label"], report["user_data_type"]) == (str(out), "cidata", "text/cloud-config")

    found = blkid(out)
    assert (found["LABEL"], found["TYPE"]) == ("cidata", "iso9660")
    assert isoinfo_names(out, "-R") == ["/meta-data", "/user-data"]
    assert isoinfo_names(out, "-J") == ["/meta-data", "/user-data"]
    listed = tool("xorriso", "-indev", str(out), "-find", "/", "-type", "f")
    assert sorted(re.findall(r"'(/[^']+)'", listed)) == ["/meta-data", "/user-data"]

    files = extract_7zz(out, tmp_path / "x")
    assert files["user-data"] == CLOUD_CONFIG
    meta = yaml.safe_load(files["meta-data"])
    assert meta == {"instance-id": report["instance_id"], "local-hostname": "web1"}
    assert re.fullmatch(r"iid-[0-9a-f]{16}", meta["instance-id"])
    assert tool("isoinfo", "-R", "-x", "/user-data", "-i", str(out)).encode() == CLOUD_CONFIG


@needs_isoinfo
@needs_7zz
def test_given_files_are_written_byte_for_byte(tmp_path: Path) -> None:
    """CRLF line ends, no final newline, UTF-8 and gzip: nothing is rewritten."""
    user = gzip.compress(b"#!/bin/sh\r\necho h\xc3\xa9llo > /dev/ttyS0")
    meta = b"instance-id: vm-42\r\nlocal-hostname: db1"
    network = b"version: 2\nethernets:\n  eth0:\n    dhcp4: true\n"
    vendor = b"#cloud-config\n{}\n"
    paths = {}
    for name, data in (("u", user), ("m", meta), ("n", network), ("v", vendor)):
        paths[name] = tmp_path / name
        paths[name].write_bytes(data)
    out = tmp_path / "seed.iso"
    done = run_cli(
        "seed-iso", str(out), "--user-data", str(paths["u"]), "--meta-data", str(paths["m"]),
        "--network-config", str(paths["n"]), "--vendor-data", str(paths["v"]), "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["instance_id"], report["hostname"], report["meta_data_generated"]) == ("vm-42", "db1", False)
    assert (report["user_data_type"], report["network_config_version"]) == ("text/x-shellscript (gzip)", 2)
    expected = {"user-data": user, "meta-data": meta, "network-config": network, "vendor-data": vendor}
    assert extract_7zz(out, tmp_path / "x") == expected
    assert isoinfo_names(out, "-J") == sorted("/" + name for name in expected)


def test_given_meta_data_without_an_instance_id_is_written_with_a_warning(tmp_path: Path) -> None:
    meta = tmp_path / "meta-data"
    meta.write_bytes(b"local-hostname: db1\n")
    done, out = seed(tmp_path, "--meta-data", str(meta))
    assert done.returncode == 0, done.stderr
    assert f"imagepack: warning: {meta} states no instance-id" in done.stderr
    assert "local-hostname db1" in done.stdout and out.exists()


def test_the_instance_id_follows_the_content(tmp_path: Path) -> None:
    """The same files give the same ID (cloud-init sees the same instance); changed ones a new one."""
    ids = []
    for n, user_data in enumerate([CLOUD_CONFIG, CLOUD_CONFIG, CLOUD_CONFIG + b"# changed\n"]):
        target = tmp_path / f"seed{n}.iso"
        ids.append(make_seed_iso(target, user_data=user_data).instance_id)
    assert ids[0] == ids[1] != ids[2]
    assert make_seed_iso(tmp_path / "named.iso", user_data=CLOUD_CONFIG, instance_id="i-1").instance_id == "i-1"


def test_an_existing_output_is_replaced_only_with_force(tmp_path: Path) -> None:
    done, out = seed(tmp_path)
    assert done.returncode == 0, done.stderr
    first = out.read_bytes()
    again, _ = seed(tmp_path, "--hostname", "other")
    assert again.returncode == 1
    assert "already exists; pass --force" in one_error_line(again)
    assert out.read_bytes() == first
    forced, _ = seed(tmp_path, "--hostname", "other", "--force")
    assert forced.returncode == 0, forced.stderr
    assert b"local-hostname: other" in out.read_bytes()
    assert leftovers(tmp_path) == []


@needs_7zz
def test_windows_rtc_fix_adds_a_reg_file_a_script_and_a_readme(tmp_path: Path) -> None:
    done, out = seed(tmp_path, "--windows-rtc-fix")
    assert done.returncode == 0, done.stderr
    files = extract_7zz(out, tmp_path / "x")
    assert sorted(files) == [
        "README.txt", "RealTimeIsUniversal.ps1", "RealTimeIsUniversal.reg", "meta-data", "user-data",
    ]  # fmt: skip
    reg = files["RealTimeIsUniversal.reg"]
    assert reg.startswith(b"\xff\xfe")  # UTF-16LE with a byte-order mark, as regedit writes it
    text = reg[2:].decode("utf-16-le")
    assert "\n" not in text.replace("\r\n", "")
    assert text.split("\r\n") == [
        "Windows Registry Editor Version 5.00",
        "",
        r"[HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Control\TimeZoneInformation]",
        '"RealTimeIsUniversal"=dword:00000001',
        "",
        "",
    ]
    script = files["RealTimeIsUniversal.ps1"].decode("ascii")
    assert "\n" not in script.replace("\r\n", "") and script.endswith("\r\n")
    assert r"'HKLM:\SYSTEM\CurrentControlSet\Control\TimeZoneInformation'" in script
    assert "-Name 'RealTimeIsUniversal' -PropertyType DWord -Value 1" in script
    assert "RealTimeIsUniversal" in files["README.txt"].decode("ascii")


def test_default_user_data_prints_its_marker_and_passes_the_checks(tmp_path: Path) -> None:
    data = default_user_data("IMAGEPACK-BOOT-1:30")
    config = yaml.safe_load(data)
    assert config["final_message"] == "IMAGEPACK-BOOT-1:30"  # a string, not YAML 1.1's sexagesimal number
    assert any("IMAGEPACK-BOOT-1:30" in " ".join(step) for step in config["runcmd"])
    done = make_seed_iso(tmp_path / "seed.iso", user_data=data)
    assert done.user_data_type == "text/cloud-config"
    with pytest.raises(ValueError, match="boot marker"):
        default_user_data("no spaces; or quotes'")


# --- what is refused ----------------------------------------------------------------------------------------------


def test_a_cloud_config_that_is_not_yaml_is_refused_with_its_line(tmp_path: Path) -> None:
    done, out = seed(tmp_path, "--json", user_data=b"#cloud-config\nusers:\n  - name: opc\n   sudo: x\n")
    assert done.returncode == 1
    line = one_error_line(done)
    assert "cloud.yaml: line 4, column 4:" in line and "valid YAML" in line
    assert json.loads(done.stdout)["error"]["code"] == "seed.invalid-yaml"
    assert not out.exists() and leftovers(tmp_path) == []


ACCEPTED = {
    "script": (b"#!/bin/sh\necho hi\n", "text/x-shellscript"),
    "indented-any-case": (b"\n  #Cloud-Config\nruncmd: [date]\n", "text/cloud-config"),
    "include": (b"#include\nhttps://example.com/cloud.yaml\n", "text/x-include-url"),
    "include-once": (b"#include-once\nhttps://example.com/cloud.yaml\n", "text/x-include-once-url"),
    "boothook": (b"#cloud-boothook\n#!/bin/sh\necho early\n", "text/cloud-boothook"),
    "part-handler": (b"#part-handler\ndef list_types(): return []\n", "text/part-handler"),
    "archive": (b"#cloud-config-archive\n- type: text/cloud-config\n  content: '{}'\n", "text/cloud-config-archive"),
    "jinja": (b"## template: jinja\n#cloud-config\nruncmd: ['echo {{ v1.instance_id }}']\n", "text/jinja2"),
    "mime": (
        b'Content-Type: multipart/mixed; boundary="XX"\nMIME-Version: 1.0\n\n--XX\n'
        b"Content-Type: text/cloud-config\n\n#cloud-config\n{}\n--XX--\n",
        "multipart/mixed",
    ),
    "empty": (b"", "empty"),
}


@pytest.mark.parametrize("kind", ACCEPTED)
def test_user_data_with_a_header_cloud_init_knows_is_accepted(kind: str, tmp_path: Path) -> None:
    data, content_type = ACCEPTED[kind]
    out = tmp_path / "seed.iso"
    assert make_seed_iso(out, user_data=data).user_data_type == content_type
    assert read_iso(out).nocloud_seed


@pytest.mark.parametrize(
    ("data", "code"),
    [(b"#upstart-job\nexec true\n", "seed.upstart-job"), (b"#ps1_sysnative\nGet-Date\n", "seed.cloudbase-init-only")],
    ids=["upstart", "cloudbase-init"],
)
def test_user_data_only_an_old_cloud_init_or_cloudbase_init_runs_is_written_with_a_warning(
    data: bytes, code: str, tmp_path: Path
) -> None:
    done = make_seed_iso(tmp_path / "seed.iso", user_data=data)
    assert [w.code for w in done.warnings] == [code]
    assert done.to_json()["problems"][0]["severity"] == "warning"


REFUSED = {
    "no-header": (b"users: []\n", "add '#cloud-config' as its first line"),
    "plain-text": (b"hello\n", "no header cloud-init knows"),
    "byte-order-mark": ("\ufeff#cloud-config\n{}\n".encode(), "byte-order mark"),
    "not-utf8": (b"#cloud-config\nname: caf\xe9\n", "line 2: is not UTF-8 text (byte 23)"),
    "cloud-config-list": (
        b"#cloud-config\n- a\n- b\n",
        "is a YAML list, but a #cloud-config user-data must be a mapping",
    ),
    "mime-without-version": (b"Content-Type: multipart/mixed; boundary=X\n\n--X--\n", "no MIME-Version header"),
    "jinja-without-header": (b"## template: jinja\nruncmd: []\n", "line 2: a jinja template must keep"),
    "damaged-gzip": (gzip.compress(CLOUD_CONFIG)[:-12], "gzip stream is cut short"),
    "gzip-of-yaml": (gzip.compress(b"#cloud-config\na: [\n"), "line 3, column 1"),
}


@pytest.mark.parametrize("kind", REFUSED)
def test_user_data_cloud_init_would_ignore_or_fail_on_is_refused(kind: str, tmp_path: Path) -> None:
    """In the library (the command line prints the same message: the YAML test above)."""
    data, words = REFUSED[kind]
    source = tmp_path / "cloud.yaml"
    source.write_bytes(data)
    out = tmp_path / "seed.iso"
    with pytest.raises(InputError) as refused:
        make_seed_iso(out, user_data=source)
    assert refused.value.message.startswith(str(source)) and words in refused.value.message
    assert refused.value.code.startswith("seed.")
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("option", "content", "words"),
    [
        ("--meta-data", b"instance-id: [unclosed\n", "line 2, column 1:"),
        ("--meta-data", b"- a list\n", "meta-data must be a mapping"),
        ("--network-config", b"ethernets: {}\n", "has no version"),
        ("--network-config", b"network:\n  version: 3\n", "has version 3"),
        ("--vendor-data", b"users: []\n", "ignore this vendor-data"),
    ],
    ids=["meta-yaml", "meta-list", "net-no-version", "net-version-3", "vendor-no-header"],
)
def test_a_bad_meta_data_network_config_or_vendor_data_is_refused(
    option: str, content: bytes, words: str, tmp_path: Path
) -> None:
    other = tmp_path / "other.yaml"
    other.write_bytes(content)
    done, out = seed(tmp_path, option, str(other))
    assert done.returncode == 1
    line = one_error_line(done)
    assert str(other) in line and words in line
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("option", [["--instance-id", "i-1"], ["--hostname", "web1"]], ids=["instance-id", "hostname"])
def test_instance_id_or_hostname_with_meta_data_is_a_usage_error(option: list[str], tmp_path: Path) -> None:
    meta = tmp_path / "meta-data"
    meta.write_bytes(b"instance-id: i-0\n")
    done, out = seed(tmp_path, "--meta-data", str(meta), *option, "--json")
    assert done.returncode == EXIT_USAGE
    assert f"{option[0]} with --meta-data" in one_error_line(done)
    assert json.loads(done.stdout)["error"]["code"] == "invalid-value"
    assert not out.exists()


def test_a_hostname_that_is_not_one_is_a_usage_error(tmp_path: Path) -> None:
    done, out = seed(tmp_path, "--hostname", "web_1.example")
    assert done.returncode == EXIT_USAGE
    assert "not a host name" in one_error_line(done)
    assert not out.exists()


# --- failures midway ----------------------------------------------------------------------------------------------


def test_an_interruption_while_writing_leaves_nothing(tmp_path: Path) -> None:
    """What the signal handler raises, raised from the middle of the write: the temporary ISO goes too."""
    seen: list[float] = []

    def interrupt(fraction: float) -> None:
        seen.append(fraction)
        raise Interrupted(signal.SIGTERM)

    target = tmp_path / "seed.iso"
    with pytest.raises(Interrupted):
        make_seed_iso(
            target, user_data=CLOUD_CONFIG, vendor_data=b"#cloud-config\n" + b"#" * 200_000, on_progress=interrupt
        )
    assert seen and not target.exists() and leftovers(tmp_path) == []


def test_sigterm_while_reading_the_user_data_exits_143_and_writes_nothing(tmp_path: Path) -> None:
    """A pipe as user-data (`<(generate)`) is read like a file; a SIGTERM while it waits ends it cleanly."""
    fifo = tmp_path / "user-data.fifo"
    os.mkfifo(fifo)
    out = tmp_path / "seed.iso"
    writer: list[int] = []

    def reading() -> bool:
        # A non-blocking open for writing succeeds once imagepack has the pipe open; it then waits for data.
        try:
            writer.append(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            return False
        return True

    try:
        status, stderr = interrupt_when(["seed-iso", str(out), "--user-data", str(fifo)], ready=reading)
    finally:
        for fd in writer:
            os.close(fd)
    assert status == EXIT_SIGTERM
    assert "Traceback" not in stderr and "interrupted" in stderr
    assert not out.exists() and leftovers(tmp_path) == []


def test_a_full_disk_leaves_nothing(tmp_path: Path, mount_tmpfs: object) -> None:
    small = mount_tmpfs("64k")  # type: ignore[operator]
    target = small / "seed.iso"
    with pytest.raises(OutputError, match="nothing was written"):
        make_seed_iso(target, user_data=CLOUD_CONFIG, vendor_data=b"#cloud-config\n" + b"#" * 500_000)
    assert list(small.iterdir()) == []


# --- info of an ISO -----------------------------------------------------------------------------------------------


def test_info_lists_a_seeds_label_names_and_sizes(tmp_path: Path) -> None:
    done, out = seed(tmp_path, "--windows-rtc-fix")
    assert done.returncode == 0, done.stderr
    text = run_cli("info", str(out))
    assert text.returncode == 0, text.stderr
    assert "label: cidata" in text.stdout and "cloud-init NoCloud seed: yes" in text.stdout
    assert f"user-data: {len(CLOUD_CONFIG)} bytes  [USER_DAT.;1]" in text.stdout
    listed = json.loads(run_cli("info", "--json", str(out)).stdout)
    assert (listed["format"], listed["label"], listed["rock_ridge"], listed["joliet"]) == (
        "iso9660",
        "cidata",
        True,
        True,
    )
    by_name = {f["name"]: f for f in listed["files"]}
    assert by_name["user-data"] == {
        "name": "user-data", "size": len(CLOUD_CONFIG), "iso_name": "USER_DAT.;1",
        "rock_ridge_name": "user-data", "joliet_name": "user-data",
    }  # fmt: skip
    assert sorted(by_name) == [
        "README.txt",
        "RealTimeIsUniversal.ps1",
        "RealTimeIsUniversal.reg",
        "meta-data",
        "user-data",
    ]


@pytest.mark.skipif(shutil.which("genisoimage") is None, reason="genisoimage is not installed")
@pytest.mark.parametrize(
    ("extensions", "names", "seed_ok"),
    [(["-J", "-R"], ["meta-data", "user-data"], True), ([], ["META_DAT", "USER_DAT"], False)],
    ids=["rock-ridge-and-joliet", "plain-iso9660"],
)
def test_info_reads_an_iso_genisoimage_wrote(
    extensions: list[str], names: list[str], seed_ok: bool, tmp_path: Path
) -> None:
    """cloud-localds's way (genisoimage -J -R) is a seed; without the extensions cloud-init sees 8.3 names only."""
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "user-data").write_bytes(CLOUD_CONFIG)
    (folder / "meta-data").write_bytes(b"")  # empty files share extent 0: matched by name
    out = tmp_path / "their.iso"
    tool("genisoimage", "-quiet", "-output", str(out), "-V", "cidata", *extensions, str(folder))
    listed = json.loads(run_cli("info", "--json", str(out)).stdout)
    assert [f["name"] for f in listed["files"]] == names
    assert [f["size"] for f in listed["files"]] == [0, len(CLOUD_CONFIG)]
    assert listed["nocloud_seed"] is seed_ok
    if not seed_ok:
        assert [p["code"] for p in listed["problems"]] == ["seed.missing-file", "seed.missing-file"]


def test_other_verbs_still_refuse_a_seed_as_a_disk(tmp_path: Path) -> None:
    done, out = seed(tmp_path)
    assert done.returncode == 0, done.stderr
    refused = run_cli("convert", str(out), str(tmp_path / "disk.qcow2"))
    assert refused.returncode == 1
    assert "an ISO 9660 image, not a disk image" in one_error_line(refused)


@pytest.mark.parametrize("cut", [36_000, 40_960], ids=["inside-the-descriptors", "inside-the-directory"])
def test_info_of_a_cut_short_iso_is_one_line(cut: int, tmp_path: Path) -> None:
    out = tmp_path / "seed.iso"
    make_seed_iso(out, user_data=CLOUD_CONFIG)
    damaged = tmp_path / "damaged.iso"
    damaged.write_bytes(out.read_bytes()[:cut])
    done = run_cli("info", str(damaged))
    assert done.returncode == 1
    assert "not a readable ISO 9660 image" in one_error_line(done)
