"""Whether OCI can use a metadata combination: the launch mode and its devices, the operating system against OCI's
list, the shapes, and the capability data."""

from __future__ import annotations

import re

from imagepack.errors import MetadataError
from imagepack.oci.metadata import oslist
from imagepack.oci.metadata.codec import quote
from imagepack.oci.metadata.model import (
    CAPS_FORMAT_VERSION,
    METADATA_VERSION,
    PV_ATTACHMENT_VERSIONS,
    ImageMetadata,
    LaunchMode,
    VolumeType,
    json_value,
    number_text,
)
from imagepack.partitions import Firmware

# Devices that only exist in one kind of mode: emulated hardware, or paravirtual and passthrough devices.
_EMULATED_DEVICES = frozenset({"E1000", "IDE", "SCSI"})
_PV_OR_PASSTHROUGH_DEVICES = frozenset({"VFIO", "PARAVIRTUALIZED", "ACCELERATEDPV"})


# Capability names that describe a launch option; their "values" must include the option's value.
_CAPABILITY_FIELDS = {
    "Compute.Firmware": "firmware",
    "Compute.LaunchMode": "launchOptionsSource",
    "Network.AttachmentType": "networkType",
    "Storage.BootVolumeType": "bootVolumeType",
    "Storage.RemoteDataVolumeType": "remoteDataVolumeType",
    "Storage.LocalDataVolumeType": "localDataVolumeType",
    "Storage.ParaVirtualization.AttachmentVersion": "pvAttachmentVersion",
    "Storage.ParaVirtualization.EncryptionInTransit": "pvEncryptionInTransitEnabled",
    "Storage.ConsistentVolumeNaming": "consistentVolumeNamingEnabled",
}


def shape_architecture(name: str) -> str | None:
    """'arm', 'amd' or 'intel' for a public VM shape name whose processor it tells; None otherwise (internal names)."""
    parts = name.split(".")
    if len(parts) < 3 or parts[0] != "VM":
        return None
    family, model = parts[1], parts[2]
    if family in ("Standard", "DenseIO", "Optimized"):
        if re.fullmatch(r"A\d+", model) or model == "Ampere":
            return "arm"
        if re.fullmatch(r"E\d+", model) or model == "AMD":
            return "amd"
        if model == "Intel":
            return "intel"
    if re.fullmatch(r"(?:Standard[123]|DenseIO[12]|Optimized3)", family):
        return "intel"
    return None


def check_metadata(meta: ImageMetadata, *, strict: bool = False) -> tuple[list[str], list[str]]:
    """(errors, warnings) about what OCI would refuse or run badly; each message ends with what to do.

    Errors: a mode with devices it cannot have (NATIVE or PARAVIRTUALIZED with E1000, IDE or SCSI; EMULATED with
    VFIO, PARAVIRTUALIZED or ACCELERATEDPV), pvAttachmentVersion other than 1, 2 or null, Windows or an Arm or AMD
    shape in another mode than PARAVIRTUALIZED, an Arm shape with BIOS or with Windows, Arm and x86 shapes together,
    an empty shape range, an empty operating system or version.

    Windows rule: operatingSystem and operatingSystemVersion together must name exactly one Windows Server release
    (2012, 2012 R2, 2016, 2019, 2022) and exactly one edition (Standard, Datacenter), because OCI licenses the image
    by them: "Windows" + "Server 2019 Standard" and "Windows Server" + "2019 Datacenter" pass, "Windows" + "2019"
    does not.

    Warnings (errors when `strict`): a system not on OCI's list (oslist), with the closest known name for a typo.
    A note (a warning starting with NOTE, never an error): a release of a listed system newer than the list, such
    as Oracle Linux 10 or Windows Server 2025. Warnings only: EMULATED with UEFI_64,
    attachment version or in-transit encryption without paravirtualized volumes, capability data that does not allow
    the launch options, a capability schema version that is not a UUID, a shape listed twice."""
    errors: list[str] = []
    warnings: list[str] = []
    launch = meta.launch
    mode = launch.launch_options_source
    devices = {"networkType": launch.network_type, **launch.volume_types}

    if meta.version != METADATA_VERSION:
        errors.append(f"version is {meta.version}; set it to {METADATA_VERSION}")
    if mode in (LaunchMode.NATIVE, LaunchMode.PARAVIRTUALIZED):
        for key, value in devices.items():
            if value is not None and value.value in _EMULATED_DEVICES:
                better = "VFIO" if key == "networkType" else "PARAVIRTUALIZED"
                errors.append(
                    f"launchOptionsSource {mode} cannot use the emulated device {key} {value}; "
                    f"set {key}={better}, or launchMode=EMULATED"
                )
    elif mode is LaunchMode.EMULATED:
        for key, value in devices.items():
            if value is not None and value.value in _PV_OR_PASSTHROUGH_DEVICES:
                better = "E1000" if key == "networkType" else "IDE"
                errors.append(
                    f"launchOptionsSource EMULATED has no paravirtual or passthrough devices, but {key} is {value}; "
                    f"set {key}={better}, or launchMode=PARAVIRTUALIZED"
                )
        if launch.firmware is Firmware.UEFI_64:
            warnings.append(
                "launchOptionsSource EMULATED with firmware UEFI_64: emulated images normally boot with BIOS; "
                "set firmware=BIOS if the disk has a BIOS boot loader, or use launchMode=PARAVIRTUALIZED"
            )

    pv_volumes = [key for key, value in launch.volume_types.items() if value is VolumeType.PARAVIRTUALIZED]
    pv_version = launch.pv_attachment_version
    if pv_version is not None and pv_version not in PV_ATTACHMENT_VERSIONS:
        errors.append(f"pvAttachmentVersion is {pv_version}; OCI knows 1 and 2: set pvAttachmentVersion=2")
    elif pv_version is None and pv_volumes:
        verb = "is" if len(pv_volumes) == 1 else "are"
        warnings.append(
            f"pvAttachmentVersion is null but {', '.join(pv_volumes)} {verb} PARAVIRTUALIZED; set pvAttachmentVersion=2"
        )
    elif pv_version is not None and not pv_volumes:
        warnings.append(
            f"pvAttachmentVersion {pv_version} has no effect without a PARAVIRTUALIZED volume; "
            "set pvAttachmentVersion=null"
        )
    if launch.pv_encryption_in_transit_enabled and not ({"bootVolumeType", "remoteDataVolumeType"} & set(pv_volumes)):
        warnings.append(
            "pvEncryptionInTransitEnabled is true but no boot or remote data volume is PARAVIRTUALIZED, so there is "
            "nothing to encrypt; set pvEncryptionInTransitEnabled=false"
        )

    _check_system(meta, strict, errors, warnings)
    _check_shapes(meta, errors, warnings)
    _check_capabilities(meta, warnings)
    caps_version = meta.image_caps_format_version
    if caps_version is not None and not CAPS_FORMAT_VERSION.fullmatch(caps_version):
        warnings.append(
            f"imageCapsFormatVersion {quote(caps_version)} is not a UUID as OCI writes it; "
            "set imageCapsFormatVersion=null unless it comes from OCI"
        )
    return errors, warnings


def _check_system(meta: ImageMetadata, strict: bool, errors: list[str], warnings: list[str]) -> None:
    name, version = meta.operating_system, meta.operating_system_version
    if not name.strip():
        errors.append("operatingSystem is empty; set it, e.g. operatingSystem='Oracle Linux'")
        return
    if not version.strip():
        errors.append(f"operatingSystemVersion is empty; set the version of {name}, e.g. operatingSystemVersion=8")
        return
    if not oslist.is_windows(name):
        _check_listed(name, version, strict, errors, warnings)
        return
    if meta.launch_mode is not LaunchMode.PARAVIRTUALIZED:
        errors.append(
            f"Windows images import in PARAVIRTUALIZED mode only, not {meta.launch_mode}; "
            "set launchMode=PARAVIRTUALIZED"
        )
    text = f"{name} {version}"
    releases, editions = oslist.windows_releases(text), oslist.windows_editions(text)
    example = "e.g. operatingSystem=Windows operatingSystemVersion='Server 2019 Standard'"
    if len(releases) != 1:
        problem = "names no Windows Server release" if not releases else f"names {len(releases)} releases"
        errors.append(
            f"Windows {quote(version)} {problem}; OCI licenses Windows by release and edition: name the one the "
            f"image holds ({', '.join(oslist.WINDOWS_RELEASES)}), {example}"
        )
    if len(editions) != 1:
        problem = "names no edition" if not editions else "names both editions"
        errors.append(
            f"Windows {quote(version)} {problem}; OCI licenses Windows by release and edition: name the one the "
            f"image holds (Standard or Datacenter), {example}"
        )
    if len(releases) == 1 and len(editions) == 1:
        _check_listed(name, version, strict, errors, warnings)


NOTE = "note: "  # starts a warning that only informs: OCI may well accept the value, and --strict lets it pass


def _check_listed(name: str, version: str, strict: bool, errors: list[str], warnings: list[str]) -> None:
    """Whether the system is on OCI's list (oslist): a release newer than the list is a note, since the list ages
    and OCI adds releases; an older or skipped release, or a name the list does not have, is a warning."""
    found = oslist.standing(name, version)
    if found.supported:
        return
    shown = f"{_short(name)} {_short(version)}"
    if found.system is not None and found.newer:
        warnings.append(
            f"{NOTE}{shown} is newer than the releases on OCI's list this imagepack knows "
            f"({found.system.releases()}); the import may still accept it"
        )
        return
    unsupported = "or expect no support from Oracle"
    if found.system is not None:
        message = f"{shown} is not on OCI's list ({found.system.describe()}); use a listed release, {unsupported}"
    elif (suggestion := oslist.closest_name(name)) is not None:
        message = (
            f"operatingSystem {quote(name, 32)} is not on OCI's list; did you mean {suggestion}? "
            f"Fix the name, {unsupported}"
        )
    else:
        message = (
            f"operatingSystem {quote(name, 32)} is not on OCI's list ({oslist.family_names()}); "
            f"check the spelling, {unsupported}"
        )
    (errors if strict else warnings).append(message)


def _short(text: str, limit: int = 40) -> str:
    """A value typed by a person, inside a message that must stay one short line."""
    text = "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_shapes(meta: ImageMetadata, errors: list[str], warnings: list[str]) -> None:
    seen: set[str] = set()
    arm: list[str] = []
    x86: list[str] = []
    windows = oslist.is_windows(meta.operating_system)
    for shape in meta.shapes:
        if not shape.name.strip():
            errors.append("a shape has an empty internalShapeName; remove it or give the shape's name")
            continue
        if shape.name in seen:
            warnings.append(f"shape {shape.name} is listed twice; remove one")
        seen.add(shape.name)
        for what, limits, keys in (
            ("ocpuConstraints", shape.ocpu, "min-max"),
            ("memoryConstraints", shape.memory, "minInGBs-maxInGBs"),
        ):
            if limits is not None and (limits[0] < 0 or limits[0] > limits[1]):
                errors.append(
                    f"shape {shape.name}: {what} {number_text(limits[0])}-{number_text(limits[1])} is an empty "
                    f"range; give {keys} with 0 <= min <= max, or no constraint"
                )
        family = shape_architecture(shape.name)
        if family == "arm":
            arm.append(shape.name)
            if meta.launch.firmware is Firmware.BIOS:
                errors.append(f"shape {shape.name} is Arm, which boots with UEFI only; set firmware=UEFI_64")
            if windows:
                errors.append(f"shape {shape.name} is Arm and Windows Server runs on x86 only; remove the shape")
        elif family is not None:
            x86.append(shape.name)
        if family in ("arm", "amd") and meta.launch_mode is not LaunchMode.PARAVIRTUALIZED:
            errors.append(
                f"shape {shape.name} ({'Arm' if family == 'arm' else 'AMD'}) supports PARAVIRTUALIZED mode only, "
                f"not {meta.launch_mode}; set launchMode=PARAVIRTUALIZED or remove the shape"
            )
    if arm and x86:
        errors.append(
            f"the shapes mix Arm ({', '.join(arm)}) and x86 ({', '.join(x86)}), but an image is built for one "
            "processor architecture; remove the shapes of the other one"
        )


def _check_capabilities(meta: ImageMetadata, warnings: list[str]) -> None:
    try:
        data = meta.capabilities()
    except MetadataError as exc:
        warnings.append(f"{exc}; set imageCapabilityData to null or to the capabilities OCI exported")
        return
    if data is None:
        return
    capabilities = data.get("capabilities")
    if not isinstance(capabilities, dict):
        warnings.append(
            'imageCapabilityData has no "capabilities" object, so OCI may refuse it; '
            "set it to null or to the capabilities OCI exported"
        )
        return
    options = meta.launch.to_json()
    for name, key in _CAPABILITY_FIELDS.items():
        descriptor = capabilities.get(name)
        values = descriptor.get("values") if isinstance(descriptor, dict) else None
        value = options.get(key)
        if not isinstance(values, list) or value is None or value in values:
            continue
        shown = ", ".join(str(json_value(v)).lower() if isinstance(v, bool) else str(v) for v in values)
        warnings.append(
            f"imageCapabilityData allows {name} {shown or 'nothing'}, but {key} is {quote(value)}; "
            f"set {key} to one of those, or imageCapabilityData to match"
        )
