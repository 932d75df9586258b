"""Every option more than one command takes, declared once, and the pack options (the metadata of a .oci) as one
bundle that `pack` and `convert` add to their signatures with @pack_options."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import typer

QUIET = typer.Option(False, "--quiet", "-q", help="No progress bar and no chatter.")
VERBOSE = typer.Option(False, "--verbose", "-v", help="Show qemu-img command lines and full error details.")
JSON = typer.Option(False, "--json", help='Print one JSON object instead of text (failures too, as {"error": ...}).')
# -f and -O are qemu-img's: the source format and the output format. --force has no short form.
FROM_FORMAT = typer.Option(
    None, "--from", "-f", metavar="FORMAT", help="State the input format instead of detecting it."
)
MAX_SIZE = typer.Option(None, "--max-size", metavar="SIZE", help="Largest virtual size to accept (default 400G).")
ALLOW_BACKING = typer.Option(
    False, "--allow-backing", help="Follow backing files and vmdk extents the image names (trusted images only)."
)
FORCE = typer.Option(False, "--force", help="Replace existing outputs.")
SYNC = typer.Option(
    False, "--sync", help="Flush outputs to disk before they take their names (safe against a power cut; slower)."
)
FORMAT_OPTION = typer.Option(
    [], "-o", "--option", metavar="KEY=VALUE", help="Format option of the image written, KEY=VALUE (repeatable)."
)
COMPRESS = typer.Option(False, "--compress", "-c", help="Compress the output (qcow2, vmdk, a .oci's disk).")
LEVEL = typer.Option(
    None,
    "--level",
    metavar="N",
    help="Compression level (zst 1-22, xz 0-9, gz 1-9, stream vmdk 1-12, compressed qcow2: zlib 1-9, zstd 1-22).",
)
THREADS = typer.Option(
    None,
    "--threads",
    metavar="N",
    help="Compressing threads: zstd, xz, a compressed qcow2, a stream-optimized vmdk (default: all cores).",
)
STREAM_WRITER = typer.Option(
    None,
    "--stream-writer",
    metavar="imagepack|qemu",
    help="Who writes a stream-optimized vmdk or a compressed qcow2: imagepack's parallel writers (default) or qemu.",
)
VHD_SIZE = typer.Option(
    None,
    "--vhd-size",
    metavar="current|chs",
    help="A VHD whose footer size and CHS geometry differ: use which (default current, as Hyper-V and VirtualBox).",
)
SCRATCH = typer.Option(
    None,
    "--scratch",
    metavar="DIR",
    help="Where a compressed input is decompressed to, or an archive's disk extracted to, when it must be "
    "(default: beside the output; for verbs without one, the system's temporary directory).",
)
DISK = typer.Option(None, "--disk", metavar="N", min=1, help="Which of an OVA's disks to read (from 1).")
CHECKSUM = typer.Option(
    False, "--checksum", help="Report the SHA-256 and the MD5s Object Storage will show of the file written."
)
PART_SIZE = typer.Option(
    None, "--part-size", metavar="SIZE", help="Part size oci os object put will use (default 128MiB, its own)."
)
STRICT = typer.Option(False, "--strict", help="Treat an operating system missing from OCI's list as an error.")
OS_UNLISTED = typer.Option(
    False,
    "--os-unlisted",
    help="Take the operating system's name as typed though it is one letter from a name on OCI's list "
    "(without it, 'Ubunto' is refused as a typo of Ubuntu).",
)
GUEST_MISMATCH_OK = typer.Option(
    False,
    "--guest-mismatch-ok",
    help="Keep a --os, --os-version or --firmware the guest on the disk contradicts (a warning instead of a "
    "refusal); never a Windows release or edition.",
)


# Options several verbs take in words of their own: the flag, its default, metavar and bounds said here once, the
# help by each verb (worded("--firmware", "Default: ...")).
_WORDED: dict[str, dict[str, Any]] = {
    "--os": {"metavar": "NAME"},
    "--os-version": {"metavar": "VERSION"},
    "--launch-mode": {"metavar": "MODE"},
    "--firmware": {"metavar": "BIOS|UEFI_64"},
    "--expect": {"metavar": "REGEX"},
    "--timeout": {"metavar": "S", "min": 1},
    "--accel": {"metavar": "kvm|tcg"},
}


def worded(flag: str, help: str) -> Any:
    """The typer.Option of `flag` (one of _WORDED), with the help the verb words it with."""
    return typer.Option(None, flag, help=help, **_WORDED[flag])


LAUNCH_MODE = worded("--launch-mode", "NATIVE, PARAVIRTUALIZED (default), EMULATED, CUSTOM.")


@dataclass(frozen=True)
class PackOptions:
    """The pack options as typed: what a .oci target's image_metadata.json should say."""

    os_name: str | None = None
    os_version: str | None = None
    launch_mode: str | None = None
    firmware: str | None = None
    launch_option: Sequence[str] = ()
    shape: Sequence[str] = ()
    metadata: Path | None = None
    strict: bool = False
    os_unlisted: bool = False
    guest_mismatch_ok: bool = False

    def given(self) -> list[str]:
        """The options given on the command line, by their flags."""
        return [_FLAGS[field.name] for field in fields(self) if getattr(self, field.name)]


# One declaration per pack option: (parameter, its type, its typer.Option). The parameter names are PackOptions'.
_PACK_PARAMETERS: tuple[tuple[str, Any, Any], ...] = (
    (
        "os_name",
        str | None,
        worded("--os", "Operating system, e.g. 'Oracle Linux', 'Ubuntu', 'Windows'."),
    ),
    (
        "os_version",
        str | None,
        worded("--os-version", "Its version, e.g. 8, 22.04, 'Server 2022'."),
    ),
    (
        "launch_mode",
        str | None,
        LAUNCH_MODE,
    ),
    (
        "firmware",
        str | None,
        worded("--firmware", "Default: the guest's boot set-up, else the partition table."),
    ),
    (
        "launch_option",
        list[str],
        typer.Option(
            [], "--launch-option", metavar="KEY=VALUE", help="Override a launch option, e.g. networkType=VFIO."
        ),
    ),
    (
        "shape",
        list[str],
        typer.Option(
            [],
            "--shape",
            metavar="SHAPE",
            help="Compatible shape NAME[:OCPU_MIN-OCPU_MAX[:MEM_MIN-MEM_MAX]] (repeatable).",
        ),
    ),
    (
        "metadata",
        Path | None,
        typer.Option(
            None, "--metadata", metavar="FILE", help="Start from this image_metadata.json (unknown keys kept)."
        ),
    ),
    ("strict", bool, STRICT),
    ("os_unlisted", bool, OS_UNLISTED),
    ("guest_mismatch_ok", bool, GUEST_MISMATCH_OK),
)
_FLAGS = {name: option.param_decls[0] for name, _, option in _PACK_PARAMETERS}


def pack_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give `command` the pack options: typer sees them in the signature (after the command's own parameters) and
    the command receives them as one `pack: PackOptions` argument."""
    own = inspect.signature(command, eval_str=True)
    kept = [parameter for name, parameter in own.parameters.items() if name != "pack"]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)
        for name, annotation, option in _PACK_PARAMETERS
    ]
    # The shared options (--json, --quiet, --verbose) stay last in --help, after the pack options.
    split = next((i for i, p in enumerate(kept) if p.name in ("json_output", "quiet", "verbose")), len(kept))
    parameters = kept[:split] + added + kept[split:]

    @functools.wraps(command)
    def with_pack(**kwargs: Any) -> None:
        bundle = PackOptions(**{name: kwargs.pop(name) for name, _, _ in _PACK_PARAMETERS})
        command(**kwargs, pack=bundle)

    with_pack.__signature__ = own.replace(  # type: ignore[attr-defined]
        parameters=[p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in parameters]
    )
    with_pack.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": None}
    return with_pack
