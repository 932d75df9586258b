"""What a batch will do, decided before it does anything: the bytes each output is estimated to need, the units
of work (outputs built together), and a deterministic, balanced split of them into shards, so that N machines
given the same manifest each take their own part without talking to each other."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from imagepack.compression import declared_size
from imagepack.core.errors import ImagepackError, InvalidValueError
from imagepack.core.openfile import opened_input
from imagepack.sources.disk import SourceImage
from imagepack.sources.identify import identify
from imagepack.sources.open import open_source
from imagepack.verbs.batch.manifest import Manifest, OutputEntry, SourceEntry
from imagepack.verbs.target import ArchiveKind, disk_format
from imagepack.writers.disk import DiskRequest, plan_disk

ARCHIVE_OVERHEAD = 1024**2  # a .oci's metadata member, tar headers and padding
MAX_SHARDS = 10_000  # more machines than any CI matrix runs; the plan keeps a load per shard


@dataclass(frozen=True)
class Unit:
    """Outputs built together in one worker: a single output, or every output of a source that must be decoded
    first (a compressed stream), which then shares one decoding."""

    source: SourceEntry
    outputs: tuple[OutputEntry, ...]
    estimates: tuple[int, ...]  # bytes each output is estimated to need
    decoding: int  # bytes the shared decoding writes beside the outputs (0 when the source is read in place)

    @property
    def weight(self) -> int:
        return sum(self.estimates)

    @property
    def name(self) -> str:
        return self.outputs[0].name


@dataclass(frozen=True)
class Shard:
    index: int  # from 0
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class Plan:
    units: tuple[Unit, ...]
    shards: tuple[int, ...]  # the shard of each unit
    count: int  # how many shards the units were split into

    def units_of(self, shard: Shard | None) -> list[Unit]:
        if shard is None:
            return list(self.units)
        return [unit for unit, index in zip(self.units, self.shards, strict=True) if index == shard.index]

    def loads(self) -> list[int]:
        """Estimated bytes per shard."""
        loads = [0] * self.count
        for unit, index in zip(self.units, self.shards, strict=True):
            loads[index] += unit.weight
        return loads


class Estimate(NamedTuple):
    outputs: list[int]  # bytes each output of a source needs
    decoding: int  # bytes a decoding of the source writes
    decoded: bool  # whether the source is a stream, decoded into a temporary before anything can read it


def estimate_source(source: SourceEntry) -> Estimate:
    """Bytes each output of `source` needs, and the bytes a decoding of it writes. A plain input is opened (its
    headers, qemu-img info and measure; nothing is written beside the outputs). A compressed one is not decoded
    to estimate it: its declared content size stands for each output, else its own size. The source is opened
    once for all of it."""
    with opened_input(source.path) as opened:
        identity = identify(opened, claimed=source.claimed)
        if identity.stream is not None:
            size = declared_size(opened, identity.stream) or os.stat(opened).st_size
            return Estimate([size for _ in source.outputs], size, True)
        try:
            with (
                tempfile.TemporaryDirectory(prefix="imagepack-plan-") as scratch,
                open_source(opened, source.open_options(Path(scratch)), identity=identity) as found,
            ):
                return Estimate([_estimate(found.disk, output) for output in source.outputs], 0, False)
        except ImagepackError:
            # A source that cannot be opened fails when its outputs are built, with the same error; its own size
            # keeps the plan the same on every machine.
            size = os.stat(opened).st_size
            return Estimate([size for _ in source.outputs], 0, False)


def _estimate(image: SourceImage, output: OutputEntry) -> int:
    target = output.target
    oci = target.kind is ArchiveKind.OCI
    asked = DiskRequest(disk_format(target.kind), target.options, target.compress, copy_if_unchanged=oci)
    needed = plan_disk(image, asked).needed
    return needed + (ARCHIVE_OVERHEAD if oci else 0)


def units_of_source(source: SourceEntry, estimate: Estimate) -> list[Unit]:
    if estimate.decoded:
        return [Unit(source, source.outputs, tuple(estimate.outputs), estimate.decoding)]
    pairs = zip(source.outputs, estimate.outputs, strict=True)
    return [Unit(source, (output,), (needs,), 0) for output, needs in pairs]


def make_plan(manifest: Manifest, count: int = 1) -> Plan:
    """Estimate every output and split the units into `count` shards."""
    units: list[Unit] = []
    for source in manifest.sources:
        units.extend(units_of_source(source, estimate_source(source)))
    return Plan(
        tuple(units), tuple(assign_shards([unit.weight for unit in units], [u.name for u in units], count)), count
    )


def assign_shards(weights: list[int], names: list[str], count: int) -> list[int]:
    """Greedy longest-first: the heaviest unit goes to the lightest shard so far (ties by name, then by shard
    index), which keeps the largest shard within a unit of the mean and gives every machine the same answer."""
    order = sorted(range(len(weights)), key=lambda k: (-weights[k], names[k]))
    loads = [0] * count
    shards = [0] * len(weights)
    for k in order:
        lightest = min(range(count), key=lambda s: (loads[s], s))
        shards[k] = lightest
        loads[lightest] += weights[k]
    return shards


def parse_shard(text: str) -> Shard:
    """'I/N', counted from 0."""
    index, sep, count = (part.strip() for part in text.partition("/"))
    if not sep or not _is_number(index) or not _is_number(count):
        raise InvalidValueError(f"shard {text[:40]!r}: write INDEX/COUNT, counted from 0, e.g. 0/4")
    return checked_shard(_bounded(index, f"shard {text.strip()[:40]}"), _bounded(count, f"shard {text.strip()[:40]}"))


def checked_shard(index: int, count: int) -> Shard:
    if not 1 <= count <= MAX_SHARDS:
        raise InvalidValueError(f"shard count {_shown(count)}: give 1 to {MAX_SHARDS}")
    if not 0 <= index < count:
        raise InvalidValueError(f"shard {_shown(index)}/{count}: the index counts from 0 to {count - 1}")
    return Shard(index, count)


def shard_from_environment(environ: Mapping[str, str], count: int | None) -> Shard:
    """The shard a CI engine gives this machine: a Kubernetes Indexed Job's JOB_COMPLETION_INDEX (from 0; the
    count is the Job's completions, which it does not export, so it must be given), or GitLab's CI_NODE_INDEX
    (from 1) of CI_NODE_TOTAL."""
    if "JOB_COMPLETION_INDEX" in environ:
        if count is None:
            raise InvalidValueError(
                "JOB_COMPLETION_INDEX gives this shard's index but not the shard count; give the count too"
            )
        return checked_shard(_env_int(environ, "JOB_COMPLETION_INDEX"), count)
    if "CI_NODE_INDEX" in environ:
        total = _env_int(environ, "CI_NODE_TOTAL") if "CI_NODE_TOTAL" in environ else count
        if total is None:
            raise InvalidValueError("CI_NODE_INDEX is set without CI_NODE_TOTAL; give the shard count")
        if count is not None and count != total:
            raise InvalidValueError(f"the shard count {count} disagrees with CI_NODE_TOTAL={total}")
        return checked_shard(_env_int(environ, "CI_NODE_INDEX") - 1, total)  # GitLab counts from 1
    raise InvalidValueError(
        "no shard in the environment: neither JOB_COMPLETION_INDEX (Kubernetes Indexed Job) nor CI_NODE_INDEX "
        "(GitLab parallel) is set; give the shard as INDEX/COUNT"
    )


def _env_int(environ: Mapping[str, str], name: str) -> int:
    text = environ[name].strip()
    if not _is_number(text):
        raise InvalidValueError(f"{name}={environ[name][:40]!r}: not a number")
    return _bounded(text, name)


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()  # not "²" or "٣", which isdigit takes and int refuses


def _bounded(digits: str, label: str) -> int:
    """A count or an index as typed, read only when it is short enough to be one (int() of 5,000 digits fails)."""
    stripped = digits.lstrip("0") or "0"
    if len(stripped) > 9:
        raise InvalidValueError(f"{label}: {_shown(stripped)} is too large; there are at most {MAX_SHARDS} shards")
    return int(stripped)


def _shown(number: int | str) -> str:
    """A number as a message shows it: in full up to 20 digits (str() of 5,000 digits fails)."""
    if isinstance(number, int):
        number = str(number) if number.bit_length() <= 64 else "a number of 20 digits or more"
    return number if len(number) <= 20 else f"{number[:8]}... ({len(number)} digits)"
