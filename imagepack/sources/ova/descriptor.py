"""The OVF descriptor of an untrusted OVA: the disks it names (file, capacity, controller), and the firmware and
guest OS it states. Parsed with defusedxml, which refuses a DTD outright, so neither an entity bomb nor an
external entity is ever expanded. Elements and attributes are matched by local name: OVF 1.x and 2.x, ovftool and
VirtualBox put the same things in different namespaces."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import defusedxml
import defusedxml.ElementTree

from imagepack.core.errors import ArchiveError

MAX_DESCRIPTOR = 4 * 1024 * 1024  # ovftool's descriptors are a few tens of KiB

# rasd:ResourceType of the controllers a disk item hangs from (CIM_ResourceAllocationSettingData).
_CONTROLLERS = {"5": "ide", "6": "scsi", "20": "sata"}
# A programmatic unit (DSP0004): "byte", or "byte * 2^N" with N in ASCII digits; nothing nested or negative.
_UNIT = re.compile(r"byte(?:\s*\*\s*2\s*\^\s*([0-9]{1,3}))?", re.ASCII)
_UNIT_NAMES = {"kilobytes": 10, "megabytes": 20, "gigabytes": 30, "terabytes": 40}
_NUMBER = re.compile(r"[0-9]{1,20}", re.ASCII)  # isdigit() would take '²', which int() then refuses
MAX_CAPACITY_BITS = 64  # no disk is larger than 2^64 bytes; a capacity beyond is refused, never computed

# vmw:osType (ovftool) and vbox:OSType (VirtualBox) to OCI's (operating system, version), only where unambiguous.
_GUEST_OS: dict[str, tuple[str, str | None]] = {
    "oraclelinux6_64guest": ("Oracle Linux", "6"),
    "oraclelinux7_64guest": ("Oracle Linux", "7"),
    "oraclelinux8_64guest": ("Oracle Linux", "8"),
    "oraclelinux9_64guest": ("Oracle Linux", "9"),
    "oraclelinux64guest": ("Oracle Linux", None),
    "centos7_64guest": ("CentOS", "7"),
    "ubuntu64guest": ("Ubuntu", None),
    "windows2012srv_64guest": ("Windows", None),
    "windows2019srv_64guest": ("Windows", None),
    "windows2019srvnext_64guest": ("Windows", None),
    "windows9server64guest": ("Windows", None),
    "oracle_64": ("Oracle Linux", None),
    "oracle7_64": ("Oracle Linux", "7"),
    "oracle8_64": ("Oracle Linux", "8"),
    "oracle9_64": ("Oracle Linux", "9"),
    "ubuntu_64": ("Ubuntu", None),
    "redhat_64": ("Red Hat Enterprise Linux", None),
    "windows2019_64": ("Windows", None),
    "windows2022_64": ("Windows", None),
}


@dataclass(frozen=True)
class OvfDisk:
    disk_id: str
    file: str  # the member name (References/File ovf:href)
    capacity: int  # bytes
    controller: str | None  # "ide", "scsi", "sata", or the controller's subtype (lsilogic, AHCI)


@dataclass(frozen=True)
class Descriptor:
    disks: tuple[OvfDisk, ...]
    files: tuple[str, ...]  # every href in References, disks or not (nvram)
    file_sizes: dict[str, int]  # href to ovf:size, where the descriptor gives one
    firmware: str | None  # "UEFI_64" or "BIOS" when the descriptor says
    os_type: str | None  # vmw:osType or vbox:OSType as written
    operating_system: str | None  # OCI's name, when the type maps to one
    os_version: str | None


def _local(name: str) -> str:
    return name.rpartition("}")[2]


def _attr(element: ET.Element, name: str) -> str | None:
    for key, value in element.attrib.items():
        if _local(key) == name:
            return value
    return None


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in element if _local(child.tag) == name]


def _find_all(element: ET.Element, name: str) -> list[ET.Element]:
    return [e for e in element.iter() if _local(e.tag) == name]


def _text(element: ET.Element, name: str) -> str | None:
    found = _children(element, name)
    return (found[0].text or "").strip() if found else None


def _unit_shift(units: str | None, label: str) -> int:
    if units is None:
        return 0
    spelled = units.strip().lower()
    if spelled in _UNIT_NAMES:
        return _UNIT_NAMES[spelled]
    match = _UNIT.fullmatch(spelled)
    if match is None or int(match[1] or 0) > MAX_CAPACITY_BITS:
        raise ArchiveError(f"{label}: capacity unit {units[:40]!r} is not one we know (like 'byte * 2^30')")
    return int(match[1] or 0)


def _capacity(disk_id: str, capacity: str, units: str | None, label: str) -> int:
    """Bytes for a disk's capacity in its unit, refused above 2^64 before the product is ever computed."""
    if not _NUMBER.fullmatch(capacity):
        raise ArchiveError(f"{label}: disk '{disk_id}' has capacity {capacity[:30]!r}, not a number")
    number, shift = int(capacity), _unit_shift(units, label)
    if number.bit_length() + shift > MAX_CAPACITY_BITS:
        raise ArchiveError(f"{label}: disk '{disk_id}' claims a capacity above 2^64 bytes; refusing it")
    return number << shift


def parse_descriptor(data: bytes, *, label: str) -> Descriptor:
    """The facts of an OVF descriptor; ArchiveError for one we must not or cannot read."""
    try:
        root = defusedxml.ElementTree.fromstring(data, forbid_dtd=True)
    except defusedxml.DefusedXmlException as e:
        raise ArchiveError(f"{label}: the OVF descriptor declares a DTD or entities ({e}); refusing it") from None
    except ET.ParseError as e:
        raise ArchiveError(f"{label}: the OVF descriptor is not well-formed XML ({e})") from None
    if _local(root.tag) != "Envelope":
        raise ArchiveError(f"{label}: the OVF descriptor's root is <{_local(root.tag)}>, not <Envelope>")
    files: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for element in [f for refs in _find_all(root, "References") for f in _children(refs, "File")]:
        file_id, href = _attr(element, "id"), _attr(element, "href")
        if file_id is None or href is None:
            raise ArchiveError(f"{label}: a References/File has no ovf:id or ovf:href")
        files[file_id] = href
        size_text = _attr(element, "size")
        if size_text is not None:
            if not _NUMBER.fullmatch(size_text):
                raise ArchiveError(f"{label}: file '{href}' has size '{size_text[:30]}', not a number")
            sizes[href] = int(size_text)
    controllers = _controllers(root)
    disks = []
    for element in [d for section in _find_all(root, "DiskSection") for d in _children(section, "Disk")]:
        disk_id, file_ref, capacity = _attr(element, "diskId"), _attr(element, "fileRef"), _attr(element, "capacity")
        if disk_id is None or capacity is None:
            raise ArchiveError(f"{label}: a DiskSection/Disk has no ovf:diskId or ovf:capacity")
        if file_ref is None or file_ref not in files:
            raise ArchiveError(f"{label}: disk '{disk_id}' names no file in References")
        size = _capacity(disk_id, capacity, _attr(element, "capacityAllocationUnits"), label)
        disks.append(OvfDisk(disk_id, files[file_ref], size, controllers.get(disk_id)))
    os_type = _os_type(root)
    operating_system, version = _GUEST_OS.get(os_type.lower(), (None, None)) if os_type else (None, None)
    return Descriptor(tuple(disks), tuple(files.values()), sizes, _firmware(root), os_type, operating_system, version)


def _controllers(root: ET.Element) -> dict[str, str]:
    """Disk id to the controller its hardware item hangs from (`ovf:/disk/ID` in rasd:HostResource)."""
    items = _find_all(root, "Item") + _find_all(root, "StorageItem")
    by_instance: dict[str, str] = {}
    for item in items:
        kind = _CONTROLLERS.get(_text(item, "ResourceType") or "")
        instance = _text(item, "InstanceID")
        if kind and instance:
            by_instance[instance] = (_text(item, "ResourceSubType") or kind).lower()
    found: dict[str, str] = {}
    for item in items:
        host, parent = _text(item, "HostResource") or "", _text(item, "Parent")
        disk_id = host.rpartition("/")[2] if host.startswith(("ovf:/disk/", "/disk/")) else None
        if disk_id and parent in by_instance:
            found[disk_id] = by_instance[parent]
    return found


def _firmware(root: ET.Element) -> str | None:
    """vmw:Config firmware=efi|bios (ovftool), or VirtualBox's <Firmware type="EFI"/> inside vbox:Machine."""
    for config in _find_all(root, "Config"):
        if _attr(config, "key") == "firmware":
            value = (_attr(config, "value") or "").lower()
            return "UEFI_64" if value == "efi" else "BIOS" if value == "bios" else None
    for machine in _find_all(root, "Machine"):
        for firmware in _find_all(machine, "Firmware"):
            kind = (_attr(firmware, "type") or "").upper()
            return "UEFI_64" if kind.startswith("EFI") else "BIOS" if kind == "BIOS" else None
    return None


def _os_type(root: ET.Element) -> str | None:
    for section in _find_all(root, "OperatingSystemSection"):
        os_type = _attr(section, "osType") or _attr(section, "OSType")
        if os_type:
            return os_type
        for child in _find_all(section, "OSType"):  # VirtualBox: <vbox:OSType ovf:required="false">Ubuntu_64<
            if child.text and child.text.strip():
                return child.text.strip()
    return None
