"""The OVA layout: a tar of one .ovf descriptor, the files it references (its disks), and optionally a .mf
manifest and a .cert, checked as strictly as a .oci archive's members (tarmembers). The manifest's digests are
checked against every member it lists, which reads each of them, the disks too, once."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from imagepack.core.errors import ArchiveError, UnreadableError
from imagepack.formats import Container, disk_size_limit
from imagepack.sources.ova.descriptor import MAX_DESCRIPTOR, Descriptor, parse_descriptor
from imagepack.tar.members import Member, member_stream, members, normalised, read_member, scan, sniff

MAX_MANIFEST = 1024 * 1024  # a certificate too
MAX_AUX = 64 * 1024 * 1024  # a referenced file that is not a disk (NVRAM: a few hundred KiB)
_MANIFEST_LINE = re.compile(r"^(SHA1|SHA256|SHA512)\s*\((.+)\)\s*=\s*([0-9a-fA-F]+)$")
_HOLDS = "an OVA holds regular files only"
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class OvaLayout:
    path: Path
    compressed: bool
    descriptor_member: Member
    descriptor: Descriptor
    files: dict[str, Member]  # the referenced files, by their href
    manifest: Member | None

    def label(self, member: Member) -> str:
        return f"{self.path}:{member.name}"


def read_ova_layout(path: Path, *, max_disk_size: int) -> OvaLayout:
    """Walk the headers (never extracting), check each member, and parse the descriptor."""
    found, file_size = sniff(path)
    if found.archive not in (Container.TAR, Container.GZIP):
        raise UnreadableError(f"{path}: this is {found.describe()}, not an OVA (a tar of an .ovf and its disks)")
    compressed = found.archive is Container.GZIP
    scan(path, compressed=compressed, file_size=file_size, member_limit=max_disk_size)
    listed = list(members(path, compressed=compressed, holds=_HOLDS))
    for sparse in [m for _, m in listed if m.sparse]:
        raise ArchiveError(
            f"{path}: member '{sparse.name}' is stored GNU-sparse ({sparse.size} bytes stated), which no OVA "
            "writer does; refusing it"
        )
    ovfs = [m for _, m in listed if m.name.lower().endswith(".ovf")]
    if len(ovfs) != 1:
        raise ArchiveError(f"{path}: an OVA holds one .ovf descriptor; this one has {len(ovfs)}")
    manifests = [m for _, m in listed if m.name.lower().endswith(".mf")]
    if len(manifests) > 1:
        raise ArchiveError(f"{path}: an OVA holds at most one .mf manifest; this one has {len(manifests)}")
    layout_stub = _Tar(path, compressed)
    descriptor = parse_descriptor(
        read_member(layout_stub, ovfs[0], limit=MAX_DESCRIPTOR), label=f"{path}:{ovfs[0].name}"
    )
    by_key = {normalised(m.name): m for _, m in listed}
    files: dict[str, Member] = {}
    for href in descriptor.files:
        member = by_key.get(normalised(href))
        if member is None:
            raise ArchiveError(f"{path}: the descriptor references '{href}', which the OVA does not hold")
        stated = descriptor.file_sizes.get(href)
        if stated is not None and stated != member.size:
            raise ArchiveError(
                f"{path}: the descriptor gives '{href}' {stated} bytes, the archive member holds {member.size}"
            )
        files[href] = member
    known = {normalised(m.name) for m in [*ovfs, *manifests, *files.values()]}
    for _, member in listed:
        key = normalised(member.name)
        if key not in known and not key.endswith(".cert"):
            raise ArchiveError(f"{path}: unexpected member '{member.name}'; the descriptor does not reference it")
    _check_sizes(path, [m for _, m in listed], descriptor, max_disk_size)
    return OvaLayout(path, compressed, ovfs[0], descriptor, files, manifests[0] if manifests else None)


def _check_sizes(path: Path, listed: list[Member], descriptor: Descriptor, max_disk_size: int) -> None:
    """Every member bounded before any is read or hashed: a disk by the limit and by the capacity the descriptor
    gives it, everything else (descriptor, manifest, certificate, NVRAM) by what such a file can honestly hold."""
    disks = {normalised(d.file): d for d in descriptor.disks}
    for member in listed:
        key = normalised(member.name)
        disk = disks.get(key)
        if disk is None:
            limit = (
                MAX_DESCRIPTOR if key.endswith(".ovf") else MAX_MANIFEST if key.endswith((".mf", ".cert")) else MAX_AUX
            )
            if member.size > limit:
                raise ArchiveError(f"{path}: member '{member.name}' of {member.size} bytes is larger than {limit}")
            continue
        if member.size > max_disk_size:
            raise ArchiveError(f"{path}: disk member '{member.name}' of {member.size} bytes is larger than the limit")
        if member.size > disk_size_limit(disk.capacity):
            raise ArchiveError(
                f"{path}: disk member '{member.name}' of {member.size} bytes is larger than a disk of the "
                f"{disk.capacity} bytes its descriptor states can need; refusing it",
                code="archive.capacity-mismatch",
            )


@dataclass(frozen=True)
class _Tar:
    path: Path
    compressed: bool


def verify_manifest(layout: OvaLayout) -> list[str]:
    """Check every digest the manifest lists (reading each listed member once, the disks too); returns the names
    verified. ArchiveError for a digest that does not match, a member it lists that is not there, or a line that
    is not a digest."""
    if layout.manifest is None:
        return []
    text = read_member(layout, layout.manifest, limit=MAX_MANIFEST).decode("utf-8", "replace")
    by_key = {normalised(m.name): m for m in [layout.descriptor_member, *layout.files.values()]}
    verified = []
    for line in text.splitlines():
        if not line.strip():
            continue
        match = _MANIFEST_LINE.match(line.strip())
        if match is None:
            raise ArchiveError(f"{layout.path}: manifest line {line[:60]!r} is not a SHA1/SHA256 digest")
        algorithm, name, expected = match[1].lower(), match[2], match[3].lower()
        member = by_key.pop(normalised(name), None)
        if member is None:
            raise ArchiveError(
                f"{layout.path}: the manifest lists '{name}', which the OVA does not hold or it lists twice"
            )
        digest = hashlib.new(algorithm)
        read = 0
        with member_stream(layout, member) as stream:
            while chunk := stream.read(min(_CHUNK, member.size - read + 1)):
                read += len(chunk)
                if read > member.size:
                    raise ArchiveError(f"{layout.path}: member '{member.name}' is longer than its header says")
                digest.update(chunk)
        if digest.hexdigest() != expected:
            raise ArchiveError(
                f"{layout.path}: the manifest's {match[1]} of '{name}' does not match its content; refusing it",
                code="archive.manifest-mismatch",
            )
        verified.append(member.name)
    return verified
