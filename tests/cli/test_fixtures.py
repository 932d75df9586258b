"""The committed image_metadata.json of each known .oci writer: read by the strict reader, written back whole, and
carried through real archives by `info`, `verify` and `pack`."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from imagepack.core.problems import Severity
from imagepack.oci.metadata import check_metadata, dump_metadata, load_metadata
from tests.conftest import FIXTURES, ODD_SIZE, qemu_img, run_cli

METADATA = sorted((FIXTURES / "metadata").glob("*.json"))
# ocne writes NATIVE launch options with AMD shapes (its list comes from an OCI export), and imagepack's checks
# refuse AMD shapes outside PARAVIRTUALIZED mode, so pack does not start from that file.
PACK_REFUSES = {"ocne"}


def by_name(paths: list[Path]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("fixture", paths, ids=[path.stem for path in paths])


def as_text(document: object) -> str:
    """The document with its key order, so that two compare equal only when every key is there in the same place."""
    return json.dumps(document, indent=1)


def metadata_member(archive: Path) -> object:
    with tarfile.open(archive) as tar:
        member = tar.extractfile("image_metadata.json")
        assert member is not None
        return json.loads(member.read())


@pytest.fixture
def qcow2_disk(sample_raw: Path, tmp_path: Path) -> Path:
    disk = tmp_path / "disk.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(sample_raw), str(disk))
    return disk


def gnu_tar_archive(fixture: Path, disk: Path, folder: Path) -> Path:
    """The archive as FreeBSD's release build lays it out: GNU tar, the JSON first, then output.QCOW2."""
    folder.mkdir()
    shutil.copyfile(fixture, folder / "image_metadata.json")
    shutil.copyfile(disk, folder / "output.QCOW2")
    archive = folder.parent / f"{fixture.stem}.oci"
    subprocess.run(
        ["tar", "--format=gnu", "-C", str(folder), "-cf", str(archive), "image_metadata.json", "output.QCOW2"],
        check=True,
    )
    return archive


def test_every_writer_named_in_the_readme_has_a_fixture_and_every_fixture_is_named() -> None:
    readme = (FIXTURES / "README.md").read_text()
    named = {word.strip("`") for word in readme.split() if word.startswith("`metadata/")}
    assert named == {f"metadata/{path.name}" for path in METADATA}


@by_name(METADATA)
def test_fixture_is_read_by_the_strict_reader(fixture: Path) -> None:
    document = json.loads(fixture.read_text())
    meta = load_metadata(fixture.read_bytes(), label=fixture.name)
    launch = document["externalLaunchOptions"]
    assert meta.launch_mode.value == launch["launchOptionsSource"]
    assert meta.launch.firmware.value == launch["firmware"]
    assert meta.operating_system == document["operatingSystem"]
    assert meta.operating_system_version == document["operatingSystemVersion"]
    assert [shape.name for shape in meta.shapes] == [
        shape["internalShapeName"] for shape in document["additionalMetadata"]["shapeCompatibilities"]
    ]


@by_name(METADATA)
def test_fixture_dumped_and_read_again_is_the_same_model(fixture: Path) -> None:
    meta = load_metadata(fixture.read_bytes(), label=fixture.name)
    assert load_metadata(dump_metadata(meta), label="dumped") == meta


@by_name(METADATA)
def test_fixture_dumped_keeps_every_key_in_its_place(fixture: Path) -> None:
    meta = load_metadata(fixture.read_bytes(), label=fixture.name)
    assert as_text(json.loads(dump_metadata(meta))) == as_text(json.loads(fixture.read_text()))


@by_name(METADATA)
def test_fixture_breaks_a_rule_of_the_checks_only_where_pack_refuses_it(fixture: Path) -> None:
    problems = check_metadata(load_metadata(fixture.read_bytes(), label=fixture.name))
    errors = {problem.code for problem in problems if problem.severity is Severity.ERROR}
    assert errors == ({"metadata.shape-mode"} if fixture.stem in PACK_REFUSES else set())


@by_name(METADATA)
def test_gnu_tar_archive_of_fixture_is_described_by_info(fixture: Path, qcow2_disk: Path, tmp_path: Path) -> None:
    archive = gnu_tar_archive(fixture, qcow2_disk, tmp_path / "members")
    done = run_cli("info", "--json", str(archive))
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert as_text(info["metadata"]) == as_text(json.loads(fixture.read_text()))
    assert info["disk"]["virtual_size"] == ODD_SIZE


@by_name(METADATA)
def test_gnu_tar_archive_of_fixture_is_verified_with_its_launch_mode_firmware_and_system(
    fixture: Path, qcow2_disk: Path, tmp_path: Path
) -> None:
    document = json.loads(fixture.read_text())
    archive = gnu_tar_archive(fixture, qcow2_disk, tmp_path / "members")
    done = run_cli("verify", "--json", str(archive))
    assert done.returncode in (0, 3), done.stderr  # 3: problems found; 1 would be: could not read it
    facts = json.loads(done.stdout)["facts"]
    assert facts["launch_mode"] == document["externalLaunchOptions"]["launchOptionsSource"]
    assert facts["firmware"] == document["externalLaunchOptions"]["firmware"]
    assert facts["operating_system"] == f"{document['operatingSystem']} {document['operatingSystemVersion']}"
    assert facts["disk_member"] == "output.QCOW2"
    assert facts["check"] == "clean"


@by_name([path for path in METADATA if path.stem not in PACK_REFUSES])
def test_pack_from_fixture_writes_it_back_with_every_key(fixture: Path, qcow2_disk: Path, tmp_path: Path) -> None:
    archive = tmp_path / "packed.oci"
    done = run_cli("pack", str(qcow2_disk), str(archive), "--metadata", str(fixture))
    assert done.returncode == 0, done.stderr
    assert as_text(metadata_member(archive)) == as_text(json.loads(fixture.read_text()))


def test_imagepack_fixture_is_what_pack_writes_for_the_sample_disk(sample_raw: Path, tmp_path: Path) -> None:
    archive = tmp_path / "sample.oci"
    done = run_cli("pack", str(sample_raw), str(archive), "--os", "Oracle Linux", "--os-version", "9")
    assert done.returncode == 0, done.stderr
    shown = run_cli("meta", "show", str(archive))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == (FIXTURES / "metadata" / "imagepack.json").read_text()
