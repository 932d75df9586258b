"""Writing a cloud-init NoCloud seed: an ISO 9660 volume labelled `cidata` with Rock Ridge and Joliet, so that
cloud-init (Rock Ridge) and cloudbase-init (Joliet) read `user-data` as written rather than `USER_DAT`. Every
file is checked before anything is written, and the ISO appears whole or not at all."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pycdlib
import pycdlib.dates
import pycdlib.headervd
import pycdlib.pycdlib
import pycdlib.udf
import pycdlib.utils

from imagepack.core.errors import InvalidValueError
from imagepack.core.problems import Problem, Severity
from imagepack.files.atomic import atomic_output, check_target
from imagepack.files.reproducible import pinned_clock
from imagepack.verbs.seed.documents import SeedFile
from imagepack.verbs.seed.metadata import (
    DEFAULT_HOSTNAME,
    check_hostname,
    check_instance_id,
    check_meta_data,
    check_network_config,
    content_instance_id,
    generate_meta_data,
)
from imagepack.verbs.seed.userdata import check_user_data
from imagepack.verbs.seed.windows import ExtraFile, rtc_fix_files

LABEL = "cidata"
# pycdlib's modules that read the clock for the dates they write (volume, directories, files)
_PYCDLIB_CLOCKS = (pycdlib.pycdlib, pycdlib.headervd, pycdlib.dates, pycdlib.udf, pycdlib.utils)
# The plain ISO 9660 name of each file (level 1: 8.3, upper case), for readers that know neither extension.
ISO_NAMES = {
    "user-data": "USER_DAT.;1",
    "meta-data": "META_DAT.;1",
    "vendor-data": "VENDOR_D.;1",
    "network-config": "NETWORK_.;1",
    "RealTimeIsUniversal.reg": "RTIU.REG;1",
    "RealTimeIsUniversal.ps1": "RTIU.PS1;1",
    "README.txt": "README.TXT;1",
}

Contents = bytes | str | Path  # a file's bytes, text, or a path to read


@dataclass
class SeedIso:
    """What make_seed_iso wrote."""

    target: Path
    size: int
    files: list[tuple[str, int]]  # (name, size) in the order written
    instance_id: str | None  # None when the meta-data was given and states none
    hostname: str | None
    meta_data_generated: bool
    user_data_type: str
    network_config_version: int | None = None
    warnings: list[Problem] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "target": str(self.target),
            "format": "iso9660",
            "label": LABEL,
            "size": self.size,
            "files": [{"name": name, "size": size} for name, size in self.files],
            "instance_id": self.instance_id,
            "hostname": self.hostname,
            "meta_data_generated": self.meta_data_generated,
            "user_data_type": self.user_data_type,
            "network_config_version": self.network_config_version,
            "problems": [w.to_json() for w in self.warnings],
            "seconds": round(self.seconds, 3),
        }


def make_seed_iso(
    target: Path,
    *,
    user_data: Contents,
    meta_data: Contents | None = None,
    network_config: Contents | None = None,
    vendor_data: Contents | None = None,
    instance_id: str | None = None,
    hostname: str | None = None,
    windows_rtc_fix: bool = False,
    force: bool = False,
    on_progress: Callable[[float], None] | None = None,
) -> SeedIso:
    """Check the seed's files as cloud-init will read them, then write them byte for byte into a `cidata` ISO.

    Without `meta_data` it is generated: `instance-id` (given, or `iid-` and a digest of the other files, so an
    unchanged seed keeps its ID) and `local-hostname` (given, or "imagepack"). With `meta_data`, an instance ID or
    a host name is refused: they belong in that file. A boot test makes its seed with
    `make_seed_iso(path, user_data=default_user_data(marker))`."""
    started = time.monotonic()
    if meta_data is not None and (instance_id is not None or hostname is not None):
        raise InvalidValueError(
            "an instance ID or host name cannot be set when the meta-data is given: put instance-id and "
            "local-hostname in the meta-data file"
        )
    check_target(target, force=force, inputs=_paths(user_data, meta_data, network_config, vendor_data))
    user = SeedFile.of(user_data, "user-data")
    found = check_user_data(user)
    warnings = list(found.warnings)
    files: list[tuple[str, bytes]] = [("user-data", user.data)]

    network_version = None
    network = SeedFile.of(network_config, "network-config") if network_config is not None else None
    if network is not None:
        network_version = check_network_config(network)
    vendor = SeedFile.of(vendor_data, "vendor-data") if vendor_data is not None else None
    if vendor is not None:
        warnings += check_user_data(vendor, "vendor-data").warnings

    extra: list[ExtraFile] = rtc_fix_files() if windows_rtc_fix else []
    if meta_data is not None:
        meta = _given_meta_data(SeedFile.of(meta_data, "meta-data"), warnings)
    else:
        others = [user.data, network.data if network else None, vendor.data if vendor else None]
        meta = _generated_meta_data(instance_id, hostname, [*others, *(f.data for f in extra)])
    files.append(("meta-data", meta.data))
    if vendor is not None:
        files.append(("vendor-data", vendor.data))
    if network is not None:
        files.append(("network-config", network.data))
    files += [(f.name, f.data) for f in extra]

    with atomic_output(target) as temp:
        write_iso(temp, files, on_progress=on_progress)
        size = temp.stat().st_size
    return SeedIso(
        target=target,
        size=size,
        files=[(name_, len(data)) for name_, data in files],
        instance_id=meta.instance_id,
        hostname=meta.hostname,
        meta_data_generated=meta.generated,
        user_data_type=found.content_type + (" (gzip)" if found.compressed else ""),
        network_config_version=network_version,
        warnings=warnings,
        seconds=time.monotonic() - started,
    )


@dataclass(frozen=True)
class _MetaData:
    data: bytes
    instance_id: str | None
    hostname: str | None
    generated: bool


def _given_meta_data(file: SeedFile, warnings: list[Problem]) -> _MetaData:
    stated = check_meta_data(file)
    instance, host = stated.get("instance-id"), stated.get("local-hostname")
    if instance is None:
        warnings.append(
            Problem(
                "seed.no-instance-id",
                f"{file.label} states no instance-id: cloud-init takes every such seed for one instance, 'nocloud', "
                "and skips its per-instance modules after the first boot",
                severity=Severity.WARNING,
            )
        )
    return _MetaData(file.data, _text_or_none(instance), _text_or_none(host), generated=False)


def _generated_meta_data(instance_id: str | None, hostname: str | None, others: list[bytes | None]) -> _MetaData:
    name = check_hostname(hostname) if hostname is not None else DEFAULT_HOSTNAME
    iid = check_instance_id(instance_id) if instance_id is not None else content_instance_id([*others, name.encode()])
    return _MetaData(generate_meta_data(iid, name), iid, name, generated=True)


def _text_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def write_iso(
    path: Path, files: list[tuple[str, bytes]], *, on_progress: Callable[[float], None] | None = None
) -> None:
    """The files, in the root directory, under their Rock Ridge and Joliet names (and 8.3 ISO 9660 ones)."""
    iso = _new_iso(files)

    def progress(done: int, total: int, _opaque: object) -> None:
        if on_progress is not None and total:
            on_progress(done / total)

    try:
        with pinned_clock(*_PYCDLIB_CLOCKS), open(path, "wb") as out:
            iso.write_fp(out, progress_cb=progress)
    finally:
        iso.close()


def _new_iso(files: list[tuple[str, bytes]]) -> pycdlib.PyCdlib:
    """The ISO in memory, its dates those of reproducible.output_time() in UTC: the same files, the same bytes."""
    with pinned_clock(*_PYCDLIB_CLOCKS):
        iso = pycdlib.PyCdlib()
        iso.new(
            interchange_level=1,  # plain names stay 8.3: the most widely read
            vol_ident=LABEL,  # also the Joliet volume's label, which blkid reports first
            rock_ridge="1.09",
            joliet=3,
            app_ident_str="IMAGEPACK",
        )
        for name, data in files:
            iso.add_fp(io.BytesIO(data), len(data), "/" + ISO_NAMES[name], rr_name=name, joliet_path="/" + name)
    return iso


def _paths(*values: Contents | None) -> tuple[Path, ...]:
    return tuple(value for value in values if isinstance(value, Path))
