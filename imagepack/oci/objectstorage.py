"""Object Storage URLs (SPEC §4): built from a region, namespace, bucket and object name, or from a bucket PAR and an
object name, and parsed back. Every part is checked, because the URL ends up in a CreateImage request that fails
late and vaguely when one part is wrong."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from imagepack.core.errors import InvalidValueError
from imagepack.core.problems import Problem, Severity
from imagepack.oci.metadata.codec import quote

# The realms and their second-level domains, and the regions of each, as Oracle's SDKs list them (oci-python-sdk
# regions_definitions.py). A region missing here may simply be newer than this list.
REALM_DOMAINS: dict[str, str] = {
    "oc1": "oraclecloud.com",
    "oc2": "oraclegovcloud.com",
    "oc3": "oraclegovcloud.com",
    "oc4": "oraclegovcloud.uk",
    "oc8": "oraclecloud8.com",
    "oc9": "oraclecloud9.com",
    "oc10": "oraclecloud10.com",
    "oc14": "oraclecloud14.com",
    "oc15": "oraclecloud15.com",
    "oc19": "oraclecloud.eu",
    "oc20": "oraclecloud20.com",
    "oc21": "oraclecloud21.com",
    "oc23": "oraclecloud23.com",
    "oc24": "oraclecloud24.com",
    "oc26": "oraclecloud26.com",
    "oc29": "oraclecloud29.com",
    "oc35": "oraclecloud35.com",
}
# The regions of each realm, space-separated.
_REGIONS_BY_REALM: dict[str, str] = {
    "oc1": (
        "af-johannesburg-1 ap-chuncheon-1 ap-hyderabad-1 ap-melbourne-1 ap-mumbai-1 ap-osaka-1 ap-seoul-1 "
        "ap-singapore-1 ap-singapore-2 ap-sydney-1 ap-tokyo-1 ca-montreal-1 ca-toronto-1 eu-amsterdam-1 "
        "eu-frankfurt-1 eu-madrid-1 eu-marseille-1 eu-milan-1 eu-paris-1 eu-stockholm-1 eu-zurich-1 "
        "il-jerusalem-1 me-abudhabi-1 me-dubai-1 me-jeddah-1 me-riyadh-1 mx-monterrey-1 mx-queretaro-1 "
        "sa-bogota-1 sa-santiago-1 sa-saopaulo-1 sa-valparaiso-1 sa-vinhedo-1 uk-cardiff-1 uk-london-1 "
        "us-ashburn-1 us-chicago-1 us-phoenix-1 us-saltlake-2 us-sanjose-1"
    ),
    "oc2": "us-langley-1 us-luke-1",
    "oc3": "us-gov-ashburn-1 us-gov-chicago-1 us-gov-phoenix-1",
    "oc4": "uk-gov-cardiff-1 uk-gov-london-1",
    "oc8": "ap-chiyoda-1 ap-ibaraki-1",
    "oc9": "me-dcc-muscat-1",
    "oc10": "ap-dcc-canberra-1",
    "oc14": "eu-dcc-dublin-1 eu-dcc-dublin-2 eu-dcc-milan-1 eu-dcc-milan-2 eu-dcc-rating-1 eu-dcc-rating-2",
    "oc15": "ap-dcc-gazipur-1",
    "oc19": "eu-frankfurt-2 eu-madrid-2",
    "oc20": "eu-jovanovac-1",
    "oc21": "me-dcc-doha-1",
    "oc23": "us-somerset-1 us-thames-1",
    "oc24": "eu-crissier-1 eu-dcc-zurich-1",
    "oc26": "me-abudhabi-3",
    "oc29": "me-abudhabi-2 me-abudhabi-4",
    "oc35": "ap-chuncheon-2 ap-seoul-2 ap-suwon-1",
}
REGION_REALMS: dict[str, str] = {
    region: realm for realm, regions in _REGIONS_BY_REALM.items() for region in regions.split()
}
DEFAULT_REALM = "oc1"
# Namespace-prefixed endpoints exist in the commercial realm only (Oracle's "Object Storage Dedicated Endpoints").
DEDICATED_REALM = "oc1"
DEDICATED_DOMAIN = "oci.customer-oci.com"

MAX_OBJECT_NAME_BYTES = 1024
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[1-9][0-9]*")
_NAMESPACE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_BUCKET = re.compile(r"[A-Za-z0-9_.-]{1,256}")
_PAR_TOKEN = re.compile(r"[A-Za-z0-9_.~:+=-]{1,512}")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class UrlKind(StrEnum):
    OBJECT = "object"  # a plain object URL, read with the caller's own credentials
    BUCKET_PAR = "bucket-par"  # a pre-authenticated request for a bucket: it ends in /o/, an object name goes after
    OBJECT_PAR = "object-par"  # a pre-authenticated request for one object


@dataclass(frozen=True)
class ObjectUrl:
    """One Object Storage location. `realm` is None only when the domain is shared by realms and the region is not
    one this module knows (oraclegovcloud.com is oc2's and oc3's). `notes` say what was assumed."""

    region: str
    realm: str | None
    domain: str
    namespace: str
    bucket: str
    object: str | None  # None: a bucket PAR, whose object name is still to be appended
    par: str | None = None  # the PAR's token, a secret: whoever has the URL can use it
    dedicated: bool = False  # the namespace-prefixed host on customer-oci.com
    notes: tuple[Problem, ...] = field(default=(), compare=False)

    @property
    def kind(self) -> UrlKind:
        if self.par is None:
            return UrlKind.OBJECT
        return UrlKind.BUCKET_PAR if self.object is None else UrlKind.OBJECT_PAR

    @property
    def host(self) -> str:
        if self.dedicated:
            return f"{self.namespace}.objectstorage.{self.region}.{DEDICATED_DOMAIN}"
        return f"objectstorage.{self.region}.{self.domain}"

    def to_url(self) -> str:
        par = f"/p/{self.par}" if self.par is not None else ""
        name = encode_object_name(self.object) if self.object is not None else ""
        return f"https://{self.host}{par}/n/{self.namespace}/b/{self.bucket}/o/{name}"

    def with_object(self, name: str) -> ObjectUrl:
        """A bucket PAR with an object name appended (the seed: "/o/MyCustomImage.qcow2")."""
        if self.kind is UrlKind.OBJECT_PAR:
            raise InvalidValueError(
                f"this is an object PAR, for object {quote(self.object)} already; a second object name cannot be "
                "appended to it: use it as it is, or a bucket PAR (one that ends in /o/)",
                code="url.object-par",
            )
        if self.kind is UrlKind.OBJECT:
            raise InvalidValueError(
                "this is not a pre-authenticated request (no /p/ part); only a bucket PAR takes an object name",
                code="url.not-a-par",
            )
        return replace(self, object=check_object_name(name))

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.to_url(),
            "kind": self.kind.value,
            "region": self.region,
            "realm": self.realm,
            "domain": self.domain,
            "namespace": self.namespace,
            "bucket": self.bucket,
            "object": self.object,
            "par": self.par,
            "dedicated": self.dedicated,
            "problems": [note.to_json() for note in self.notes],
        }


def build_url(
    *, region: str, namespace: str, bucket: str, object_name: str, realm: str | None = None, dedicated: bool = False
) -> ObjectUrl:
    """The URL of an object, each part checked; `realm` defaults to the region's."""
    region = check_region(region)
    known = REGION_REALMS.get(region)
    notes: list[Problem] = []
    if realm is not None:
        realm = realm.strip().lower()
        if realm not in REALM_DOMAINS:
            raise InvalidValueError(
                f"realm {quote(realm)} is not one imagepack knows ({', '.join(REALM_DOMAINS)})", code="url.realm"
            )
        if known is not None and known != realm:
            raise InvalidValueError(f"region {region} is in realm {known}, not {realm}", code="url.realm")
        if known is None:
            notes.append(_unknown_region(region, f"it is taken to be in realm {realm}, as given"))
    elif known is not None:
        realm = known
    else:
        realm = DEFAULT_REALM
        notes.append(_unknown_region(region, f"its realm is taken to be {realm} ({REALM_DOMAINS[realm]})"))
    if dedicated and realm != DEDICATED_REALM:
        raise InvalidValueError(
            f"dedicated (namespace-prefixed) endpoints exist in realm {DEDICATED_REALM} only, not {realm}",
            code="url.dedicated",
        )
    return ObjectUrl(
        region,
        realm,
        REALM_DOMAINS[realm],
        check_namespace(namespace),
        check_bucket(bucket),
        check_object_name(object_name),
        dedicated=dedicated,
        notes=tuple(notes),
    )


def parse_url(text: str) -> ObjectUrl:
    """Any Object Storage URL this module builds (an object, a bucket PAR, an object PAR; shared or dedicated host),
    every part checked and the object name decoded. A URL of anything else is refused, saying what is wrong."""
    shown = quote(text, 80)
    if any(ord(char) < 0x20 or ord(char) == 0x7F or char.isspace() for char in text):
        raise InvalidValueError(
            f"URL {shown} contains a space or a control character (CR, LF, NUL...); a URL has none",
            code="url.invalid",
        )
    parts = urllib.parse.urlsplit(text)
    if parts.scheme.lower() != "https" or not parts.netloc:
        raise InvalidValueError(
            f"{shown} is not an Object Storage URL: it should start with https://objectstorage.", code="url.invalid"
        )
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise InvalidValueError(
            f"URL {shown} has a query or a fragment; an Object Storage URL has neither", code="url.invalid"
        )
    if "@" in parts.netloc or parts.port is not None:
        raise InvalidValueError(
            f"URL {shown} names a user or a port; an Object Storage URL has neither", code="url.invalid"
        )
    host = (parts.hostname or "").lower()
    region, domain, host_namespace = _parse_host(host, shown)
    realm, notes = _realm_of(region, domain, dedicated=host_namespace is not None)
    par, namespace, bucket, object_name = _parse_path(parts.path, shown)
    if host_namespace is not None and host_namespace != namespace:
        raise InvalidValueError(
            f"URL {shown}: the host names namespace {host_namespace} but the path {quote(namespace)}",
            code="url.namespace",
        )
    return ObjectUrl(
        region,
        realm,
        domain,
        namespace,
        bucket,
        object_name,
        par=par,
        dedicated=host_namespace is not None,
        notes=tuple(notes),
    )


def _parse_host(host: str, shown: str) -> tuple[str, str, str | None]:
    """(region, domain, namespace of a dedicated host or None)."""
    labels = host.split(".")
    not_storage = f"URL {shown}: host {quote(host)} is not an Object Storage endpoint (objectstorage.REGION.DOMAIN)"
    if "objectstorage" not in labels:
        raise InvalidValueError(not_storage, code="url.invalid")
    at = labels.index("objectstorage")
    if at > 1 or len(labels) < at + 4:
        raise InvalidValueError(not_storage, code="url.invalid")
    namespace = labels[0] if at == 1 else None
    region = check_region(labels[at + 1])
    domain = ".".join(labels[at + 2 :])
    if namespace is not None:
        if domain != DEDICATED_DOMAIN:
            raise InvalidValueError(
                f"URL {shown}: a namespace-prefixed host is on {DEDICATED_DOMAIN}, not {quote(domain)}",
                code="url.invalid",
            )
        return region, REALM_DOMAINS[DEDICATED_REALM], check_namespace(namespace)
    # objectstorage.REGION.oci.DOMAIN is the newer spelling of the same endpoint
    domain = domain.removeprefix("oci.")
    if domain not in REALM_DOMAINS.values() and not re.fullmatch(r"oraclecloud[0-9]+\.com", domain):
        raise InvalidValueError(
            f"URL {shown}: {quote(domain)} is not an Oracle Cloud domain (oraclecloud.com, oraclegovcloud.com, "
            "oraclegovcloud.uk, oraclecloud.eu, oraclecloudNN.com)",
            code="url.invalid",
        )
    return region, domain, None


def _realm_of(region: str, domain: str, *, dedicated: bool) -> tuple[str | None, list[Problem]]:
    known = REGION_REALMS.get(region)
    if dedicated:
        if known is not None and known != DEDICATED_REALM:
            raise InvalidValueError(
                f"region {region} is in realm {known}, which has no dedicated endpoints", code="url.realm"
            )
        notes = [] if known else [_unknown_region(region, f"it is taken to be in realm {DEDICATED_REALM}")]
        return DEDICATED_REALM, notes
    realms = [realm for realm, its_domain in REALM_DOMAINS.items() if its_domain == domain]
    if known is not None:
        if known not in realms:
            raise InvalidValueError(
                f"region {region} is in realm {known}, whose domain is {REALM_DOMAINS[known]}, not {domain}",
                code="url.realm",
            )
        return known, []
    if len(realms) == 1:
        return realms[0], [_unknown_region(region, f"its realm is taken from the domain: {realms[0]}")]
    numbered = re.fullmatch(r"oraclecloud([0-9]+)\.com", domain)
    if numbered:
        realm = f"oc{numbered[1]}"
        return realm, [_unknown_region(region, f"its realm is taken to be {realm}, from the domain {domain}")]
    return None, [
        _unknown_region(region, f"{domain} is shared by realms {' and '.join(realms)}, so its realm is unknown")
    ]


def _parse_path(path: str, shown: str) -> tuple[str | None, str, str, str | None]:
    """(PAR token or None, namespace, bucket, decoded object name or None for a bucket PAR)."""
    form = "/n/NAMESPACE/b/BUCKET/o/OBJECT, after /p/TOKEN for a PAR"
    rest = path
    par = None
    if rest.startswith("/p/"):
        token, sep, rest = rest[3:].partition("/")
        if not sep or not _PAR_TOKEN.fullmatch(token):
            raise InvalidValueError(f"URL {shown}: the PAR token is missing or malformed ({form})", code="url.par")
        par, rest = token, "/" + rest
    found = re.fullmatch(r"/n/([^/]*)/b/([^/]*)/o(/.*)?", rest, re.DOTALL)
    if found is None:
        missing = [
            part for part, marker in (("namespace", "/n/"), ("bucket", "/b/"), ("object", "/o")) if marker not in rest
        ]
        what = f"has no {' and no '.join(missing)}" if missing else "is not in the form"
        raise InvalidValueError(f"URL {shown} {what} ({form})", code="url.missing-part")
    namespace = check_namespace(_decoded(found[1], "namespace", shown))
    bucket = check_bucket(_decoded(found[2], "bucket name", shown))
    encoded = (found[3] or "/")[1:]
    if not encoded:
        if par is None:
            raise InvalidValueError(f"URL {shown} has no object name after /o/ ({form})", code="url.missing-part")
        return par, namespace, bucket, None
    return par, namespace, bucket, check_object_name(_decoded(encoded, "object name", shown))


def _decoded(raw: str, what: str, shown: str) -> str:
    if _BAD_ESCAPE.search(raw):
        raise InvalidValueError(f"URL {shown}: the {what} has a '%' that is not a %XX escape", code="url.invalid")
    try:
        return urllib.parse.unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise InvalidValueError(
            f"URL {shown}: the {what} decodes to bytes that are not UTF-8", code="url.invalid"
        ) from None


def _unknown_region(region: str, assumption: str) -> Problem:
    return Problem(
        "url.unknown-region",
        f"region {region} is not in imagepack's list of regions (it may be newer); {assumption}",
        severity=Severity.NOTE,
    )


def check_region(region: str) -> str:
    shaped = region.strip().lower()
    if not _REGION.fullmatch(shaped) or len(shaped) > 40:
        raise InvalidValueError(
            f"region {quote(region)} is not a region name like us-ashburn-1 or eu-frankfurt-1", code="url.region"
        )
    return shaped


def check_namespace(namespace: str) -> str:
    if namespace != namespace.lower() and _NAMESPACE.fullmatch(namespace.lower()):
        raise InvalidValueError(
            f"namespace {quote(namespace)} has capital letters; Object Storage namespaces are lower case",
            code="url.namespace",
        )
    if not _NAMESPACE.fullmatch(namespace):
        raise InvalidValueError(
            f"namespace {quote(namespace)} is not an Object Storage namespace (lower-case letters and digits)",
            code="url.namespace",
        )
    return namespace


def check_bucket(bucket: str) -> str:
    if not _BUCKET.fullmatch(bucket):
        raise InvalidValueError(
            f"bucket name {quote(bucket)} is not one Object Storage allows (1 to 256 letters, digits, '-', '_', '.')",
            code="url.bucket",
        )
    return bucket


def check_object_name(name: str) -> str:
    """Object Storage takes any Unicode but NUL, CR and LF, up to 1024 bytes of UTF-8. A '.' or '..' segment is
    refused too: HTTP clients remove dot segments from a URL's path, so the URL would name another object."""
    if not name:
        raise InvalidValueError("the object name is empty", code="url.object-name")
    for char, label in (("\0", "NUL"), ("\r", "CR"), ("\n", "LF")):
        if char in name:
            raise InvalidValueError(
                f"object name {quote(name)} contains a {label} character, which Object Storage does not allow",
                code="url.object-name",
            )
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidValueError(f"object name {quote(name)} is not valid Unicode", code="url.object-name") from None
    if size > MAX_OBJECT_NAME_BYTES:
        raise InvalidValueError(
            f"object name is {size} bytes of UTF-8; Object Storage allows {MAX_OBJECT_NAME_BYTES}",
            code="url.object-name",
        )
    if any(segment in (".", "..") for segment in name.split("/")):
        raise InvalidValueError(
            f"object name {quote(name)} has a '.' or '..' segment, which HTTP clients remove from a URL, so the "
            "URL would name another object; rename it",
            code="url.object-name",
        )
    return name


def encode_object_name(name: str) -> str:
    """Percent-encoded as Object Storage's clients do, the slashes kept (they are part of the name)."""
    return urllib.parse.quote(name, safe="/")
