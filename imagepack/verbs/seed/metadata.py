"""meta-data and network-config: checked as cloud-init's NoCloud source reads them, and meta-data generated when
none is given."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

import yaml

from imagepack.core.errors import InputError, InvalidValueError
from imagepack.verbs.seed.documents import SeedFile, load_mapping

DEFAULT_HOSTNAME = "imagepack"
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def check_hostname(name: str) -> str:
    """An RFC 1123 host name (dot-separated labels of letters, digits and inner hyphens), as cloud-init sets it."""
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise InvalidValueError(
            f"{name!r}: not a host name (labels of letters, digits and inner hyphens, 63 characters at most, "
            "joined by dots)"
        )
    return name


def check_instance_id(value: str) -> str:
    if not value.strip() or any(ord(c) < 0x20 or c == "\x7f" for c in value):
        raise InvalidValueError(f"{value!r}: an instance ID must be non-empty text without control characters")
    return value


def content_instance_id(parts: Iterable[bytes | None]) -> str:
    """`iid-` and 16 hex digits of a SHA-256 over the seed's other files: the same seed gets the same ID (a boot
    of the same image is not a new instance), a changed one a new ID, so cloud-init runs its per-instance
    modules again instead of skipping them as already done."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(b"\x00" if part is None else b"\x01" + len(part).to_bytes(8, "big") + part)
    return "iid-" + digest.hexdigest()[:16]


def generate_meta_data(instance_id: str, hostname: str) -> bytes:
    document = {"instance-id": instance_id, "local-hostname": hostname}
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False, allow_unicode=True).encode()


def check_meta_data(file: SeedFile) -> dict[object, object]:
    """A YAML mapping (cloud-init uses "nocloud" as the instance ID when it has none)."""
    document = load_mapping(file, "meta-data")
    instance_id = document.get("instance-id")
    if instance_id is not None and not isinstance(instance_id, str | int):
        raise InputError(f"{file.label}: instance-id must be a string", code="seed.invalid-meta-data")
    return document


def check_network_config(file: SeedFile) -> int:
    """Network configuration version 1 or 2, at the top or under a `network:` key; returns the version."""
    document = load_mapping(file, "network-config")
    inner = document.get("network")
    version = inner.get("version") if isinstance(inner, dict) else document.get("version")
    if version not in (1, 2):
        found = "has no version" if version is None else f"has version {version!r}"
        raise InputError(
            f"{file.label}: {found}; cloud-init reads network-config version 1 or 2 ('version: 2' at the top)",
            code="seed.invalid-network-config",
        )
    return int(version)
