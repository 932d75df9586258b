"""OVA inputs: VMs exported by VMware's ovftool and by VirtualBox (descriptors from fixtures/ovf/), tarred by GNU tar
and bsdtar around stream-optimized VMDKs that qemu-img writes, read through every verb; and the OVAs that must be
refused, with nothing left behind."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path
from string import Template

import pytest

from imagepack.writers.sample import write_sample_disk
from tests.conftest import FIXTURES, file_digest, leftovers, qemu_img, run_cli
from tests.readers import qemu_compare, read_guest_disk

MIB = 1024**2
SIZE = 8 * MIB
SIZE2 = 4 * MIB


def stream_vmdk(raw: Path, out: Path) -> Path:
    qemu_img("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", str(raw), str(out))
    return out


def descriptor(template: str, **values: object) -> str:
    return Template((FIXTURES / "ovf" / template).read_text()).substitute({k: str(v) for k, v in values.items()})


def tar(tool: str, out: Path, folder: Path, names: list[str]) -> Path:
    """An OVA as the tools write one: the members in the order given (descriptor first)."""
    if tool == "gnu":
        args = ["tar", "--format=ustar", "-cf", str(out), "-C", str(folder), *names]
    else:
        args = ["bsdtar", "--format=ustar", "-cf", str(out), "-C", str(folder), *names]
    subprocess.run(args, check=True, capture_output=True)
    return out


def manifest(folder: Path, names: list[str], *, algorithm: str = "sha256") -> str:
    lines = []
    for name in names:
        digest = hashlib.new(algorithm, (folder / name).read_bytes()).hexdigest()
        lines.append(f"{algorithm.upper()}({name})= {digest}\n")
    return "".join(lines)


@pytest.fixture
def raw_disk(tmp_path: Path) -> Path:
    path = tmp_path / "guest.raw"
    write_sample_disk(path, SIZE)
    return path


def vmware_ova(
    tmp_path: Path,
    raw_disk: Path,
    *,
    tool: str = "gnu",
    firmware: str = "efi",
    os_type: str = "oracleLinux8_64Guest",
    capacity_mib: int = SIZE // MIB,
    with_manifest: bool = True,
    name: str = "vm.ova",
) -> Path:
    folder = tmp_path / f"parts-{name}"
    folder.mkdir()
    vmdk = stream_vmdk(raw_disk, folder / "vm-disk1.vmdk")
    text = descriptor(
        "vmware.ovf",
        file=vmdk.name,
        size=vmdk.stat().st_size,
        capacity_mib=capacity_mib,
        os_id=109,
        os_type=os_type,
        firmware=firmware,
    )
    (folder / "vm.ovf").write_text(text)
    names = ["vm.ovf", vmdk.name]
    if with_manifest:
        (folder / "vm.mf").write_text(manifest(folder, names))
        names.append("vm.mf")
    return tar(tool, tmp_path / name, folder, names)


def virtualbox_ova(tmp_path: Path, raw_disk: Path, *, tool: str = "bsdtar", firmware: str = "EFI") -> Path:
    folder = tmp_path / "parts-vbox"
    folder.mkdir()
    vmdk = stream_vmdk(raw_disk, folder / "vm-disk001.vmdk")
    text = descriptor("virtualbox.ovf", file=vmdk.name, capacity=SIZE, os_id=94, os_type="Ubuntu_64", firmware=firmware)
    (folder / "vm.ovf").write_text(text)
    (folder / "vm.mf").write_text(manifest(folder, ["vm.ovf", vmdk.name], algorithm="sha1"))
    return tar(tool, tmp_path / "vbox.ova", folder, ["vm.ovf", vmdk.name, "vm.mf"])


def info_json(path: Path, *extra: str) -> dict[str, object]:
    result = run_cli("info", str(path), "--json", *extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


# --- reading -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tool", ["gnu", "bsdtar"])
def test_a_vmware_ova_converts_to_the_same_guest_disk(tmp_path: Path, raw_disk: Path, tool: str) -> None:
    ova = vmware_ova(tmp_path, raw_disk, tool=tool)
    before = file_digest(ova)
    out = tmp_path / "out.qcow2"
    result = run_cli("convert", str(ova), str(out))
    assert result.returncode == 0, result.stderr
    assert qemu_compare(raw_disk, "raw", out, "qcow2").returncode == 0
    assert read_guest_disk(out, "qcow2") == read_guest_disk(raw_disk, "raw")
    assert file_digest(ova) == before


def test_a_virtualbox_ova_converts_to_the_same_guest_disk(tmp_path: Path, raw_disk: Path) -> None:
    ova = virtualbox_ova(tmp_path, raw_disk)
    out = tmp_path / "out.vmdk"
    result = run_cli("convert", str(ova), str(out))
    assert result.returncode == 0, result.stderr
    assert qemu_compare(raw_disk, "raw", out, "vmdk").returncode == 0
    assert read_guest_disk(out, "vmdk") == read_guest_disk(raw_disk, "raw")


def test_a_plain_ovas_disk_is_read_in_place_at_its_tar_offset(tmp_path: Path, raw_disk: Path) -> None:
    ova = vmware_ova(tmp_path, raw_disk)
    with tarfile.open(ova) as archive:
        offset = archive.getmember("vm-disk1.vmdk").offset_data
    result = run_cli("convert", str(ova), str(tmp_path / "out.qcow2"), "--verbose")
    assert result.returncode == 0, result.stderr
    # qemu-img reads the member in place: the raw driver at its offset, in the OVA opened once (a descriptor).
    assert f'"driver":"vmdk","backing":null,"file":{{"driver":"raw","offset":{offset},' in result.stderr


def test_a_gzip_wrapped_ova_is_extracted_and_converts_the_same(tmp_path: Path, raw_disk: Path) -> None:
    plain = vmware_ova(tmp_path, raw_disk)
    wrapped = tmp_path / "wrapped.ova"
    wrapped.write_bytes(gzip.compress(plain.read_bytes()))
    out = tmp_path / "out.qcow2"
    result = run_cli("convert", str(wrapped), str(out))
    assert result.returncode == 0, result.stderr
    assert read_guest_disk(out, "qcow2") == read_guest_disk(raw_disk, "raw")
    assert info_json(wrapped)["manifest"] == {"verified": ["vm.ovf", "vm-disk1.vmdk"]}
    assert leftovers(tmp_path) == []


def test_info_lists_the_disks_and_the_verified_manifest(tmp_path: Path, raw_disk: Path) -> None:
    found = info_json(vmware_ova(tmp_path, raw_disk))
    assert found["format"] == "ova"
    assert found["virtual_size"] == SIZE
    assert found["disks"] == [{"index": 1, "file": "vm-disk1.vmdk", "capacity": SIZE, "controller": "lsilogic"}]
    assert found["manifest"] == {"verified": ["vm.ovf", "vm-disk1.vmdk"]}
    assert found["firmware"] == "UEFI_64"
    assert found["os_type"] == "oracleLinux8_64Guest"


def test_info_of_a_virtualbox_ova_names_its_sata_controller_and_firmware(tmp_path: Path, raw_disk: Path) -> None:
    found = info_json(virtualbox_ova(tmp_path, raw_disk, firmware="BIOS"))
    assert found["disks"] == [{"index": 1, "file": "vm-disk001.vmdk", "capacity": SIZE, "controller": "ahci"}]
    assert found["firmware"] == "BIOS"
    assert found["os_type"] == "Ubuntu_64"


def metadata_of(archive: Path) -> dict[str, object]:
    result = run_cli("meta", "show", str(archive), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_pack_takes_firmware_and_os_from_the_vmware_descriptor(tmp_path: Path, raw_disk: Path) -> None:
    ova = vmware_ova(tmp_path, raw_disk, os_type="oracleLinux8_64Guest")
    out = tmp_path / "vm.oci"
    result = run_cli("pack", str(ova), str(out), "--json")
    assert result.returncode == 0, result.stderr
    meta = metadata_of(out)
    assert (meta["operatingSystem"], meta["operatingSystemVersion"]) == ("Oracle Linux", "8")
    assert meta["externalLaunchOptions"]["firmware"] == "UEFI_64"  # type: ignore[index]


def test_the_descriptors_firmware_wins_over_the_partition_table_with_a_warning(tmp_path: Path, raw_disk: Path) -> None:
    ova = vmware_ova(tmp_path, raw_disk, firmware="bios")  # the sample disk has an EFI system partition
    out = tmp_path / "vm.oci"
    result = run_cli("pack", str(ova), str(out), "--json")
    assert result.returncode == 0, result.stderr
    assert metadata_of(out)["externalLaunchOptions"]["firmware"] == "BIOS"  # type: ignore[index]
    codes = [p["code"] for p in json.loads(result.stdout)["problems"]]
    assert "metadata.firmware-disagrees" in codes


def test_options_win_over_the_descriptor(tmp_path: Path, raw_disk: Path) -> None:
    ova = vmware_ova(tmp_path, raw_disk, firmware="bios")
    out = tmp_path / "vm.oci"
    result = run_cli("pack", str(ova), str(out), "--firmware", "UEFI_64", "--os", "Ubuntu", "--os-version", "22.04")
    assert result.returncode == 0, result.stderr
    meta = metadata_of(out)
    assert meta["externalLaunchOptions"]["firmware"] == "UEFI_64"  # type: ignore[index]
    assert (meta["operatingSystem"], meta["operatingSystemVersion"]) == ("Ubuntu", "22.04")


def test_a_virtualbox_guest_os_names_the_system_but_not_its_version(tmp_path: Path, raw_disk: Path) -> None:
    ova = virtualbox_ova(tmp_path, raw_disk, firmware="EFI")
    out = tmp_path / "vm.oci"
    result = run_cli("pack", str(ova), str(out), "--os-version", "22.04")
    assert result.returncode == 0, result.stderr
    meta = metadata_of(out)
    assert (meta["operatingSystem"], meta["operatingSystemVersion"]) == ("Ubuntu", "22.04")
    missing = run_cli("pack", str(ova), str(tmp_path / "other.oci"))
    assert missing.returncode != 0
    assert "operating system and its version" in missing.stderr


def test_verify_reports_the_ova_disk_and_its_verified_manifest(tmp_path: Path, raw_disk: Path) -> None:
    result = run_cli("verify", str(vmware_ova(tmp_path, raw_disk)), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["format"] == "ova"
    assert report["facts"]["disk_format"] == "vmdk"
    assert report["facts"]["manifest_verified"] == ["vm.ovf", "vm-disk1.vmdk"]


# --- several disks -------------------------------------------------------------------------------------------------


@pytest.fixture
def two_disk_ova(tmp_path: Path, raw_disk: Path) -> tuple[Path, Path]:
    """An ovftool OVA whose second disk (a data disk of SIZE2) differs from the first."""
    folder = tmp_path / "parts-two"
    folder.mkdir()
    second_raw = tmp_path / "data.raw"
    write_sample_disk(second_raw, SIZE2, seed=11)
    first = stream_vmdk(raw_disk, folder / "vm-disk1.vmdk")
    second = stream_vmdk(second_raw, folder / "vm-disk2.vmdk")
    text = descriptor(
        "vmware-two-disks.ovf",
        file=first.name,
        size=first.stat().st_size,
        capacity_mib=SIZE // MIB,
        file2=second.name,
        size2=second.stat().st_size,
        capacity2_mib=SIZE2 // MIB,
        os_id=109,
        os_type="oracleLinux8_64Guest",
        firmware="efi",
    )
    (folder / "vm.ovf").write_text(text)
    return tar("gnu", tmp_path / "two.ova", folder, ["vm.ovf", first.name, second.name]), second_raw


def test_disk_2_of_a_two_disk_ova_converts_the_second_disk(tmp_path: Path, two_disk_ova: tuple[Path, Path]) -> None:
    ova, second_raw = two_disk_ova
    out = tmp_path / "second.qcow2"
    result = run_cli("convert", str(ova), str(out), "--disk", "2")
    assert result.returncode == 0, result.stderr
    assert qemu_compare(second_raw, "raw", out, "qcow2").returncode == 0
    assert read_guest_disk(out, "qcow2") == read_guest_disk(second_raw, "raw")


def test_a_two_disk_ova_without_disk_is_refused_naming_them(tmp_path: Path, two_disk_ova: tuple[Path, Path]) -> None:
    ova, _ = two_disk_ova
    result = run_cli("convert", str(ova), str(tmp_path / "out.qcow2"))
    assert result.returncode == 2
    assert "1 = vm-disk1.vmdk, 2 = vm-disk2.vmdk" in result.stderr
    assert "--disk" in result.stderr
    assert not (tmp_path / "out.qcow2").exists()
    assert leftovers(tmp_path) == []


def test_a_disk_out_of_range_is_refused(tmp_path: Path, two_disk_ova: tuple[Path, Path]) -> None:
    ova, _ = two_disk_ova
    result = run_cli("convert", str(ova), str(tmp_path / "out.qcow2"), "--disk", "3")
    assert result.returncode == 2
    assert "disk 3 is out of range: " in result.stderr
    assert not (tmp_path / "out.qcow2").exists()


def test_info_of_a_two_disk_ova_lists_both_with_their_controllers(two_disk_ova: tuple[Path, Path]) -> None:
    found = info_json(two_disk_ova[0])
    assert [(d["file"], d["capacity"], d["controller"]) for d in found["disks"]] == [  # type: ignore[attr-defined]
        ("vm-disk1.vmdk", SIZE, "lsilogic"),
        ("vm-disk2.vmdk", SIZE2, "ide"),
    ]
    assert found["disk"] is None
    assert info_json(two_disk_ova[0], "--disk", "2")["virtual_size"] == SIZE2


def test_disk_is_refused_for_an_input_that_is_not_an_ova(tmp_path: Path, raw_disk: Path) -> None:
    result = run_cli("convert", str(raw_disk), str(tmp_path / "out.qcow2"), "--disk", "1")
    assert result.returncode == 2
    assert "not an OVA" in result.stderr


# --- refused -------------------------------------------------------------------------------------------------------

BOMB = """<?xml version="1.0"?>
<!DOCTYPE Envelope [
  <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
  <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
  <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
  <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
]>
"""
EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE Envelope [ <!ENTITY secret SYSTEM "file:///etc/passwd"> ]>
"""


def ova_parts(tmp_path: Path, raw_disk: Path, *, capacity_mib: int = SIZE // MIB) -> tuple[str, bytes]:
    """The descriptor's text and the disk's bytes of a good one-disk ovftool OVA, to be tarred by hand."""
    folder = tmp_path / "parts-hostile"
    folder.mkdir()
    vmdk = stream_vmdk(raw_disk, folder / "vm-disk1.vmdk")
    text = descriptor(
        "vmware.ovf",
        file=vmdk.name,
        size=vmdk.stat().st_size,
        capacity_mib=capacity_mib,
        os_id=109,
        os_type="oracleLinux8_64Guest",
        firmware="efi",
    )
    return text, vmdk.read_bytes()


def python_tar(path: Path, entries: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as archive:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                archive.addfile(entry)
            else:
                name, data = entry
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return path


def link(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


def hostile(kind: str, tmp_path: Path, raw_disk: Path) -> Path:
    text, disk = ova_parts(tmp_path, raw_disk, capacity_mib=SIZE // MIB * (2 if kind == "capacity" else 1))
    out = tmp_path / f"{kind}.ova"
    body = text.split("\n", 1)[1]  # without the XML declaration, for a DOCTYPE to go first
    if kind == "entity-bomb":
        return python_tar(out, [("vm.ovf", (BOMB + body.replace("<Info>A virtual", "<Info>&d;A virtual")).encode())])
    if kind == "external-entity":
        ovf = EXTERNAL + body.replace("<Name>vm</Name>", "<Name>&secret;</Name>")
        return python_tar(out, [("vm.ovf", ovf.encode()), ("vm-disk1.vmdk", disk)])
    if kind == "dotdot":
        return python_tar(out, [("vm.ovf", text.encode()), ("../vm-disk1.vmdk", disk)])
    if kind == "symlink":
        return python_tar(out, [("vm.ovf", text.encode()), link("vm-disk1.vmdk", "/etc/passwd")])
    if kind == "duplicate":
        return python_tar(out, [("vm.ovf", text.encode()), ("vm-disk1.vmdk", disk), ("./VM-disk1.vmdk", disk)])
    if kind == "bad-manifest":
        wrong = hashlib.sha256(disk + b"x").hexdigest()
        good = hashlib.sha256(text.encode()).hexdigest()
        mf = f"SHA256(vm.ovf)= {good}\nSHA256(vm-disk1.vmdk)= {wrong}\n".encode()
        return python_tar(out, [("vm.ovf", text.encode()), ("vm-disk1.vmdk", disk), ("vm.mf", mf)])
    if kind == "file-size":
        return python_tar(out, [("vm.ovf", text.encode()), ("vm-disk1.vmdk", disk + bytes(512))])
    assert kind == "capacity"
    return python_tar(out, [("vm.ovf", text.encode()), ("vm-disk1.vmdk", disk)])


HOSTILE = {
    "entity-bomb": "DTD",
    "external-entity": "DTD",
    "dotdot": "not a plain file name",
    "symlink": "is a link",
    "duplicate": "appears twice",
    "bad-manifest": "does not match",
    "capacity": "8388608",
    "file-size": "the archive member holds",
}


@pytest.mark.parametrize("verb", ["convert", "info"])
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_hostile_ova_is_refused_with_nothing_left(tmp_path: Path, raw_disk: Path, kind: str, verb: str) -> None:
    ova = hostile(kind, tmp_path, raw_disk)
    before = file_digest(ova)
    out = tmp_path / "out.qcow2"
    result = run_cli(verb, str(ova), str(out)) if verb == "convert" else run_cli(verb, str(ova))
    assert result.returncode == 1, result.stdout + result.stderr
    assert HOSTILE[kind] in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert not out.exists()
    assert leftovers(tmp_path) == []
    assert file_digest(ova) == before


# --- GCE image tarballs --------------------------------------------------------------------------------------------


def gce_tarball(tmp_path: Path, raw_disk: Path, *, sparse: bool, gzipped: bool = True) -> Path:
    """As GCE's import wants it: disk.raw alone, GNU tar's old format, holes recorded with -S."""
    folder = tmp_path / "gce"
    folder.mkdir()
    (folder / "disk.raw").write_bytes(b"")
    subprocess.run(["cp", "--sparse=always", str(raw_disk), str(folder / "disk.raw")], check=True)
    out = tmp_path / ("disk.tar.gz" if gzipped else "disk.tar")
    flags = "-c" + ("S" if sparse else "") + ("z" if gzipped else "") + "f"
    subprocess.run(["tar", "--format=oldgnu", flags, str(out), "-C", str(folder), "disk.raw"], check=True)
    return out


@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
def test_a_gce_tarball_converts_to_the_same_disk(tmp_path: Path, raw_disk: Path, sparse: bool) -> None:
    tarball = gce_tarball(tmp_path, raw_disk, sparse=sparse)
    out = tmp_path / "out.qcow2"
    result = run_cli("convert", str(tarball), str(out))
    assert result.returncode == 0, result.stderr
    assert qemu_compare(raw_disk, "raw", out, "qcow2").returncode == 0
    assert read_guest_disk(out, "qcow2") == read_guest_disk(raw_disk, "raw")
    assert leftovers(tmp_path) == []


def test_a_plain_gce_tar_is_read_in_place(tmp_path: Path, raw_disk: Path) -> None:
    tarball = gce_tarball(tmp_path, raw_disk, sparse=False, gzipped=False)
    found = info_json(tarball)
    assert found["format"] == "raw"
    assert found["virtual_size"] == SIZE
    assert found["details"]["container"] == "gce-tarball"  # type: ignore[index]


def test_a_gce_tarball_with_another_member_is_refused(tmp_path: Path, raw_disk: Path) -> None:
    out = python_tar(tmp_path / "two.tar", [("disk.raw", raw_disk.read_bytes()), ("extra.txt", b"x")])
    result = run_cli("convert", str(out), str(tmp_path / "out.qcow2"))
    assert result.returncode == 1
    assert "holds disk.raw alone" in result.stderr
    assert not (tmp_path / "out.qcow2").exists()
