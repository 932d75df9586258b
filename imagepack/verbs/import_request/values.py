"""The values a user types into an import request, checked as OCI checks them: the compartment's OCID, the
display name, and freeform and defined tags."""

from __future__ import annotations

import re
from collections.abc import Sequence

from imagepack.core.errors import InvalidValueError
from imagepack.oci.metadata.codec import quote

_OCID = re.compile(r"ocid1\.([a-z0-9]+)\.(oc[0-9]+)\.([a-z0-9-]*)\.([a-z0-9]{1,255})")
MAX_TAG_KEY = 100
MAX_TAG_VALUE = 256
MAX_DISPLAY_NAME = 255


def check_compartment_ocid(text: str) -> str:
    """The realm of a compartment's OCID (a tenancy's is its root compartment's): ocid1.compartment.oc1..UNIQUE."""
    found = _OCID.fullmatch(text.strip())
    if found is None:
        raise InvalidValueError(
            f"compartment {quote(text)} is not an OCID (ocid1.compartment.oc1..UNIQUE_ID)", code="import.ocid"
        )
    kind, realm, region, _ = found.groups()
    if kind not in ("compartment", "tenancy"):
        raise InvalidValueError(
            f"{quote(text, 40)} is the OCID of {'an' if kind[0] in 'aeiou' else 'a'} {kind}; an image goes into a "
            "compartment (ocid1.compartment..., or ocid1.tenancy... for the root compartment)",
            code="import.ocid",
        )
    if region:
        raise InvalidValueError(
            f"{quote(text, 40)} names a region ({region}); a {kind}'s OCID names none (ocid1.{kind}.{realm}..ID)",
            code="import.ocid",
        )
    return realm


def check_display_name(name: str) -> str:
    if not name.strip() or len(name) > MAX_DISPLAY_NAME or not name.isprintable():
        raise InvalidValueError(
            f"display name {quote(name)} must be 1 to {MAX_DISPLAY_NAME} printable characters",
            code="import.display-name",
        )
    return name


def _tag_part(text: str, what: str, limit: int, typed: str) -> str:
    if not text or len(text) > limit or not text.isprintable():
        raise InvalidValueError(
            f"tag {quote(typed)}: the {what} must be 1 to {limit} printable characters", code="import.tag"
        )
    return text


def parse_freeform_tags(typed: Sequence[str]) -> dict[str, str]:
    """KEY=VALUE texts as freeformTags; a key given twice is refused, not silently overwritten."""
    tags: dict[str, str] = {}
    for text in typed:
        key, sep, value = text.partition("=")
        if not sep:
            raise InvalidValueError(f"tag {quote(text)} is not KEY=VALUE", code="import.tag")
        key = _tag_part(key.strip(), "key", MAX_TAG_KEY, text)
        if key in tags:
            raise InvalidValueError(f"tag {quote(key)} is given twice", code="import.tag")
        tags[key] = _tag_part(value, "value", MAX_TAG_VALUE, text) if value else ""
    return tags


def parse_defined_tags(typed: Sequence[str]) -> dict[str, dict[str, str]]:
    """NAMESPACE.KEY=VALUE texts as definedTags {NAMESPACE: {KEY: VALUE}}."""
    tags: dict[str, dict[str, str]] = {}
    for text in typed:
        name, sep, value = text.partition("=")
        namespace, dot, key = name.strip().partition(".")
        if not sep or not dot:
            raise InvalidValueError(f"defined tag {quote(text)} is not NAMESPACE.KEY=VALUE", code="import.tag")
        namespace = _tag_part(namespace, "namespace", MAX_TAG_KEY, text)
        key = _tag_part(key, "key", MAX_TAG_KEY, text)
        if key in tags.get(namespace, {}):
            raise InvalidValueError(f"defined tag {quote(namespace + '.' + key)} is given twice", code="import.tag")
        tags.setdefault(namespace, {})[key] = _tag_part(value, "value", MAX_TAG_VALUE, text) if value else ""
    return tags
