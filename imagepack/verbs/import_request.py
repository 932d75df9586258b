"""The CreateImage request that imports an image from Object Storage (SPEC §3), filled in from the file itself (its
format, launch mode and operating system), refused where OCI's import would refuse it, and the oci-cli commands
that upload the file and make the request. imagepack uploads nothing: it hands over what that step needs."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagepack.core.errors import ImagepackError, InputError, InvalidValueError, MetadataError
from imagepack.core.problems import Problem, Remedy, Severity
from imagepack.files.checksums import OBJECT_PUT_PART_SIZE
from imagepack.formats import DEFAULT_MAX_SIZE, ImageFormat, SafetyPolicy, spec
from imagepack.formats.partitions import PartitionTable
from imagepack.oci.metadata import LaunchMode, OsName, check_metadata, check_system, import_guidance
from imagepack.oci.metadata.codec import quote
from imagepack.oci.metadata.oslist import canonical_name
from imagepack.oci.objectstorage import (
    REALM_DOMAINS,
    REGION_REALMS,
    ObjectUrl,
    check_bucket,
    check_namespace,
    check_object_name,
    check_region,
)
from imagepack.sources.open import OpenOptions, Source, SourceKind, open_source

IAAS_API_VERSION = "20160918"  # the Core Services API version CreateImage is under
BODY_FILE = "create-image.json"  # the name the printed commands give the request body
MiB = 1024**2
_OCID = re.compile(r"ocid1\.([a-z0-9]+)\.(oc[0-9]+)\.([a-z0-9-]*)\.([a-z0-9]{1,255})")
MAX_TAG_KEY = 100
MAX_TAG_VALUE = 256
MAX_DISPLAY_NAME = 255


@dataclass(frozen=True)
class ObjectLocation:
    """The tuple form of an object: namespace, bucket and name, and the bucket's region where it is known."""

    namespace: str
    bucket: str
    object: str
    region: str | None = None

    @classmethod
    def checked(cls, namespace: str, bucket: str, object_name: str, region: str | None = None) -> ObjectLocation:
        return cls(
            check_namespace(namespace),
            check_bucket(bucket),
            check_object_name(object_name),
            check_region(region) if region is not None else None,
        )


@dataclass(frozen=True)
class Command:
    purpose: str  # "upload" or "import"
    argv: list[str]

    def shell(self) -> str:
        return shlex.join(self.argv)

    def to_json(self) -> dict[str, Any]:
        return {"purpose": self.purpose, "argv": self.argv, "shell": self.shell()}


@dataclass
class ImportRequest:
    """A CreateImage request for one file, and where it was read from."""

    path: Path
    source_format: str  # "qcow2", "vmdk" or "oci"
    compartment_id: str
    display_name: str
    launch_mode: LaunchMode
    location: ObjectUrl | ObjectLocation
    operating_system: str | None = None
    operating_system_version: str | None = None
    freeform_tags: dict[str, str] = field(default_factory=dict)
    defined_tags: dict[str, dict[str, str]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    endpoint: str | None = None  # https://iaas.REGION.DOMAIN, where the region is known

    @property
    def source_image_type(self) -> str | None:
        """QCOW2 or VMDK; a .oci carries its own format, and OCI does not use the field for it."""
        return None if self.source_format == "oci" else self.source_format.upper()

    def body(self) -> dict[str, Any]:
        """The CreateImage request body, keys as the API spells them; optional ones only when they have a value."""
        details: dict[str, Any]
        if isinstance(self.location, ObjectUrl):
            details = {"sourceType": "objectStorageUri", "sourceUri": self.location.to_url()}
        else:
            details = {
                "sourceType": "objectStorageTuple",
                "namespaceName": self.location.namespace,
                "bucketName": self.location.bucket,
                "objectName": self.location.object,
            }
        if self.operating_system is not None:
            details["operatingSystem"] = self.operating_system
            details["operatingSystemVersion"] = self.operating_system_version
        if self.source_image_type is not None:
            details["sourceImageType"] = self.source_image_type
        body: dict[str, Any] = {
            "compartmentId": self.compartment_id,
            "displayName": self.display_name,
            "launchMode": self.launch_mode.value,
            "imageSourceDetails": details,
        }
        if self.freeform_tags:
            body["freeformTags"] = dict(self.freeform_tags)
        if self.defined_tags:
            body["definedTags"] = {namespace: dict(tags) for namespace, tags in self.defined_tags.items()}
        return body

    def commands(self) -> list[Command]:
        return [self._upload(), self._import()]

    def _region(self) -> str | None:
        return self.location.region

    def _upload(self) -> Command:
        location = self.location
        name = location.object
        assert name is not None  # a bucket PAR without a name was refused
        argv = [
            "oci", "os", "object", "put",
            "--bucket-name", location.bucket,
            "--namespace", location.namespace,
            "--name", name,
            "--file", str(self.path),
            "--part-size", str(OBJECT_PUT_PART_SIZE // MiB),  # MiB: the parts `imagepack checksum` assumes
        ]  # fmt: skip
        return Command("upload", argv + _region_option(self._region()))

    def _import(self) -> Command:
        if self.source_format == "oci":
            # `oci compute image import` cannot import a .oci (it always sends sourceImageType); a raw request
            # POSTs the body as it is.
            assert self.endpoint is not None
            argv = [
                "oci", "raw-request",
                "--http-method", "POST",
                "--target-uri", f"{self.endpoint}/{IAAS_API_VERSION}/images",
                "--request-body", f"file://{BODY_FILE}",
            ]  # fmt: skip
            return Command("import", argv)
        if isinstance(self.location, ObjectUrl):
            argv = ["oci", "compute", "image", "import", "from-object-uri", "--uri", self.location.to_url()]
        else:
            argv = [
                "oci", "compute", "image", "import", "from-object",
                "--namespace", self.location.namespace,
                "--bucket-name", self.location.bucket,
                "--name", self.location.object,
            ]  # fmt: skip
        argv += [
            "--compartment-id", self.compartment_id,
            "--display-name", self.display_name,
            "--launch-mode", self.launch_mode.value,
        ]  # fmt: skip
        if self.source_image_type is not None:
            argv += ["--source-image-type", self.source_image_type]
        if self.operating_system is not None and self.operating_system_version is not None:
            argv += ["--operating-system", self.operating_system]
            argv += ["--operating-system-version", self.operating_system_version]
        if self.freeform_tags:
            argv += ["--freeform-tags", _compact_json(self.freeform_tags)]
        if self.defined_tags:
            argv += ["--defined-tags", _compact_json(self.defined_tags)]
        # the tuple form reads the bucket of the region the request goes to
        region = None if isinstance(self.location, ObjectUrl) else self.location.region
        return Command("import", argv + _region_option(region))

    def to_json(self) -> dict[str, Any]:
        return {
            "source": str(self.path),
            "format": self.source_format,
            "body": self.body(),
            "body_file": BODY_FILE,
            "commands": [command.to_json() for command in self.commands()],
            "problems": [problem.to_json() for problem in self.problems],
        }


def _region_option(region: str | None) -> list[str]:
    return ["--region", region] if region is not None else []


def _compact_json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# ---------------------------------------------------------------------------------------------------------------
# Building the request: every typed value first, then the file.


def import_request(
    path: Path,
    *,
    compartment_id: str,
    display_name: str,
    location: ObjectUrl | ObjectLocation,
    launch_mode: LaunchMode | None = None,
    operating_system: str | None = None,
    operating_system_version: str | None = None,
    freeform_tags: Sequence[str] = (),
    defined_tags: Sequence[str] = (),
    strict: bool = False,
    os_unlisted: bool = False,
    policy: SafetyPolicy = SafetyPolicy(),
) -> ImportRequest:
    """The request importing `path` from `location`, once the file has passed every check `open_source` makes and
    the ones OCI's import makes. Tags are typed as KEY=VALUE and NAMESPACE.KEY=VALUE."""
    compartment_id = compartment_id.strip()
    ocid_realm = check_compartment_ocid(compartment_id)
    url_realm = _realm_of(location)
    if url_realm is not None and url_realm != ocid_realm:
        raise InvalidValueError(
            f"the compartment is in realm {ocid_realm} but the object in {url_realm}; an image is imported within "
            "one realm",
            code="import.realm",
        )
    if isinstance(location, ObjectUrl) and location.object is None:
        raise InvalidValueError(
            "the URL is a bucket PAR: append the object name to it (after /o/)", code="import.bucket-par"
        )
    request = ImportRequest(
        path,
        "unknown",
        compartment_id,
        check_display_name(display_name),
        launch_mode or LaunchMode.PARAVIRTUALIZED,
        location,
        freeform_tags=parse_freeform_tags(freeform_tags),
        defined_tags=parse_defined_tags(defined_tags),
        endpoint=_endpoint(location, ocid_realm),
    )
    if isinstance(location, ObjectUrl):
        request.problems.extend(location.notes)
    if (operating_system is None) != (operating_system_version is None):
        raise InvalidValueError("give the operating system and its version together", code="import.os")
    try:
        with open_source(path, OpenOptions(policy=policy)) as source:
            os_name = OsName.AS_TYPED if os_unlisted else OsName.GIVEN
            _fill_from_source(request, source, launch_mode, operating_system, operating_system_version, strict, os_name)
    except ImagepackError as e:
        if e.code == "image.size-limit":  # said in OCI's terms: no setting lets OCI import it
            raise InputError(f"{path}: {_too_large(e.message)}", code="import.too-large") from None
        raise
    return request


def _realm_of(location: ObjectUrl | ObjectLocation) -> str | None:
    if isinstance(location, ObjectUrl):
        return location.realm
    return REGION_REALMS.get(location.region) if location.region is not None else None


def _endpoint(location: ObjectUrl | ObjectLocation, realm: str) -> str | None:
    """The Core Services endpoint of the bucket's region (where a raw request goes), when the region is known."""
    if location.region is None:
        return None
    domain = location.domain if isinstance(location, ObjectUrl) else REALM_DOMAINS.get(realm)
    return f"https://iaas.{location.region}.{domain}" if domain is not None else None


def _too_large(message: str) -> str:
    found = re.search(r"virtual size (\d+) bytes", message)
    size = f"virtual size {found[1]} bytes" if found else "its virtual size"
    return f"{size} is above OCI's import limit of {DEFAULT_MAX_SIZE // 1024**3} GiB"


def _fill_from_source(
    request: ImportRequest,
    source: Source,
    launch_mode: LaunchMode | None,
    os_name: str | None,
    os_version: str | None,
    strict: bool,
    os_name_check: OsName,
) -> None:
    path = request.path
    _require_importable(path, source)
    if source.virtual_size > DEFAULT_MAX_SIZE:
        raise InputError(f"{path}: {_too_large(f'virtual size {source.virtual_size} bytes')}", code="import.too-large")
    if source.archive is not None:
        metadata = source.archive.metadata
        request.source_format = "oci"
        if request.endpoint is None:
            raise InvalidValueError(
                "a .oci is imported with a raw request to the Core Services endpoint of the bucket's region; "
                "give the region",
                code="import.region",
            )
        if launch_mode is not None and launch_mode is not metadata.launch_mode:
            raise InvalidValueError(
                f"a .oci imports in the launch mode its metadata gives ({metadata.launch_mode}), not {launch_mode}",
                code="import.launch-mode",
            )
        request.launch_mode = metadata.launch_mode
        stored = (metadata.operating_system, metadata.operating_system_version)
        if os_name is not None and (canonical_name(os_name), (os_version or "").strip()) != stored:
            raise InvalidValueError(
                f"the archive's metadata gives the operating system {quote(' '.join(stored))}; the request "
                "cannot say another: change the metadata instead",
                code="import.os",
            )
        request.operating_system, request.operating_system_version = stored
        found = check_metadata(metadata, strict=strict, os_name=OsName.REPORTED, fix=Remedy.SET_OS)
        _refuse_errors(found, f"{path}: metadata", MetadataError)
    else:
        request.source_format = source.disk.format.value
        if os_name is not None and os_version is not None:
            request.operating_system, request.operating_system_version = canonical_name(os_name), os_version.strip()
            found = check_system(
                request.operating_system,
                request.operating_system_version,
                request.launch_mode,
                strict=strict,
                os_name=os_name_check,
            )
            _refuse_errors(found, "the operating system", InvalidValueError)
        else:
            found = [
                Problem(
                    "import.os-missing",
                    "the request names no operating system; OCI then shows none for the image, and a Windows "
                    "image needs its release and edition named",
                    remedy=Remedy.STATE_OS,
                    severity=Severity.WARNING,
                )
            ]
        if launch_mode is None and source.disk.format is ImageFormat.QCOW2:
            found.append(
                Problem(
                    "import.exported-qcow2",
                    "launch mode PARAVIRTUALIZED; a QCOW2 that OCI exported imports in NATIVE mode, which "
                    "imagepack cannot tell from the file",
                    remedy=Remedy.STATE_LAUNCH_MODE,
                    severity=Severity.NOTE,
                    value="NATIVE",
                )
            )
        layout = source.disk.layout
        if layout is not None and layout.table is PartitionTable.NONE:
            found.append(
                Problem(
                    "import.no-partition-table",
                    "the disk has no MBR or GPT partition table; OCI imports it but boots only a disk with one "
                    "and a boot loader",
                    severity=Severity.WARNING,
                )
            )
    request.problems.extend(found)
    if request.operating_system is not None and request.operating_system_version is not None:
        request.problems.extend(import_guidance(request.operating_system, request.operating_system_version))


def _require_importable(path: Path, source: Source) -> None:
    """What OCI's import takes: a .oci, a QCOW2, a single-file VMDK (monolithicSparse or streamOptimized), as
    uploaded: not compressed, not an OVA or GCE tarball."""
    if source.compression is not None:
        raise InputError(
            f"{path}: is a {source.compression} stream; OCI imports the file as it is uploaded, so decompress it first",
            code="import.compressed",
        )
    if source.kind in (SourceKind.OVA, SourceKind.GCE):
        what = "an OVA" if source.kind is SourceKind.OVA else "a GCE image tarball"
        raise InputError(
            f"{path}: is {what}; OCI imports qcow2, vmdk and .oci files: convert its disk to one of them",
            code="import.format",
        )
    if source.archive is not None:
        return
    disk = source.disk
    entry = spec(disk.format)
    if entry.oci_imports(disk.inspection):
        return
    if entry.oci_subformats:
        takes = " or ".join(sorted(entry.oci_subformats))
        raise InputError(
            f"{path}: OCI imports {disk.format.value} only as {takes}, not {disk.inspection.subformat}",
            code="import.subformat",
        )
    export_only = " (an export-only format for OCI)" if disk.format in (ImageFormat.VHD, ImageFormat.VDI) else ""
    raise InputError(
        f"{path}: OCI imports qcow2, vmdk and .oci files, not {disk.format.value}{export_only}: convert it first",
        code="import.format",
    )


def _refuse_errors(found: list[Problem], where: str, error: type[ImagepackError]) -> None:
    errors = [problem for problem in found if problem.severity is Severity.ERROR]
    if errors:
        first = errors[0]
        raise error(f"{where}: {first.message}", code=first.code, remedy=first.remedy, value=first.value)


# ---------------------------------------------------------------------------------------------------------------
# Typed values


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
