"""What the user gave as an input, whatever wraps it: a plain disk image, a .oci archive, an OVA or a GCE image
tarball whose disk is read in place (or extracted once, bounded), or any of them compressed (decompressed once,
bounded). Every verb opens its input here, so a new kind of input is one branch."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from imagepack.compression import STREAMS, decompressed
from imagepack.compression.bounded import require_inner_name_agrees
from imagepack.core.errors import InvalidValueError, UnreadableError
from imagepack.core.openfile import OpenedPath, opened_input
from imagepack.core.progress import Progress, stage
from imagepack.formats import Container, ImageFormat, SafetyPolicy
from imagepack.sources.disk import SourceImage, open_image
from imagepack.sources.gce import open_gce
from imagepack.sources.identify import Identity, SourceKind, content_kind, identify
from imagepack.sources.oci import OpenedArchive, open_archive
from imagepack.sources.ova.reader import OpenedOva, open_ova

__all__ = [
    "Identity",
    "OpenOptions",
    "Source",
    "SourceKind",
    "archive_tar",
    "identify",
    "open_in_stages",
    "open_oci",
    "open_source",
]


@dataclass(frozen=True)
class OpenOptions:
    """How one input is opened, the same for every verb. `claimed` states the disk format (never an archive).
    `scratch` is where a disk that cannot be read in place, or a compressed input's content, is written to, and
    removed from afterwards; it needs room for what the stream declares (see compression.decompressed). `disk`
    picks one of an OVA's disks (from 1). `on_progress` follows the decompression of a compressed input (zstd,
    xz, bzip2 or a gzip that is not a .oci archive), the only long step of opening one. `label`: the input as
    messages name it, when not by its path."""

    claimed: ImageFormat | None = None
    policy: SafetyPolicy = field(default_factory=SafetyPolicy)
    scratch: Path | None = None
    disk: int | None = None
    on_progress: Progress | None = None
    label: str | None = None

    def following(self, on_progress: Progress | None) -> OpenOptions:
        """The same options, the opening followed by `on_progress`."""
        return replace(self, on_progress=on_progress)


@dataclass
class Source:
    """An opened input: the disk to read, and the archive it came in, if any."""

    path: Path
    kind: SourceKind
    disk: SourceImage
    archive: OpenedArchive | None = None
    compression: str | None = None  # "zstd", "xz", "gzip", "bzip2": the stream the disk or archive came in
    ova: OpenedOva | None = None

    @property
    def format(self) -> str:
        """What the input is, as the user would name it: 'oci' for an archive, else the disk's format."""
        return self.kind.value if self.kind in (SourceKind.OCI, SourceKind.OVA) else self.disk.format.value

    @property
    def virtual_size(self) -> int:
        return self.disk.virtual_size


@contextlib.contextmanager
def open_source(
    path: Path, options: OpenOptions = OpenOptions(), *, identity: Identity | None = None
) -> Iterator[Source]:
    """Open `path` through every check, as `options` say (`identity`: what `path` is, when the caller already
    asked identify with the same stated format).

    `path` is opened once, here: every check and every reader after them (qemu-img and qemu-nbd included) reads
    that open file, so that a file renamed over the input meanwhile is never read."""
    with opened_input(path) as opened:
        found = identity or identify(opened, claimed=options.claimed)
        with _open_source(opened, found, options) as source:
            yield source


@contextlib.contextmanager
def open_in_stages(
    path: Path, options: OpenOptions, *, identity: Identity | None = None
) -> Iterator[tuple[Source, Progress | None]]:
    """open_source for a command with one more step to take with what it opened (`options.on_progress` follows
    the whole): a compressed input's decompression is its first half, the step the second; for any other input
    the step is the whole. Yields the source and the step's progress. `identity`: what `path` is, where the
    caller has asked already."""
    with opened_input(path) as opened:
        identity = identity or identify(opened, claimed=options.claimed)
        whole = options.on_progress
        decoding = stage(whole, "decompressing", 0.0, 0.5) if identity.stream is not None else None
        with open_source(opened, replace(options, on_progress=decoding), identity=identity) as source:
            yield source, stage(whole, "converting", 0.5, 1.0) if identity.stream is not None else whole


@contextlib.contextmanager
def _open_source(path: OpenedPath, identity: Identity, options: OpenOptions) -> Iterator[Source]:
    kind, policy, scratch = identity.kind, options.policy, options.scratch
    if options.disk is not None and kind is not SourceKind.OVA and kind is not SourceKind.COMPRESSED:
        raise _not_an_ova(path)
    if kind is SourceKind.OVA:
        with open_ova(path, disk=options.disk, policy=policy, scratch=scratch) as ova:
            yield Source(path, kind, ova.disk, ova=ova)
    elif kind is SourceKind.GCE:
        with open_gce(path, policy=policy, scratch=scratch) as image:
            yield Source(path, kind, image, compression=identity.compression)
    elif kind is SourceKind.OCI:
        with open_archive(path, policy=policy, scratch=scratch) as opened:
            yield Source(path, kind, opened.disk, opened)
    elif kind is SourceKind.COMPRESSED:
        assert identity.stream is not None
        with _open_decompressed(path, identity.stream, options) as source:
            yield source
    else:
        yield Source(path, kind, open_image(path, claimed=options.claimed, policy=policy, label=options.label))


@contextlib.contextmanager
def _open_decompressed(path: OpenedPath, stream: Container, options: OpenOptions) -> Iterator[Source]:
    """A compressed input: decompressed once, then opened as what its content is."""
    policy, scratch, shown = options.policy, options.scratch, options.label or str(path)
    name = STREAMS[stream]
    with decompressed(
        path, stream, claimed=options.claimed, policy=policy, scratch=scratch, on_progress=options.on_progress
    ) as content:
        kind = content_kind(content)
        if kind is SourceKind.OVA:
            with open_ova(content.path, disk=options.disk, policy=policy, scratch=scratch) as ova:
                yield Source(path, kind, ova.disk, compression=name, ova=ova)
            return
        if options.disk is not None:
            raise _not_an_ova(path)
        if kind is SourceKind.GCE:
            with open_gce(content.path, policy=policy, scratch=scratch, shown=Path(shown)) as image:
                yield Source(path, kind, image, compression=name)
        elif kind is SourceKind.OCI:
            with open_archive(content.path, policy=policy, scratch=scratch) as opened:
                yield Source(path, kind, opened.disk, opened, compression=name)
        else:
            image = open_image(content.path, claimed=options.claimed, policy=policy, label=shown)
            if options.claimed is None:
                require_inner_name_agrees(path, image.format)  # the whole file now: a fixed VHD's footer too
            yield Source(path, kind, image, compression=name)


@contextlib.contextmanager
def open_oci(
    path: Path, options: OpenOptions = OpenOptions(), *, identity: Identity | None = None
) -> Iterator[OpenedArchive]:
    """A .oci archive, plain or compressed (zstd, xz, bzip2 or gzip), for the verbs that take nothing else; opened
    once, like open_source's (`options.claimed` and `options.disk` do not apply)."""
    with opened_input(path) as opened, _open_oci(opened, identity or identify(opened), options) as archive:
        yield archive


@contextlib.contextmanager
def _open_oci(path: OpenedPath, identity: Identity, options: OpenOptions) -> Iterator[OpenedArchive]:
    with (
        archive_tar(path, identity, options) as tar,
        open_archive(tar, policy=options.policy, scratch=options.scratch) as opened,  # or says what it is instead
    ):
        yield opened


@contextlib.contextmanager
def archive_tar(path: Path, identity: Identity, options: OpenOptions) -> Iterator[Path]:
    """The tar of a .oci archive `identity` says `path` is: the file itself (plain, or a gzip the archive reader
    reads), or a zstd, xz or bzip2 stream's content, decompressed into `options.scratch`."""
    stream = identity.stream
    if stream is None or (stream is Container.GZIP and identity.archive):
        yield path
        return
    policy, scratch = options.policy, options.scratch
    with decompressed(path, stream, policy=policy, scratch=scratch, on_progress=options.on_progress) as content:
        if not content.is_archive:
            raise UnreadableError(f"{path}: this is a {STREAMS[stream]}-compressed disk, not a .oci archive")
        yield content.path


def _not_an_ova(path: Path) -> InvalidValueError:
    return InvalidValueError(
        f"{path} is not an OVA: a disk number picks one of an OVA's disks, and this input has one",
        code="ova.not-an-ova",
    )
