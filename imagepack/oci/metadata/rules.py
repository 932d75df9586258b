"""Whether OCI can use a metadata combination: the launch mode and its devices, the operating system against OCI's
list, the shapes, and the capability data. Each rule reports a Problem with its own stable code (check_metadata
lists them)."""

from __future__ import annotations

import re

from imagepack.core.errors import MetadataError
from imagepack.core.problems import Problem, Remedy, Severity
from imagepack.formats.partitions import Firmware
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
from imagepack.oci.metadata.systems import OsName, check_system

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


def check_metadata(
    meta: ImageMetadata,
    *,
    strict: bool = False,
    os_name: OsName = OsName.GIVEN,
    fix: Remedy = Remedy.STATE_OS,
) -> list[Problem]:
    """What OCI would refuse or run badly, errors first; each message ends with what to do, in metadata keys.

    `strict` makes the warnings about OCI's list of systems errors; a note never becomes one. `os_name` says how a
    system name one typo from a listed one is taken (by default refused: the name is being given); `fix` is what
    changes the system: the options that give it (pack's --os, the default) or, for an archive's, meta set
    (SET_OS). The codes, one per rule:

    Errors:
      metadata.version                 version is not 2
      metadata.emulated-device         NATIVE or PARAVIRTUALIZED with E1000, IDE or SCSI
      metadata.paravirtual-device      EMULATED with VFIO, PARAVIRTUALIZED or ACCELERATEDPV
      metadata.pv-attachment-version   pvAttachmentVersion other than 1, 2 or null
      metadata.os-empty                an empty operatingSystem
      metadata.os-version-empty        an empty operatingSystemVersion
      metadata.windows-mode            Windows in another mode than PARAVIRTUALIZED
      metadata.windows-release         Windows naming no Server release, or more than one
      metadata.windows-edition         Windows naming no edition, or both
      metadata.shape-name              a shape with an empty name
      metadata.shape-range             an empty OCPU or memory range
      metadata.shape-firmware          an Arm shape with BIOS
      metadata.shape-windows           an Arm shape with Windows
      metadata.shape-mode              an Arm or AMD shape in another mode than PARAVIRTUALIZED
      metadata.shape-architecture      Arm and x86 shapes together
      metadata.os-typo                 a system name given one typo from a listed one (as typed: --os-unlisted)
    Warnings, errors when `strict`:
      metadata.unknown-os              a system name not on OCI's list, with the closest known name for a typo
      metadata.os-release-unlisted     a release of a listed system that the list skips or has dropped
    Warnings:
      metadata.firmware-mode           EMULATED with UEFI_64
      metadata.pv-attachment-missing   PARAVIRTUALIZED volumes with pvAttachmentVersion null
      metadata.pv-attachment-unused    an attachment version without a PARAVIRTUALIZED volume
      metadata.pv-encryption-unused    in-transit encryption without a PARAVIRTUALIZED boot or remote data volume
      metadata.capabilities-unreadable imageCapabilityData that is not JSON of an object
      metadata.capabilities-missing    imageCapabilityData without a "capabilities" object
      metadata.capabilities            capability data that does not allow the launch options
      metadata.caps-format-version     a capability schema version that is not a UUID
      metadata.shape-duplicate         a shape listed twice
    Notes:
      metadata.os-release-newer        a release of a listed system newer than the list (Oracle Linux 10, Windows
                                       Server 2025): the list ages, and OCI may well accept it

    Windows rule: operatingSystem and operatingSystemVersion together must name exactly one Windows Server release
    (2012, 2012 R2, 2016, 2019, 2022) and exactly one edition (Standard, Datacenter), because OCI licenses the image
    by them: "Windows" + "Server 2019 Standard" and "Windows Server" + "2019 Datacenter" pass, "Windows" + "2019"
    does not."""
    problems = _check_version(meta) + _check_devices(meta)
    problems += _check_attachment(meta)
    problems += check_system(
        meta.operating_system, meta.operating_system_version, meta.launch_mode, strict=strict, os_name=os_name, fix=fix
    )
    problems += _check_shapes(meta)
    problems += _check_capabilities(meta)
    problems += _check_caps_version(meta)
    # a stable sort: the errors in the order of the checks, then the warnings and notes in theirs
    return sorted(problems, key=lambda problem: problem.severity is not Severity.ERROR)


def _check_version(meta: ImageMetadata) -> list[Problem]:
    if meta.version != METADATA_VERSION:
        return [Problem("metadata.version", f"version is {meta.version}; set it to {METADATA_VERSION}")]
    return []


def _check_devices(meta: ImageMetadata) -> list[Problem]:
    """The devices and firmware against the launch mode: emulated hardware only in EMULATED mode, paravirtual and
    passthrough devices only outside it."""
    launch = meta.launch
    mode = launch.launch_options_source
    problems: list[Problem] = []
    if mode in (LaunchMode.NATIVE, LaunchMode.PARAVIRTUALIZED):
        for key, value, better in _devices_among(meta, _EMULATED_DEVICES, network="VFIO", volume="PARAVIRTUALIZED"):
            problems.append(
                Problem(
                    "metadata.emulated-device",
                    f"launchOptionsSource {mode} cannot use the emulated device {key} {value}; "
                    f"set {key}={better}, or launchMode=EMULATED",
                )
            )
    elif mode is LaunchMode.EMULATED:
        for key, value, better in _devices_among(meta, _PV_OR_PASSTHROUGH_DEVICES, network="E1000", volume="IDE"):
            problems.append(
                Problem(
                    "metadata.paravirtual-device",
                    f"launchOptionsSource EMULATED has no paravirtual or passthrough devices, but {key} is "
                    f"{value}; set {key}={better}, or launchMode=PARAVIRTUALIZED",
                )
            )
        if launch.firmware is Firmware.UEFI_64:
            problems.append(
                Problem(
                    "metadata.firmware-mode",
                    "launchOptionsSource EMULATED with firmware UEFI_64: emulated images normally boot with BIOS; "
                    "set firmware=BIOS if the disk has a BIOS boot loader, or use launchMode=PARAVIRTUALIZED",
                    remedy=Remedy.STATE_FIRMWARE,
                    severity=Severity.WARNING,
                )
            )
    return problems


def _devices_among(
    meta: ImageMetadata, kinds: frozenset[str], *, network: str, volume: str
) -> list[tuple[str, str, str]]:
    """(launch option, device, the device to use instead) for each device of `kinds` the launch options name:
    `network` instead of a network device, `volume` instead of a volume's."""
    launch = meta.launch
    devices = {"networkType": launch.network_type, **launch.volume_types}
    return [
        (key, str(value), network if key == "networkType" else volume)
        for key, value in devices.items()
        if value is not None and value.value in kinds
    ]


def _check_caps_version(meta: ImageMetadata) -> list[Problem]:
    caps_version = meta.image_caps_format_version
    if caps_version is not None and not CAPS_FORMAT_VERSION.fullmatch(caps_version):
        return [
            Problem(
                "metadata.caps-format-version",
                f"imageCapsFormatVersion {quote(caps_version)} is not a UUID as OCI writes it; "
                "set imageCapsFormatVersion=null unless it comes from OCI",
                severity=Severity.WARNING,
            )
        ]
    return []


def _check_attachment(meta: ImageMetadata) -> list[Problem]:
    """The paravirtualized attachment version and in-transit encryption against the volumes that use them."""
    launch = meta.launch
    pv_volumes = [key for key, value in launch.volume_types.items() if value is VolumeType.PARAVIRTUALIZED]
    pv_version = launch.pv_attachment_version
    problems: list[Problem] = []
    if pv_version is not None and pv_version not in PV_ATTACHMENT_VERSIONS:
        problems.append(
            Problem(
                "metadata.pv-attachment-version",
                f"pvAttachmentVersion is {pv_version}; OCI knows 1 and 2: set pvAttachmentVersion=2",
            )
        )
    elif pv_version is None and pv_volumes:
        verb = "is" if len(pv_volumes) == 1 else "are"
        problems.append(
            Problem(
                "metadata.pv-attachment-missing",
                f"pvAttachmentVersion is null but {', '.join(pv_volumes)} {verb} PARAVIRTUALIZED; "
                "set pvAttachmentVersion=2",
                severity=Severity.WARNING,
            )
        )
    elif pv_version is not None and not pv_volumes:
        problems.append(
            Problem(
                "metadata.pv-attachment-unused",
                f"pvAttachmentVersion {pv_version} has no effect without a PARAVIRTUALIZED volume; "
                "set pvAttachmentVersion=null",
                severity=Severity.WARNING,
            )
        )
    if launch.pv_encryption_in_transit_enabled and not ({"bootVolumeType", "remoteDataVolumeType"} & set(pv_volumes)):
        problems.append(
            Problem(
                "metadata.pv-encryption-unused",
                "pvEncryptionInTransitEnabled is true but no boot or remote data volume is PARAVIRTUALIZED, so "
                "there is nothing to encrypt; set pvEncryptionInTransitEnabled=false",
                severity=Severity.WARNING,
            )
        )
    return problems


def _check_shapes(meta: ImageMetadata) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    arm: list[str] = []
    x86: list[str] = []
    windows = oslist.is_windows(meta.operating_system)
    for shape in meta.shapes:
        if not shape.name.strip():
            problems.append(
                Problem(
                    "metadata.shape-name", "a shape has an empty internalShapeName; remove it or give the shape's name"
                )
            )
            continue
        if shape.name in seen:
            problems.append(
                Problem(
                    "metadata.shape-duplicate",
                    f"shape {shape.name} is listed twice; remove one",
                    severity=Severity.WARNING,
                )
            )
        seen.add(shape.name)
        for what, limits, keys in (
            ("ocpuConstraints", shape.ocpu, "min-max"),
            ("memoryConstraints", shape.memory, "minInGBs-maxInGBs"),
        ):
            if limits is not None and (limits[0] < 0 or limits[0] > limits[1]):
                problems.append(
                    Problem(
                        "metadata.shape-range",
                        f"shape {shape.name}: {what} {number_text(limits[0])}-{number_text(limits[1])} is an "
                        f"empty range; give {keys} with 0 <= min <= max, or no constraint",
                    )
                )
        family = shape_architecture(shape.name)
        if family == "arm":
            arm.append(shape.name)
            if meta.launch.firmware is Firmware.BIOS:
                problems.append(
                    Problem(
                        "metadata.shape-firmware",
                        f"shape {shape.name} is Arm, which boots with UEFI only; set firmware=UEFI_64",
                        remedy=Remedy.STATE_FIRMWARE,
                    )
                )
            if windows:
                problems.append(
                    Problem(
                        "metadata.shape-windows",
                        f"shape {shape.name} is Arm and Windows Server runs on x86 only; remove the shape",
                    )
                )
        elif family is not None:
            x86.append(shape.name)
        if family in ("arm", "amd") and meta.launch_mode is not LaunchMode.PARAVIRTUALIZED:
            problems.append(
                Problem(
                    "metadata.shape-mode",
                    f"shape {shape.name} ({'Arm' if family == 'arm' else 'AMD'}) supports PARAVIRTUALIZED mode "
                    f"only, not {meta.launch_mode}; set launchMode=PARAVIRTUALIZED or remove the shape",
                )
            )
    if arm and x86:
        problems.append(
            Problem(
                "metadata.shape-architecture",
                f"the shapes mix Arm ({', '.join(arm)}) and x86 ({', '.join(x86)}), but an image is built for one "
                "processor architecture; remove the shapes of the other one",
            )
        )
    return problems


def _check_capabilities(meta: ImageMetadata) -> list[Problem]:
    try:
        data = meta.capabilities()
    except MetadataError as exc:
        return [
            Problem(
                "metadata.capabilities-unreadable",
                f"{exc}; set imageCapabilityData to null or to the capabilities OCI exported",
                severity=Severity.WARNING,
            )
        ]
    if data is None:
        return []
    capabilities = data.get("capabilities")
    if not isinstance(capabilities, dict):
        return [
            Problem(
                "metadata.capabilities-missing",
                'imageCapabilityData has no "capabilities" object, so OCI may refuse it; '
                "set it to null or to the capabilities OCI exported",
                severity=Severity.WARNING,
            )
        ]
    problems: list[Problem] = []
    options = meta.launch.to_json()
    for name, key in _CAPABILITY_FIELDS.items():
        descriptor = capabilities.get(name)
        values = descriptor.get("values") if isinstance(descriptor, dict) else None
        value = options.get(key)
        if not isinstance(values, list) or value is None or value in values:
            continue
        shown = ", ".join(str(json_value(v)).lower() if isinstance(v, bool) else str(v) for v in values)
        problems.append(
            Problem(
                "metadata.capabilities",
                f"imageCapabilityData allows {name} {shown or 'nothing'}, but {key} is {quote(value)}; "
                f"set {key} to one of those, or imageCapabilityData to match",
                severity=Severity.WARNING,
            )
        )
    return problems
