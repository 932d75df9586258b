"""`imagepack import-request`: the CreateImage body and the oci-cli commands for real qcow2, vmdk and .oci files,
and every refusal where OCI's import would refuse the file or the request."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from imagepack.core.errors import ImagepackError, InputError, InvalidValueError
from imagepack.files.checksums import OBJECT_PUT_PART_SIZE
from imagepack.oci.metadata import LaunchMode
from imagepack.oci.objectstorage import parse_url
from imagepack.verbs.import_request import ObjectLocation, import_request
from tests.conftest import qemu_img, run_cli

COMPARTMENT = "ocid1.compartment.oc1..aaaaaaaa3mb7wrcy2ls3u3jsy2soq5ck3lc3q4mczitpdaymbuazc5tkguca"
TENANCY = "ocid1.tenancy.oc1..aaaaaaaaksusyefovxt64bsovu523r5ez6qz25pcnqjw2a243qjmft5n7drq"
URL = "https://objectstorage.eu-frankfurt-1.oraclecloud.com/n/mytenancy/b/images/o/web/disk"
TUPLE = ("--namespace", "mytenancy", "--bucket", "images", "--object", "web/disk.qcow2")


def request_cli(image: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("import-request", str(image), "--compartment", COMPARTMENT, "--display-name", "web", *args)


def as_json(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert done.returncode == 0, done.stdout + done.stderr
    document: dict[str, object] = json.loads(done.stdout)
    return document


@pytest.fixture
def archive(sample_raw: Path, tmp_path: Path) -> Path:
    """A .oci that imagepack's own pack wrote, in NATIVE mode, for Ubuntu 22.04."""
    out = tmp_path / "web.oci"
    done = run_cli(
        "pack", str(sample_raw), str(out), "--os", "ubuntu", "--os-version", "22.04", "--launch-mode", "native", "-q"
    )
    assert done.returncode == 0, done.stderr
    return out


def test_a_qcow2_by_namespace_bucket_and_object_gets_the_tuple_body_and_from_object(
    make_image: Callable[..., Path],
) -> None:
    qcow2 = make_image("qcow2")
    args = [
        *TUPLE, "--region", "us-ashburn-1", "--os", "oracle linux", "--os-version", "9",
        "--tag", "env=prod", "--tag", "team=web", "--defined-tag", "Operations.CostCenter=42", "--json",
    ]  # fmt: skip
    document = as_json(request_cli(qcow2, *args))
    assert document["body"] == {
        "compartmentId": COMPARTMENT,
        "displayName": "web",
        "launchMode": "PARAVIRTUALIZED",
        "imageSourceDetails": {
            "sourceType": "objectStorageTuple",
            "namespaceName": "mytenancy",
            "bucketName": "images",
            "objectName": "web/disk.qcow2",
            "operatingSystem": "Oracle Linux",
            "operatingSystemVersion": "9",
            "sourceImageType": "QCOW2",
        },
        "freeformTags": {"env": "prod", "team": "web"},
        "definedTags": {"Operations": {"CostCenter": "42"}},
    }
    upload, imported = document["commands"]  # type: ignore[misc]
    assert upload["argv"] == [
        "oci", "os", "object", "put", "--bucket-name", "images", "--namespace", "mytenancy",
        "--name", "web/disk.qcow2", "--file", str(qcow2), "--part-size", str(OBJECT_PUT_PART_SIZE // 1024**2),
        "--region", "us-ashburn-1",
    ]  # fmt: skip
    assert upload["argv"][upload["argv"].index("--part-size") + 1] == "128"
    assert imported["argv"] == [
        "oci", "compute", "image", "import", "from-object",
        "--namespace", "mytenancy", "--bucket-name", "images", "--name", "web/disk.qcow2",
        "--compartment-id", COMPARTMENT, "--display-name", "web", "--launch-mode", "PARAVIRTUALIZED",
        "--source-image-type", "QCOW2", "--operating-system", "Oracle Linux", "--operating-system-version", "9",
        "--freeform-tags", '{"env":"prod","team":"web"}', "--defined-tags", '{"Operations":{"CostCenter":"42"}}',
        "--region", "us-ashburn-1",
    ]  # fmt: skip
    codes = [problem["code"] for problem in document["problems"]]  # type: ignore[attr-defined]
    assert codes == ["import.exported-qcow2", "guidance.host-generation"]


@pytest.mark.parametrize("subformat", ["streamOptimized", "monolithicSparse"])
def test_a_single_file_vmdk_by_url_gets_the_uri_body_and_from_object_uri(
    subformat: str, make_image: Callable[..., Path]
) -> None:
    vmdk = make_image("vmdk", options=f"subformat={subformat}")
    document = as_json(request_cli(vmdk, "--uri", URL + ".vmdk", "--launch-mode", "emulated", "--json"))
    body = document["body"]
    assert body == {
        "compartmentId": COMPARTMENT,
        "displayName": "web",
        "launchMode": "EMULATED",
        "imageSourceDetails": {"sourceType": "objectStorageUri", "sourceUri": URL + ".vmdk", "sourceImageType": "VMDK"},
    }
    upload, imported = document["commands"]  # type: ignore[misc]
    assert upload["argv"][4:10] == ["--bucket-name", "images", "--namespace", "mytenancy", "--name", "web/disk.vmdk"]
    assert imported["argv"][:7] == ["oci", "compute", "image", "import", "from-object-uri", "--uri", URL + ".vmdk"]
    assert "--source-image-type" in imported["argv"] and "--operating-system" not in imported["argv"]
    assert [problem["code"] for problem in document["problems"]] == ["import.os-missing"]  # type: ignore[attr-defined]


def test_a_packed_oci_leaves_out_the_image_type_takes_mode_and_system_from_its_metadata_and_uses_raw_request(
    archive: Path,
) -> None:
    document = as_json(request_cli(archive, "--uri", URL + ".oci", "--json"))
    assert document["format"] == "oci"
    assert document["body"] == {
        "compartmentId": COMPARTMENT,
        "displayName": "web",
        "launchMode": "NATIVE",
        "imageSourceDetails": {
            "sourceType": "objectStorageUri",
            "sourceUri": URL + ".oci",
            "operatingSystem": "Ubuntu",
            "operatingSystemVersion": "22.04",
        },
    }
    _, imported = document["commands"]  # type: ignore[misc]
    assert imported["argv"] == [
        "oci", "raw-request", "--http-method", "POST",
        "--target-uri", "https://iaas.eu-frankfurt-1.oraclecloud.com/20160918/images",
        "--request-body", "file://create-image.json",
    ]  # fmt: skip


def test_the_text_output_is_a_script_that_writes_the_body_the_raw_request_reads(archive: Path, tmp_path: Path) -> None:
    done = request_cli(archive, "--uri", URL + ".oci", "--tag", 'note=it\'s "quoted" $HOME `x`')
    assert done.returncode == 0, done.stderr
    work = tmp_path / "run"
    work.mkdir()
    # `oci` stands in for oci-cli: it records its arguments instead of calling Oracle.
    script = 'oci() { printf "%s\\n" "$@" >> calls; }\n' + done.stdout
    subprocess.run(["bash", "-e", "-c", script], cwd=work, check=True, env={**os.environ, "HOME": "/nonexistent"})
    written = json.loads((work / "create-image.json").read_text())
    assert (
        written
        == as_json(request_cli(archive, "--uri", URL + ".oci", "--tag", 'note=it\'s "quoted" $HOME `x`', "--json"))[
            "body"
        ]
    )
    assert written["freeformTags"] == {"note": 'it\'s "quoted" $HOME `x`'}
    calls = (work / "calls").read_text().splitlines()
    assert calls[:4] == ["os", "object", "put", "--bucket-name"] and "raw-request" in calls


def test_a_tenancy_ocid_names_the_root_compartment_and_is_taken(make_image: Callable[..., Path]) -> None:
    request = import_request(
        make_image("qcow2"),
        compartment_id=TENANCY,
        display_name="web",
        location=parse_url(URL + ".qcow2"),
        launch_mode=LaunchMode.NATIVE,
    )
    assert request.body()["compartmentId"] == TENANCY
    assert request.body()["launchMode"] == "NATIVE"
    assert "import.exported-qcow2" not in [problem.code for problem in request.problems]


@pytest.mark.parametrize("fmt", ["vhd", "vdi", "vhdx", "raw"])
def test_formats_oci_does_not_import_are_refused_naming_the_format(
    fmt: str, make_image: Callable[..., Path], sample_raw: Path
) -> None:
    image = sample_raw if fmt == "raw" else make_image(fmt)
    done = request_cli(image, "--uri", URL)
    assert done.returncode == 1
    assert (
        done.stderr
        == f"imagepack: error: {image}: OCI imports qcow2, vmdk and .oci files, not {fmt}"
        + (" (an export-only format for OCI)" if fmt in ("vhd", "vdi") else "")
        + ": convert it first\n"
    )


def test_a_multi_file_vmdk_is_refused(sample_raw: Path, tmp_path: Path) -> None:
    flat = tmp_path / "flat.vmdk"
    qemu_img("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=monolithicFlat", str(sample_raw), str(flat))
    with pytest.raises(InputError) as refused:
        import_request(flat, compartment_id=COMPARTMENT, display_name="x", location=parse_url(URL))
    assert refused.value.code == "vmdk.external-files" and "reads its data from other files" in refused.value.message


def test_a_disk_over_400_gib_is_refused_in_ocis_terms(tmp_path: Path) -> None:
    big = tmp_path / "big.qcow2"
    qemu_img("create", "-f", "qcow2", str(big), "401G")
    done = request_cli(big, "--uri", URL, "--json")
    assert done.returncode == 1
    assert done.stderr == (
        f"imagepack: error: {big}: virtual size {401 * 1024**3} bytes is above OCI's import limit of 400 GiB\n"
    )
    assert json.loads(done.stdout)["error"]["code"] == "import.too-large"


def test_a_compressed_disk_is_refused_since_oci_imports_the_file_as_uploaded(
    make_image: Callable[..., Path], tmp_path: Path
) -> None:
    qcow2 = make_image("qcow2")
    compressed = tmp_path / "disk.qcow2.zst"
    assert run_cli("compress", str(qcow2), str(compressed), "-q").returncode == 0
    done = request_cli(compressed, "--uri", URL)
    assert done.returncode == 1 and "is a zstd stream" in done.stderr and "decompress it first" in done.stderr


@pytest.mark.parametrize(
    ("compartment", "reason"),
    [
        ("ocid1.instance.oc1.iad.anuwcljt", "the OCID of an instance"),
        ("ocid1.bucket.oc1..aaaa", "the OCID of a bucket"),
        ("ocid1.compartment.oc2..aaaa", "the compartment is in realm oc2 but the object in oc1"),
        ("ocid1.compartment.oc1.iad.aaaa", "names a region"),
        ("compartment-web", "not an OCID"),
        ("ocid1.compartment.oc1..AAAA", "not an OCID"),
        ("ocid1.compartment.oc1..aa\naa", "not an OCID"),
    ],
)
def test_an_ocid_of_the_wrong_kind_or_realm_is_refused_before_the_file_is_read(
    compartment: str, reason: str, tmp_path: Path
) -> None:
    never_read = tmp_path / "missing.qcow2"
    done = run_cli(
        "import-request", str(never_read), "--compartment", compartment, "--display-name", "x", "--uri",
        URL.replace("eu-frankfurt-1", "us-ashburn-1"),
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("imagepack: error: ") and reason in done.stderr and done.stderr.count("\n") == 1


def test_the_realm_of_a_tuple_is_its_regions(make_image: Callable[..., Path]) -> None:
    with pytest.raises(InvalidValueError, match="realm oc1 but the object in oc3"):
        import_request(
            make_image("qcow2"),
            compartment_id=COMPARTMENT,
            display_name="x",
            location=ObjectLocation.checked("ns", "b", "o.qcow2", "us-gov-ashburn-1"),
        )


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--os", "Ubuntu"], "together"),
        (["--launch-mode", "fast"], "--launch-mode fast"),
        (["--tag", "env"], "not KEY=VALUE"),
        (["--tag", "env=a", "--tag", "env=b"], "given twice"),
        (["--defined-tag", "CostCenter=42"], "NAMESPACE.KEY=VALUE"),
        (["--tag", "a\tb=c"], "printable"),
        (["--namespace", "ns"], "--uri names the object already"),
    ],
)
def test_values_typed_wrong_are_refused_before_the_file_is_read(args: list[str], reason: str, tmp_path: Path) -> None:
    done = request_cli(tmp_path / "missing.qcow2", "--uri", URL, *args)
    assert done.returncode == 2, done.stderr
    assert reason in done.stderr and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--os", "Windows", "--os-version", "Server 2019 Standard", "--launch-mode", "native"], "PARAVIRTUALIZED"),
        (["--os", "Windows", "--os-version", "2019"], "names no edition"),
    ],
)
def test_a_system_oci_would_refuse_in_that_mode_or_without_its_edition_is_refused(
    args: list[str], reason: str, make_image: Callable[..., Path]
) -> None:
    done = request_cli(make_image("qcow2"), "--uri", URL, *args)
    assert done.returncode == 2, done.stderr
    assert reason in done.stderr and done.stderr.count("\n") == 1


def test_a_bucket_par_needs_the_object_name_and_an_object_par_is_taken(make_image: Callable[..., Path]) -> None:
    qcow2 = make_image("qcow2")
    bucket_par = "https://objectstorage.us-ashburn-1.oraclecloud.com/p/Tok3n_-x/n/ns/b/b/o/"
    done = request_cli(qcow2, "--uri", bucket_par)
    assert done.returncode == 2 and "bucket PAR" in done.stderr
    document = as_json(request_cli(qcow2, "--uri", bucket_par + "disk.qcow2", "--json"))
    assert document["body"]["imageSourceDetails"]["sourceUri"] == bucket_par + "disk.qcow2"  # type: ignore[index]


def test_an_oci_refuses_a_launch_mode_or_system_its_metadata_does_not_give(archive: Path) -> None:
    mode = request_cli(archive, "--uri", URL, "--launch-mode", "paravirtualized")
    assert mode.returncode == 2 and "launch mode its metadata gives (NATIVE)" in mode.stderr
    system = request_cli(archive, "--uri", URL, "--os", "Oracle Linux", "--os-version", "9")
    assert system.returncode == 2 and '"Ubuntu 22.04"' in system.stderr
    same = request_cli(archive, "--uri", URL, "--os", "ubuntu", "--os-version", "22.04", "--launch-mode", "native")
    assert same.returncode == 0, same.stderr


def test_an_oci_by_tuple_needs_the_region_for_its_raw_request(archive: Path) -> None:
    with pytest.raises(ImagepackError, match="give the region"):
        import_request(
            archive, compartment_id=COMPARTMENT, display_name="x", location=ObjectLocation.checked("ns", "b", "w.oci")
        )
    request = import_request(
        archive,
        compartment_id=COMPARTMENT,
        display_name="x",
        location=ObjectLocation.checked("ns", "b", "w.oci", "ap-mumbai-1"),
    )
    assert request.commands()[1].argv[5] == "https://iaas.ap-mumbai-1.oraclecloud.com/20160918/images"
    assert "sourceImageType" not in request.body()["imageSourceDetails"]
