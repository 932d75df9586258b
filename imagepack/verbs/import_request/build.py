"""Building an import request: every typed value first, then the file, refused where OCI's import would refuse
it, its format, launch mode and operating system read from it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from imagepack.core.errors import ImagepackError, InputError, InvalidValueError, MetadataError
from imagepack.core.problems import Problem, Remedy, Severity
from imagepack.formats import DEFAULT_MAX_SIZE, ImageFormat, SafetyPolicy, spec
from imagepack.formats.partitions import PartitionTable
from imagepack.oci.metadata import ImageMetadata, LaunchMode, OsName, check_metadata, check_system, import_guidance
from imagepack.oci.metadata.codec import quote
from imagepack.oci.metadata.oslist import canonical_name
from imagepack.oci.objectstorage import REALM_DOMAINS, REGION_REALMS, ObjectUrl
from imagepack.sources.open import OpenOptions, Source, SourceKind, open_source
from imagepack.verbs.import_request.request import ImportRequest, ObjectLocation
from imagepack.verbs.import_request.values import (
    check_compartment_ocid,
    check_display_name,
    parse_defined_tags,
    parse_freeform_tags,
)


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
            asked = _Asked(launch_mode, operating_system, operating_system_version, strict, os_name)
            _fill_from_source(request, source, asked)
    except ImagepackError as e:
        if e.code == "image.size-limit":  # said in OCI's terms: no setting lets OCI import it
            size = next((problem.size for problem in e.problems if problem.size is not None), None)
            raise _too_large(path, size) from None
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


def _too_large(path: Path, virtual_size: int | None) -> InputError:
    """A disk OCI will not import, in OCI's terms: no setting of imagepack's lets OCI import it."""
    size = f"virtual size {virtual_size} bytes" if virtual_size is not None else "its virtual size"
    return InputError(
        f"{size} is above OCI's import limit of {DEFAULT_MAX_SIZE // 1024**3} GiB",
        subject=path,
        code="import.too-large",
    )


@dataclass(frozen=True)
class _Asked:
    """What the user asked of the request that the file may confirm, contradict or leave to them."""

    launch_mode: LaunchMode | None
    os_name: str | None
    os_version: str | None
    strict: bool
    os_name_check: OsName


def _fill_from_source(request: ImportRequest, source: Source, asked: _Asked) -> None:
    path = request.path
    _require_importable(path, source)
    if source.virtual_size > DEFAULT_MAX_SIZE:
        raise _too_large(path, source.virtual_size)
    if source.archive is not None:
        found = _fill_from_archive(request, source.archive.metadata, asked)
    else:
        found = _fill_from_disk(request, source, asked)
    request.problems.extend(found)
    if request.operating_system is not None and request.operating_system_version is not None:
        request.problems.extend(import_guidance(request.operating_system, request.operating_system_version))


def _fill_from_archive(request: ImportRequest, metadata: ImageMetadata, asked: _Asked) -> list[Problem]:
    """A .oci: its metadata gives the launch mode and operating system; the request may repeat them, not change them."""
    request.source_format = "oci"
    if request.endpoint is None:
        raise InvalidValueError(
            "a .oci is imported with a raw request to the Core Services endpoint of the bucket's region; "
            "give the region",
            code="import.region",
        )
    if asked.launch_mode is not None and asked.launch_mode is not metadata.launch_mode:
        raise InvalidValueError(
            f"a .oci imports in the launch mode its metadata gives ({metadata.launch_mode}), not {asked.launch_mode}",
            code="import.launch-mode",
        )
    request.launch_mode = metadata.launch_mode
    stored = (metadata.operating_system, metadata.operating_system_version)
    if asked.os_name is not None and (canonical_name(asked.os_name), (asked.os_version or "").strip()) != stored:
        raise InvalidValueError(
            f"the archive's metadata gives the operating system {quote(' '.join(stored))}; the request "
            "cannot say another: change the metadata instead",
            code="import.os",
        )
    request.operating_system, request.operating_system_version = stored
    found = check_metadata(metadata, strict=asked.strict, os_name=OsName.REPORTED, fix=Remedy.SET_OS)
    _refuse_errors(found, f"{request.path}: metadata", MetadataError)
    return found


def _fill_from_disk(request: ImportRequest, source: Source, asked: _Asked) -> list[Problem]:
    """A disk image: the operating system is what the user typed, checked; what the file cannot say is noted."""
    request.source_format = source.disk.format.value
    if asked.os_name is not None and asked.os_version is not None:
        request.operating_system = canonical_name(asked.os_name)
        request.operating_system_version = asked.os_version.strip()
        found = check_system(
            request.operating_system,
            request.operating_system_version,
            request.launch_mode,
            strict=asked.strict,
            os_name=asked.os_name_check,
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
    if asked.launch_mode is None and source.disk.format is ImageFormat.QCOW2:
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
    return found


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
        raise error.from_problem(errors[0], subject=where)


# ---------------------------------------------------------------------------------------------------------------
# Typed values
