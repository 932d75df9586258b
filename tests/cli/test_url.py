"""`imagepack url` and imagepack.oci.objectstorage: Object Storage URLs built and parsed back, in every form and
realm, with hostile names refused in one line."""

from __future__ import annotations

import json
import re
import urllib.parse

import pytest

from imagepack.core.errors import InvalidValueError
from imagepack.oci.objectstorage import (
    REALM_DOMAINS,
    REGION_REALMS,
    ObjectUrl,
    UrlKind,
    build_url,
    parse_url,
)
from tests.conftest import run_cli

# One region of every realm, as the SDKs list them.
REGION_OF_REALM = {realm: next(r for r, its in REGION_REALMS.items() if its == realm) for realm in REALM_DOMAINS}
NAMES = ["disk.qcow2", "web/2024/disk.oci", "a b+c&d=e?f#g.vmdk", "100%.qcow2", "イメージ/ディスク.qcow2", "a//b", "~x"]


@pytest.mark.parametrize("realm", list(REALM_DOMAINS))
def test_an_object_url_of_every_realm_is_built_on_its_domain_and_parsed_back(realm: str) -> None:
    region = REGION_OF_REALM[realm]
    built = build_url(region=region, namespace="mytenancy", bucket="images", object_name="web/disk.qcow2")
    assert built.realm == realm
    assert built.to_url() == (
        f"https://objectstorage.{region}.{REALM_DOMAINS[realm]}/n/mytenancy/b/images/o/web/disk.qcow2"
    )
    parsed = parse_url(built.to_url())
    assert parsed == built and parsed.kind is UrlKind.OBJECT and parsed.notes == ()


@pytest.mark.parametrize("name", NAMES)
def test_object_names_are_percent_encoded_with_their_slashes_kept_and_decoded_on_parse(name: str) -> None:
    built = build_url(region="eu-frankfurt-1", namespace="ns", bucket="b", object_name=name)
    encoded = built.to_url().split("/o/", 1)[1]
    assert encoded.split("/") == [urllib.parse.quote(part, safe="") for part in name.split("/")]
    assert all(char.isascii() and char not in " ?#" for char in encoded)
    assert parse_url(built.to_url()).object == name


@pytest.mark.parametrize("name", NAMES)
def test_every_form_round_trips(name: str) -> None:
    plain = build_url(region="us-ashburn-1", namespace="ns", bucket="b", object_name=name)
    dedicated = build_url(region="us-ashburn-1", namespace="ns", bucket="b", object_name=name, dedicated=True)
    assert dedicated.to_url().startswith("https://ns.objectstorage.us-ashburn-1.oci.customer-oci.com/n/ns/b/b/o/")
    bucket_par = parse_url("https://objectstorage.us-ashburn-1.oraclecloud.com/p/AbC-d_e.f/n/ns/b/b/o/")
    object_par = bucket_par.with_object(name)
    dedicated_par = parse_url("https://ns.objectstorage.us-ashburn-1.oci.customer-oci.com/p/T0k3n/n/ns/b/b/o/")
    for url in (plain, dedicated, bucket_par, object_par, dedicated_par, dedicated_par.with_object(name)):
        again = parse_url(url.to_url())
        assert again == url
        assert again.to_url() == url.to_url()
    assert (bucket_par.kind, object_par.kind) == (UrlKind.BUCKET_PAR, UrlKind.OBJECT_PAR)
    assert (object_par.par, object_par.object, object_par.dedicated) == ("AbC-d_e.f", name, False)
    assert dedicated_par.dedicated and dedicated_par.realm == "oc1"


def test_the_newer_oci_host_spelling_is_read_as_the_same_endpoint() -> None:
    parsed = parse_url("https://objectstorage.us-phoenix-1.oci.oraclecloud.com/n/ns/b/b/o/x.qcow2")
    assert parsed == build_url(region="us-phoenix-1", namespace="ns", bucket="b", object_name="x.qcow2")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("a\nb", "LF"),
        ("a\rb", "CR"),
        ("a\0b", "NUL"),
        ("../etc/passwd", "'..' segment"),
        ("a/./b", "'..' segment"),
        ("", "empty"),
        ("x" * 1025, "1025 bytes"),
        ("\udcff.qcow2", "not valid Unicode"),
    ],
)
def test_hostile_object_names_are_refused_saying_why(name: str, reason: str) -> None:
    with pytest.raises(InvalidValueError, match=re.escape(reason)) as refused:
        build_url(region="us-ashburn-1", namespace="ns", bucket="b", object_name=name)
    assert "\n" not in refused.value.message and refused.value.exit_code == 2


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://objectstorage.us-ashburn-1.oraclecloud.com/n/ns/b/b/o/a%0Ab", "LF"),
        ("https://objectstorage.us-ashburn-1.oraclecloud.com/n/ns/b/b/o/a%00b", "NUL"),
        ("https://objectstorage.us-ashburn-1.oraclecloud.com/n/ns/b/b/o/a%0db", "CR"),
        ("https://objectstorage.us-ashburn-1.oraclecloud.com/n/ns/b/b/o/a\nb", "control character"),
        ("https://objectstorage.us-ashburn-1.oraclecloud.com/n/ns/b/b/o/../x", "'..' segment"),
        ("https://objectstorage.us-ashburn-1.oraclecloud.com/n/ns/b/b/o/%2E%2E/x", "'..' segment"),
        ("https://objectstorage.us-ashburn-1.oraclecloud.com/n/ns/b/b/o/100%", "not a %XX escape"),
        ("https://objectstorage.us-ashburn-1.oraclecloud.com/n/ns/b/b/o/%ff", "not UTF-8"),
        ("https://objectstorage.us-ashburn-1.oraclecloud.com/n/ns/b/b", "has no object"),
        ("https://objectstorage.us-ashburn-1.oraclecloud.com/n/ns/b/b/o/", "no object name"),
        ("https://objectstorage.us-ashburn-1.oraclecloud.com/b/b/o/x", "has no namespace"),
        ("https://objectstorage.us-ashburn-1.oraclecloud.com/p//n/ns/b/b/o/", "PAR token"),
        ("https://objectstorage.us-ashburn-1.oraclecloud.com/n/ns/b/b/o/x?versionId=1", "query"),
        ("https://user@objectstorage.us-ashburn-1.oraclecloud.com/n/ns/b/b/o/x", "user or a port"),
        ("https://objectstorage.us-ashburn-1.example.com/n/ns/b/b/o/x", "not an Oracle Cloud domain"),
        ("https://storage.example.com/n/ns/b/b/o/x", "not an Object Storage endpoint"),
        ("http://objectstorage.us-ashburn-1.oraclecloud.com/n/ns/b/b/o/x", "https://"),
        ("objectstorage.us-ashburn-1.oraclecloud.com/n/ns/b/b/o/x", "https://"),
        ("https://objectstorage.us_ashburn_1.oraclecloud.com/n/ns/b/b/o/x", "not a region name"),
        ("https://objectstorage.us-ashburn-1.oraclegovcloud.com/n/ns/b/b/o/x", "realm oc1"),
        ("https://objectstorage.us-ashburn-1.oraclecloud.com/n/NS/b/b/o/x", "lower case"),
        ("https://objectstorage.us-ashburn-1.oraclecloud.com/n/ns/b/b%20c/o/x", "bucket name"),
        ("https://other.objectstorage.us-ashburn-1.oci.customer-oci.com/n/ns/b/b/o/x", "namespace other"),
        ("https://ns.objectstorage.us-langley-1.oci.customer-oci.com/n/ns/b/b/o/x", "no dedicated endpoints"),
    ],
)
def test_urls_that_are_wrong_are_refused_saying_what_is_wrong(url: str, reason: str) -> None:
    with pytest.raises(InvalidValueError, match=re.escape(reason)) as refused:
        parse_url(url)
    assert "\n" not in refused.value.message


@pytest.mark.parametrize("region", ["us_ashburn_1", "ashburn", "us-ashburn", "u-ashburn-1", "us-ashburn-0", "a" * 50])
def test_malformed_region_names_are_refused(region: str) -> None:
    with pytest.raises(InvalidValueError, match="not a region name"):
        build_url(region=region, namespace="ns", bucket="b", object_name="x")


def test_an_unknown_but_well_formed_region_is_accepted_with_a_note_on_the_realm_assumed() -> None:
    built = build_url(region="xy-newcity-1", namespace="ns", bucket="b", object_name="x")
    assert (built.realm, built.domain) == ("oc1", "oraclecloud.com")
    [note] = built.notes
    assert (note.code, note.severity.value) == ("url.unknown-region", "note")
    given = build_url(region="xy-newcity-1", namespace="ns", bucket="b", object_name="x", realm="OC4")
    assert given.to_url() == "https://objectstorage.xy-newcity-1.oraclegovcloud.uk/n/ns/b/b/o/x"
    shared = parse_url("https://objectstorage.us-gov-newcity-1.oraclegovcloud.com/n/ns/b/b/o/x")
    assert shared.realm is None and "oc2 and oc3" in shared.notes[0].message


def test_a_realm_that_disagrees_with_the_region_or_is_unknown_is_refused() -> None:
    with pytest.raises(InvalidValueError, match="region us-ashburn-1 is in realm oc1, not oc2"):
        build_url(region="us-ashburn-1", namespace="ns", bucket="b", object_name="x", realm="oc2")
    with pytest.raises(InvalidValueError, match="not one imagepack knows"):
        build_url(region="us-ashburn-1", namespace="ns", bucket="b", object_name="x", realm="oc99")
    with pytest.raises(InvalidValueError, match="realm oc1 only, not oc3"):
        build_url(region="us-gov-ashburn-1", namespace="ns", bucket="b", object_name="x", dedicated=True)


def test_a_second_name_for_an_object_par_and_a_name_for_a_plain_url_are_refused() -> None:
    object_par = parse_url("https://objectstorage.us-ashburn-1.oraclecloud.com/p/tok/n/ns/b/b/o/disk.qcow2")
    with pytest.raises(InvalidValueError, match=re.escape('object PAR, for object "disk.qcow2" already')):
        object_par.with_object("other.qcow2")
    plain: ObjectUrl = build_url(region="us-ashburn-1", namespace="ns", bucket="b", object_name="x")
    with pytest.raises(InvalidValueError, match="not a pre-authenticated request"):
        plain.with_object("y")


# --- the command line ----------------------------------------------------------------------------------------


def test_url_command_builds_prints_only_the_url_and_parses_it_back_as_json() -> None:
    done = run_cli("url", "--region", "ap-mumbai-1", "--namespace", "ns", "--bucket", "b", "--object", "web/a b.qcow2")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "https://objectstorage.ap-mumbai-1.oraclecloud.com/n/ns/b/b/o/web/a%20b.qcow2\n"
    parsed = run_cli("url", "--json", done.stdout.strip())
    assert parsed.returncode == 0, parsed.stderr
    assert json.loads(parsed.stdout) == {
        "url": done.stdout.strip(),
        "kind": "object",
        "region": "ap-mumbai-1",
        "realm": "oc1",
        "domain": "oraclecloud.com",
        "namespace": "ns",
        "bucket": "b",
        "object": "web/a b.qcow2",
        "par": None,
        "dedicated": False,
        "problems": [],
    }


def test_url_command_appends_a_name_to_a_bucket_par_and_says_which_kind_it_got() -> None:
    par = "https://objectstorage.us-langley-1.oraclegovcloud.com/p/s3cr3t/n/ns/b/b/o/"
    done = run_cli("url", "--par", par, "--object", "MyCustomImage.qcow2")
    assert done.returncode == 0, done.stderr
    assert done.stdout == par + "MyCustomImage.qcow2\n"
    assert "bucket PAR" in done.stderr
    again = run_cli("url", "--par", done.stdout.strip(), "--object", "second.qcow2")
    assert again.returncode == 2
    assert again.stderr.startswith("imagepack: error: this is an object PAR") and again.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "args",
    [
        ["https://objectstorage.us-ashburn-1.oraclecloud.com/n/ns/b/b/o/a%0Ab"],
        ["--region", "us-ashburn-1", "--namespace", "ns", "--bucket", "b", "--object", "a\rb"],
        ["--region", "Ashburn", "--namespace", "ns", "--bucket", "b", "--object", "x"],
        ["--region", "us-ashburn-1", "--namespace", "ns"],
        ["--region", "us-ashburn-1", "https://objectstorage.us-ashburn-1.oraclecloud.com/n/ns/b/b/o/x"],
        ["--par", "https://objectstorage.us-ashburn-1.oraclecloud.com/p/t/n/ns/b/b/o/"],
    ],
)
def test_url_command_refuses_what_is_typed_wrong_in_one_line_exit_2(args: list[str]) -> None:
    done = run_cli("url", *args, "--json")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("imagepack: error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert json.loads(done.stdout)["error"]["code"].startswith(("url.", "invalid-value"))
