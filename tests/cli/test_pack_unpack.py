"""The .oci archive: pack from every format in one pass, read it back with independent tar readers, take it
apart again, edit its metadata in place, and read the archives other tools write."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from imagepack.oci.archive import member_header
from tests.conftest import ODD_SIZE, SPEC_METADATA, file_digest, leftovers, qemu_img, run_cli
from tests.readers import read_guest_disk, read_vmdk_extent_names

PACK_ARGS = ("--os", "Oracle Linux", "--os-version", "8")


def pack(source: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli("pack", str(source), str(out), *PACK_ARGS, *extra)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tar_members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return tar.getmembers()


def extract_with(tool: str, archive: Path, into: Path) -> None:
    into.mkdir()
    cmd = {"gnu": ["tar", "-xf"], "bsd": ["bsdtar", "-xf"]}[tool]
    subprocess.run([*cmd, str(archive), "-C", str(into)], check=True)


@pytest.mark.parametrize("fmt", ["raw", "qcow2", "vmdk", "vdi", "vhd"])
def test_pack_from_each_format_holds_the_same_disk(
    fmt: str, make_image: Callable[..., Path], sample_raw: Path, tmp_path: Path
) -> None:
    # force_size keeps the vhd's size exact, so the guest disk hashes the same as the raw one.
    source = sample_raw if fmt == "raw" else make_image(fmt, options="force_size=on" if fmt == "vhd" else None)
    before = file_digest(source)
    out = tmp_path / "disk.oci"
    done = pack(source, out)
    assert done.returncode == 0, done.stderr
    assert file_digest(source) == before
    members = tar_members(out)
    assert [m.name for m in members] == ["image_metadata.json", "output.QCOW2"]
    assert all(m.isreg() and m.mode == 0o644 and m.uid == 0 and m.gid == 0 for m in members)
    assert members[1].offset_data % 4096 == 0
    # Independent readers: GNU tar and bsdtar extract it, dissect reads the qcow2 they extract.
    for tool in ("gnu", "bsd"):
        extract_with(tool, out, tmp_path / tool)
        disk = tmp_path / tool / "output.QCOW2"
        qemu_img("compare", "-f", "raw", "-F", "qcow2", str(sample_raw), str(disk))
        assert read_guest_disk(disk, "qcow2").sha256 == sha256(sample_raw.read_bytes())
        metadata = json.loads((tmp_path / tool / "image_metadata.json").read_bytes())
        assert metadata["version"] == 2
        assert metadata["externalLaunchOptions"]["firmware"] == "UEFI_64"  # the sample disk has an ESP
        assert metadata["operatingSystem"] == "Oracle Linux"
    assert leftovers(tmp_path) == []


def test_pack_from_qcow2_copies_the_bytes_unchanged(make_image: Callable[..., Path], tmp_path: Path) -> None:
    source = make_image("qcow2")
    out = tmp_path / "disk.oci"
    done = run_cli("pack", str(source), str(out), *PACK_ARGS, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["copied"] is True
    with tarfile.open(out) as tar:
        member = tar.extractfile("output.QCOW2")
        assert member is not None
        assert member.read() == source.read_bytes()


def test_pack_compressed_writes_compressed_clusters_that_still_compare(sample_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "disk.oci"
    assert pack(sample_raw, out, "--compress").returncode == 0
    info = json.loads(run_cli("info", "--json", str(out)).stdout)
    disk = info["members"][1]
    opts = (
        f"driver=qcow2,file.driver=raw,file.offset={disk['data_offset']},file.size={disk['size']},"
        f"file.file.driver=file,file.file.filename={out}"
    )
    raw_opts = f"driver=raw,file.driver=file,file.filename={sample_raw}"
    qemu_img("compare", "--image-opts", raw_opts, opts)


def test_unpack_writes_disk_and_metadata_and_converts_on_request(sample_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "disk.oci"
    assert pack(sample_raw, out).returncode == 0
    before = file_digest(out)
    done = run_cli("unpack", str(out), "-d", str(tmp_path / "plain"))
    assert done.returncode == 0, done.stderr
    qemu_img("compare", "-f", "raw", "-F", "qcow2", str(sample_raw), str(tmp_path / "plain" / "disk.qcow2"))
    assert json.loads((tmp_path / "plain" / "disk.json").read_bytes())["version"] == 2
    done = run_cli("unpack", str(out), "-d", str(tmp_path / "as-vmdk"), "--to", "vmdk")
    assert done.returncode == 0, done.stderr
    vmdk = tmp_path / "as-vmdk" / "disk.vmdk"
    assert read_guest_disk(vmdk, "vmdk").sha256 == sha256(sample_raw.read_bytes())
    assert file_digest(out) == before


def test_two_archives_unpack_into_one_directory_under_their_own_names(sample_raw: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "web.oci", tmp_path / "db.oci.gz"
    assert pack(sample_raw, first).returncode == 0
    with open(first, "rb") as plain, gzip.open(second, "wb") as wrapped:
        wrapped.write(plain.read())
    out = tmp_path / "out"
    for archive in (first, second):
        done = run_cli("unpack", str(archive), "-d", str(out), "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["target"] == str(out / f"{archive.name.split('.')[0]}.qcow2")
    assert sorted(p.name for p in out.iterdir()) == ["db.json", "db.qcow2", "web.json", "web.qcow2"]


def test_unpack_name_picks_the_output_names_and_an_existing_one_needs_force(sample_raw: Path, tmp_path: Path) -> None:
    archive = tmp_path / "disk.oci"
    assert pack(sample_raw, archive).returncode == 0
    out = tmp_path / "out"
    assert run_cli("unpack", str(archive), "-d", str(out), "--name", "boot").returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["boot.json", "boot.qcow2"]
    before = file_digest(out / "boot.qcow2")
    again = run_cli("unpack", str(archive), "-d", str(out), "--name", "boot")
    assert again.returncode == 1 and "--force" in again.stderr
    assert file_digest(out / "boot.qcow2") == before
    assert run_cli("unpack", str(archive), "-d", str(out), "--name", "boot", "--force").returncode == 0


def archived_metadata(archive: Path) -> bytes:
    """The metadata member's bytes as Python's tarfile reads them from the archive."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("image_metadata.json")
        assert member is not None
        return member.read()


def test_unpack_writes_the_metadata_of_a_gnu_tar_archive_byte_for_byte(
    make_image: Callable[..., Path], tmp_path: Path
) -> None:
    folder = tmp_path / "members"
    folder.mkdir()
    make_image("qcow2", name="members/output.QCOW2")
    (folder / "image_metadata.json").write_bytes(json.dumps(SPEC_METADATA, indent=1).encode())  # no newline at the end
    archive = tmp_path / "gnu.oci"
    subprocess.run(["tar", "-C", str(folder), "-cf", str(archive), "image_metadata.json", "output.QCOW2"], check=True)
    done = run_cli("unpack", str(archive), "-d", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    written = (tmp_path / "out" / "gnu.json").read_bytes()
    assert not written.endswith(b"\n")
    assert written == archived_metadata(archive)


def test_unpack_writes_the_metadata_of_its_own_archive_as_stored_padding_included(
    sample_raw: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "disk.oci"
    assert pack(sample_raw, archive).returncode == 0
    done = run_cli("unpack", str(archive), "-d", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "disk.json").read_bytes() == archived_metadata(archive)


def test_unpack_to_vmdk_names_the_output_file_in_its_descriptor(sample_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "disk.oci"
    assert pack(sample_raw, out).returncode == 0
    done = run_cli("unpack", str(out), "-d", str(tmp_path / "as-vmdk"), "--to", "vmdk")
    assert done.returncode == 0, done.stderr
    assert read_vmdk_extent_names(tmp_path / "as-vmdk" / "disk.vmdk") == ["disk.vmdk"]
    assert leftovers(tmp_path / "as-vmdk") == []


def test_convert_reads_an_archive_in_place_and_writes_one(sample_raw: Path, tmp_path: Path) -> None:
    oci = tmp_path / "disk.oci"
    done = run_cli("convert", str(sample_raw), str(oci), *PACK_ARGS)
    assert done.returncode == 0, done.stderr
    vhd = tmp_path / "back.vhd"
    done = run_cli("convert", str(oci), str(vhd))
    assert done.returncode == 0, done.stderr
    qemu_img("compare", "-f", "raw", "-F", "vpc", str(sample_raw), str(vhd))


def test_meta_set_changes_the_metadata_in_place_without_touching_the_disk(sample_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "disk.oci"
    assert pack(sample_raw, out).returncode == 0
    info = json.loads(run_cli("info", "--json", str(out)).stdout)
    disk = info["members"][1]

    def disk_bytes() -> bytes:
        with open(out, "rb") as f:
            f.seek(disk["data_offset"])
            return f.read(disk["size"])

    before, inode = sha256(disk_bytes()), os.stat(out).st_ino
    done = run_cli("meta", "set", str(out), "firmware=BIOS", "operatingSystemVersion=9", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["in_place"] is True
    assert sha256(disk_bytes()) == before and os.stat(out).st_ino == inode
    shown = json.loads(run_cli("meta", "show", str(out)).stdout)
    assert shown["externalLaunchOptions"]["firmware"] == "BIOS"
    assert shown["operatingSystemVersion"] == "9"
    # GNU tar still reads it whole.
    subprocess.run(["tar", "-tvf", str(out)], check=True, capture_output=True)


def test_meta_shapes_add_list_remove(sample_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "disk.oci"
    assert pack(sample_raw, out, "--shape", "VM.Standard.E4.Flex:1-64:1-1024").returncode == 0
    assert run_cli("meta", "shapes", "add", str(out), "VM.Standard3.Flex").returncode == 0
    listed = run_cli("meta", "shapes", "list", str(out), "--json")
    names = [s["internalShapeName"] for s in json.loads(listed.stdout)]
    assert names == ["VM.Standard.E4.Flex", "VM.Standard3.Flex"]
    assert run_cli("meta", "shapes", "remove", str(out), "VM.Standard.E4.Flex").returncode == 0
    shown = json.loads(run_cli("meta", "show", str(out)).stdout)
    assert [s["internalShapeName"] for s in shown["additionalMetadata"]["shapeCompatibilities"]] == [
        "VM.Standard3.Flex"
    ]


def test_info_json_of_an_archive_gives_the_disks_virtual_size_at_the_top(sample_raw: Path, tmp_path: Path) -> None:
    """Scripts read `virtual_size` from any `info --json`, archive or plain image alike."""
    out = tmp_path / "disk.oci"
    assert pack(sample_raw, out).returncode == 0
    done = run_cli("info", "--json", str(out))
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["format"] == "oci"
    assert info["virtual_size"] == info["disk"]["virtual_size"] == ODD_SIZE


def test_verify_json_of_an_archive_calls_it_oci_and_names_the_disk_format_apart(
    sample_raw: Path, tmp_path: Path
) -> None:
    out = tmp_path / "disk.oci"
    assert pack(sample_raw, out).returncode == 0
    done = run_cli("verify", "--json", str(out))
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)["facts"]
    assert (facts["format"], facts["disk_format"]) == ("oci", "qcow2")
    assert facts["virtual_size"] == ODD_SIZE


def test_verify_says_ready_for_a_packed_archive_and_lists_problems_otherwise(
    sample_raw: Path, make_image: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "disk.oci"
    assert pack(sample_raw, out).returncode == 0
    done = run_cli("verify", str(out), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["ready"] is True
    vdi = make_image("vdi")
    done = run_cli("verify", str(vdi))
    assert done.returncode == 3
    assert "vdi" in done.stdout
    no_table = tmp_path / "blank.qcow2"
    qemu_img("create", "-f", "qcow2", str(no_table), "64M")
    done = run_cli("verify", str(no_table))
    assert done.returncode == 3 and "partition table" in done.stdout


def _foreign_archive(path: Path, disk: Path, metadata: bytes, *, disk_name: str, disk_first: bool, gz: bool) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        entries = [("image_metadata.json", metadata), (disk_name, disk.read_bytes())]
        for name, data in reversed(entries) if disk_first else entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(buf.getvalue(), 1) if gz else buf.getvalue())


@pytest.mark.parametrize(
    ("style", "disk_name", "disk_first", "gz"),
    [
        ("freebsd", "output.QCOW2", False, False),
        ("ocne", "output.QCOW2", True, True),
        ("talos", "oracle-arm64.qcow2", False, True),
    ],
)
def test_reads_archives_written_by_other_tools(
    style: str,
    disk_name: str,
    disk_first: bool,
    gz: bool,
    make_image: Callable[..., Path],
    sample_raw: Path,
    tmp_path: Path,
) -> None:
    foreign = {
        **SPEC_METADATA,
        "operatingSystem": "FreeBSD",  # not in OCI's list: a warning, not a refusal
        "operatingSystemVersion": "14.1",
        "additionalMetadata": {"shapeCompatibilities": [], "futureKey": 1},  # unknown keys are kept
    }
    metadata = json.dumps(foreign).encode()
    archive = tmp_path / f"{style}.oci"
    _foreign_archive(archive, make_image("qcow2"), metadata, disk_name=disk_name, disk_first=disk_first, gz=gz)
    info = run_cli("info", "--json", str(archive))
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["disk"]["virtual_size"] == ODD_SIZE
    out = tmp_path / "out.raw"
    done = run_cli("convert", str(archive), str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == sample_raw.read_bytes()
    assert leftovers(tmp_path) == []


def test_member_size_of_8_gib_and_more_is_read_by_gnu_tar_bsdtar_and_tarfile(tmp_path: Path) -> None:
    size = 9 * 1024**3 + 512
    archive = tmp_path / "big.tar"
    with open(archive, "wb") as f:
        f.write(member_header("output.QCOW2", size, 0))
        f.truncate(512 + size + 1024)
    listing = subprocess.run(["tar", "-tvf", str(archive)], check=True, capture_output=True, text=True).stdout
    assert str(size) in listing
    listing = subprocess.run(["bsdtar", "-tvf", str(archive)], check=True, capture_output=True, text=True).stdout
    assert str(size) in listing
    assert tar_members(archive)[0].size == size


def test_reads_archives_gnu_tar_and_bsdtar_write_with_dot_names_sparse_members_pax_and_multi_member_gzip(
    make_image: Callable[..., Path], sample_raw: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "members"
    folder.mkdir()
    make_image("qcow2", name="members/output.QCOW2")
    (folder / "image_metadata.json").write_bytes(json.dumps(SPEC_METADATA).encode())
    names = ["./image_metadata.json", "./output.QCOW2"]
    plain, sparse, gz = tmp_path / "plain.oci", tmp_path / "sparse.oci", tmp_path / "gz.oci"
    bsd_pax, bsd_gz = tmp_path / "bsd-pax.oci", tmp_path / "bsd-gz.oci"
    subprocess.run(["tar", "-C", str(folder), "-cf", str(plain), *names], check=True)
    subprocess.run(["tar", "-C", str(folder), "-S", "-cf", str(sparse), *names], check=True)
    subprocess.run(["bsdtar", "-C", str(folder), "--format", "pax", "-cf", str(bsd_pax), *names], check=True)
    subprocess.run(["bsdtar", "-C", str(folder), "-czf", str(bsd_gz), *names], check=True)
    data = plain.read_bytes()
    gz.write_bytes(gzip.compress(data[:4096]) + gzip.compress(data[4096:]))  # two gzip members, as cat makes
    for archive in (plain, sparse, gz, bsd_pax, bsd_gz):
        out = tmp_path / f"{archive.stem}.raw"
        done = run_cli("convert", str(archive), str(out))
        assert done.returncode == 0, done.stderr
        assert out.read_bytes() == sample_raw.read_bytes()


def test_meta_set_on_a_gzip_archive_rewrites_it_as_plain_tar_and_says_why(
    make_image: Callable[..., Path], tmp_path: Path
) -> None:
    archive = tmp_path / "ocne.oci"
    _foreign_archive(
        archive,
        make_image("qcow2"),
        json.dumps(SPEC_METADATA).encode(),
        disk_name="output.QCOW2",
        disk_first=True,
        gz=True,
    )
    done = run_cli("meta", "set", str(archive), "operatingSystemVersion=9")
    assert done.returncode == 0, done.stderr
    assert "gzip" in done.stdout
    members = tar_members(archive)
    assert [m.name for m in members] == ["image_metadata.json", "output.QCOW2"]
    assert json.loads(run_cli("meta", "show", str(archive)).stdout)["operatingSystemVersion"] == "9"


def test_meta_set_that_rewrites_keeps_the_symlink_and_the_files_mode(sample_raw: Path, tmp_path: Path) -> None:
    real = tmp_path / "real.oci"
    assert pack(sample_raw, real).returncode == 0
    real.chmod(0o600)
    link = tmp_path / "link.oci"
    link.symlink_to(real)
    big_name = "Oracle Linux" + " " * 9000  # outgrows the room in front of the disk: forces a rewrite
    # One letter from Oracle Linux: taken as typed only when told so.
    done = run_cli("meta", "set", str(link), f"operatingSystem={big_name}X", "--json", "--os-unlisted")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["in_place"] is False
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.stat().st_mode & 0o777 == 0o600
    subprocess.run(["tar", "-tf", str(real)], check=True, capture_output=True)


def test_unpack_that_fails_removes_the_directory_it_created(tmp_path: Path) -> None:
    archive = tmp_path / "broken.oci"
    archive.write_bytes(b"\0" * 4096)
    target = tmp_path / "new-dir"
    done = run_cli("unpack", str(archive), "-d", str(target))
    assert done.returncode == 1
    assert not target.exists()


def test_convert_repacks_a_gzip_archive_into_our_layout_keeping_its_metadata(
    make_image: Callable[..., Path], tmp_path: Path
) -> None:
    source_disk = make_image("qcow2")
    ocne = tmp_path / "ocne.oci"
    foreign = {**SPEC_METADATA, "operatingSystemVersion": "9", "futureKey": "kept"}
    _foreign_archive(
        ocne, source_disk, json.dumps(foreign).encode(), disk_name="output.QCOW2", disk_first=True, gz=True
    )
    before = file_digest(ocne)
    plain = tmp_path / "plain.oci"
    done = run_cli("convert", str(ocne), str(plain), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["copied"] is True
    assert file_digest(ocne) == before
    with tarfile.open(plain) as tar:
        assert tar.getnames() == ["image_metadata.json", "output.QCOW2"]
        disk = tar.extractfile("output.QCOW2")
        meta = tar.extractfile("image_metadata.json")
        assert disk is not None and meta is not None
        assert disk.read() == source_disk.read_bytes()
        kept = json.loads(meta.read())
    assert kept["operatingSystemVersion"] == "9" and kept["futureKey"] == "kept"
