"""Everything imagepack asks of qemu-img: one module builds its command lines and reads its answers.

Every image is named with an explicit format (qemu-img never probes), and an input already opened as
/proc/self/fd/N in a 'json:{...}' name that also says "backing": null (see ImageRef); any other file by an
absolute path (a name such as 'json:{...}' or 'nbd:...' stays a file name). Images inside a bigger file (an
archive member) are reached through the raw driver's offset.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagepack.core.errors import QemuImgError
from imagepack.core.openfile import OpenedPath, descriptor_of
from imagepack.core.process import Completed, Limits, run
from imagepack.core.progress import Progress
from imagepack.formats import ImageFormat, spec
from imagepack.tools.programs import Program, find_program, version_of

log = logging.getLogger("imagepack")

QEMU_IMG = Program(("qemu-img",), variable="IMAGEPACK_QEMU_IMG")
MIN_VERSION = (5, 1)  # qcow2 compression_type and the raw driver's offset/size options
# CVE-2024-4467 (qemu-img info/convert following a crafted data-file) is fixed from these releases on.
_CVE_2024_4467_FIXED = {(7, 2): 13, (8, 2): 6, (9, 0): 2}
INFO_LIMITS = Limits(address_space=1024**3, cpu_seconds=30, wall_seconds=60)  # as OpenStack bounds it
# check walks every L2 and refcount table (memory grows with the file, not the virtual size); run on each input
# before anything is written, so it gets the same bounds as info.
CHECK_LIMITS = INFO_LIMITS
QUICK_LIMITS = Limits(address_space=2 * 1024**3, cpu_seconds=120, wall_seconds=300)


@dataclass(frozen=True)
class QemuImg:
    path: str
    version: tuple[int, int, int]

    @property
    def lacks_cve_2024_4467_fix(self) -> bool:
        major, minor, micro = self.version
        if (major, minor) >= (9, 1):
            return False
        fixed_micro = _CVE_2024_4467_FIXED.get((major, minor))
        return fixed_micro is None or micro < fixed_micro


def _install_hint() -> str:
    return (
        "install it with 'apt-get install qemu-utils' (Debian/Ubuntu), 'dnf install qemu-img' (Fedora/RHEL) "
        "or 'brew install qemu' (macOS), or point IMAGEPACK_QEMU_IMG at it"
    )


@functools.cache
def find_qemu_img() -> QemuImg:
    """Locate qemu-img (IMAGEPACK_QEMU_IMG wins over PATH) and read its version, once per process."""
    path = find_program(QEMU_IMG, lambda where: QemuImgError(f"{where}; {_install_hint()}"))
    try:
        done = version_of(path)
    except OSError as e:
        raise QemuImgError(f"cannot run {path}: {e.strerror}; {_install_hint()}") from None
    match = re.search(r"version (\d+)\.(\d+)\.(\d+)", done.stdout)
    if done.returncode != 0 or not match:
        raise QemuImgError(f"{path} does not answer like qemu-img; {_install_hint()}", detail=done.stderr)
    found = QemuImg(path, (int(match[1]), int(match[2]), int(match[3])))
    if found.version[:2] < MIN_VERSION:
        have = ".".join(map(str, found.version))
        raise QemuImgError(f"qemu-img {have} is too old; imagepack needs 5.1 or later; {_install_hint()}")
    if found.lacks_cve_2024_4467_fix:
        log.warning(
            "qemu-img %s lacks the CVE-2024-4467 fix (7.2.13, 8.2.6, 9.0.2 and later have it); "
            "imagepack's own header checks still refuse external data files",
            ".".join(map(str, found.version)),
        )
    return found


def _escape_opt(value: str) -> str:
    return value.replace(",", ",,")  # qemu's option syntax doubles a literal comma


@dataclass(frozen=True)
class ImageRef:
    """An image qemu-img should read or write: a whole file, or a region of one (an archive member), with
    runtime options for its format driver (e.g. which of a VHD's two sizes to use).

    An opened input (openfile.OpenedPath) is named as the descriptor this process holds, /proc/self/fd/N, which
    every child inherits, and with "backing": null: qemu then reads the file imagepack checked and nothing else,
    whatever a name now points to and whatever its header names. Only a plain path (the user allowed backing
    files) lets qemu open the files the image names."""

    path: Path
    format: ImageFormat
    offset: int = 0
    size: int | None = None
    driver_options: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if descriptor_of(self.path) is None:
            object.__setattr__(self, "path", Path(os.path.abspath(self.path)))

    @property
    def opened(self) -> bool:
        """Whether qemu reads the file already open here (alone), rather than a name."""
        return descriptor_of(self.path) is not None

    @property
    def filename(self) -> str:
        return os.fspath(self.path)

    @property
    def is_region(self) -> bool:
        return self.offset != 0 or self.size is not None

    @property
    def needs_image_opts(self) -> bool:
        """Whether only --image-opts can name this image (a plain file name cannot carry offsets or options)."""
        return self.is_region or bool(self.driver_options)

    def image_opts(self) -> str:
        options = (f"{key}={_escape_opt(value)}" for key, value in self.driver_options)
        driver = [f"driver={spec(self.format).driver}", *options]
        if not self.is_region:
            return ",".join([*driver, "file.driver=file", f"file.filename={_escape_opt(self.filename)}"])
        parts = [
            *driver,
            "file.driver=raw",
            f"file.offset={self.offset}",
            *([f"file.size={self.size}"] if self.size is not None else []),
            "file.file.driver=file",
            f"file.file.filename={_escape_opt(self.filename)}",
        ]
        return ",".join(parts)

    def _node(self, *, read_only: bool) -> dict[str, Any]:
        """This image as a qemu block node definition: driver, region, driver options, and for an opened input
        no backing file."""
        flag: dict[str, Any] = {"read-only": True} if read_only else {}
        file: dict[str, Any] = {"driver": "file", "filename": self.filename, **flag}
        if self.is_region:
            region = {"offset": self.offset, **({"size": self.size} if self.size is not None else {})}
            file = {"driver": "raw", **region, **flag, "file": file}
        node: dict[str, Any] = {"driver": spec(self.format).driver, **flag, **dict(self.driver_options)}
        if self.opened and spec(self.format).backing:  # only these drivers take the option (-blockdev checks)
            node["backing"] = None
        return {**node, "file": file}

    def json_name(self) -> str:
        """The image as a 'json:{...}' file name, the one way to say "backing": null on a command line."""
        return "json:" + json.dumps(self._node(read_only=False), separators=(",", ":"))

    def blockdev(self, node_name: str) -> dict[str, Any]:
        """This image as a read-only qemu block node (qemu-system's -blockdev JSON): the same driver, region and
        driver options as image_opts(), nothing writable, so a virtual machine cannot change the input."""
        return {"node-name": node_name, **self._node(read_only=True)}

    def names(self) -> list[str]:
        """Every way a command line or qemu's messages name this image, longest first."""
        return [self.json_name(), self.image_opts(), self.filename]

    def args(self, *, opts: bool = False) -> list[str]:
        """How a qemu-img subcommand names this image as its input (`opts`: as options, for a command that names
        its output with --target-image-opts)."""
        if self.opened:
            return ["-f", spec(self.format).driver, self.json_name()]
        if opts or self.needs_image_opts:
            return ["--image-opts", self.image_opts()]
        return ["-f", spec(self.format).driver, self.filename]

    def dd_args(self) -> list[str]:
        """How `qemu-img dd` names this image as its input (its `if=`)."""
        if self.opened:
            return ["-f", spec(self.format).driver, f"if={self.json_name()}"]
        if self.needs_image_opts:
            return ["--image-opts", f"if={self.image_opts()}"]
        return ["-f", spec(self.format).driver, f"if={self.filename}"]

    def require_unchanged(self) -> None:
        """Refuse the input when the open file changed since it was opened (see openfile.py)."""
        if isinstance(self.path, OpenedPath):
            self.path.require_unchanged()


def _last_useful_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if not lines:
        return "no message"
    return re.sub(r"^qemu-img: ", "", lines[-1])


def _run(verb: str, args: list[str], *, limits: Limits, on_line: Callable[[str], None] | None = None) -> Completed:
    qemu = find_qemu_img()
    try:
        done = run([qemu.path, verb, *args], limits=limits, on_line=on_line)
    except OSError as e:
        raise QemuImgError(f"cannot run {qemu.path}: {e.strerror}") from None
    if done.timed_out:
        raise QemuImgError(
            f"qemu-img {verb} took longer than {limits.wall_seconds:.0f} s and was stopped",
            detail=done.stderr,
        )
    return done


def _checked(verb: str, args: list[str], *, limits: Limits, on_line: Callable[[str], None] | None = None) -> str:
    done = _run(verb, args, limits=limits, on_line=on_line)
    if done.returncode != 0:
        said = _last_useful_line(done.stderr)
        raise QemuImgError(
            f"qemu-img {verb} failed: {said}",
            detail=f"{' '.join(done.argv)}\n{done.stderr}",
            returncode=done.returncode,
            said=said,
        )
    return done.stdout


def _json(text: str, verb: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise QemuImgError(f"qemu-img {verb} printed something that is not JSON", detail=text[:2000]) from None


def info(image: ImageRef) -> dict[str, Any]:
    """`qemu-img info` under the same limits OpenStack uses for untrusted images."""
    result = _json(_checked("info", ["--output=json", *image.args()], limits=INFO_LIMITS), "info")
    if not isinstance(result, dict):
        raise QemuImgError("qemu-img info printed JSON that is not an object")
    return result


def measure(image: ImageRef, target: ImageFormat, options: Mapping[str, str] = {}) -> int | None:
    """Bytes the target file needs, where qemu-img can tell (qcow2 and raw targets only)."""
    if target not in (ImageFormat.QCOW2, ImageFormat.RAW):
        return None
    args = ["--output=json", "-O", spec(target).driver, *_option_args(options), *image.args()]
    result = _json(_checked("measure", args, limits=QUICK_LIMITS), "measure")
    return int(result["required"])


def _option_args(options: Mapping[str, str]) -> list[str]:
    if not options:
        return []
    return ["-o", ",".join(f"{key}={_escape_opt(value)}" for key, value in options.items())]


def _progress_parser(on_progress: Progress | None) -> Callable[[str], None] | None:
    if on_progress is None:
        return None
    pattern = re.compile(r"\((\d+(?:\.\d+)?)/100%\)")

    def parse(line: str) -> None:
        match = pattern.search(line)
        if match:
            on_progress(min(float(match[1]) / 100.0, 1.0))

    return parse


MAX_COROUTINES = 16  # qemu-img convert -m takes 1 to 16


def parallel_args(target_format: ImageFormat, *, compress: bool, threads: int | None) -> list[str]:
    """qemu-img convert's parallel options for a compressed qcow2: qcow2 compresses each cluster on its thread
    pool, as many at once as there are requests in flight (`-m`), and may take them out of order (`-W`) since
    every cluster is allocated on its own. `threads` None asks for qemu's most; 1 for one cluster at a time.
    Other targets keep qemu's defaults: a stream-optimized vmdk must be written in order."""
    if not compress or target_format is not ImageFormat.QCOW2:
        return []
    coroutines = MAX_COROUTINES if threads is None else max(1, min(threads, MAX_COROUTINES))
    return ["-m", str(coroutines), *(["-W"] if coroutines > 1 else [])]


def convert_wall_seconds(virtual_size: int) -> float:
    """A generous guard against a conversion that hangs: 10 minutes plus 10 s per GiB of disk."""
    return 600.0 + 10.0 * virtual_size / 1024**3


def convert(
    source: ImageRef,
    target: Path,
    target_format: ImageFormat,
    *,
    virtual_size: int,
    options: Mapping[str, str] = {},
    compress: bool = False,
    threads: int | None = None,
    on_progress: Progress | None = None,
) -> None:
    """Write `source` to a new file `target` in `target_format`."""
    args = [
        *(["-p"] if on_progress else []),
        *(["-c"] if compress else []),
        *parallel_args(target_format, compress=compress, threads=threads),
        *source.args(),
        "-O",
        spec(target_format).driver,
        *_option_args(options),
        str(Path(os.path.abspath(target))),
    ]
    _checked(
        "convert",
        args,
        limits=Limits(wall_seconds=convert_wall_seconds(virtual_size)),
        on_line=_progress_parser(on_progress),
    )


def convert_into(
    source: ImageRef,
    target: ImageRef,
    *,
    virtual_size: int,
    compress: bool = False,
    threads: int | None = None,
    on_progress: Progress | None = None,
) -> None:
    """Write `source` into an existing, empty image (`-n`), e.g. a qcow2 already placed inside an archive."""
    args = [
        *(["-p"] if on_progress else []),
        *(["-c"] if compress else []),
        *parallel_args(target.format, compress=compress, threads=threads),
        "-n",
        "--target-is-zero",  # the target is a fresh, empty qcow2: no need to write zeroes for holes
        *source.args(opts=True),
        "--target-image-opts",
        target.image_opts(),
    ]
    _checked(
        "convert",
        args,
        limits=Limits(wall_seconds=convert_wall_seconds(virtual_size)),
        on_line=_progress_parser(on_progress),
    )


def create(path: Path, fmt: ImageFormat, size: int, options: Mapping[str, str] = {}) -> None:
    args = ["-q", "-f", spec(fmt).driver, *_option_args(options), str(Path(os.path.abspath(path))), str(size)]
    _checked("create", args, limits=QUICK_LIMITS)


@dataclass(frozen=True)
class CheckResult:
    returncode: int  # 0 clean, 2 corruptions, 3 leaks only, 63 the format cannot be checked
    report: dict[str, Any]

    @property
    def damaged(self) -> bool:
        return self.returncode == 2

    def describe(self) -> str:
        if self.returncode == 0:
            return "clean"
        if self.returncode == 63:
            return "format cannot be checked"
        corruptions = self.report.get("corruptions", 0)
        leaks = self.report.get("leaks", 0)
        return f"{corruptions} corruptions, {leaks} leaked clusters (qemu-img check exit {self.returncode})"


def _first_error_line(stderr: str) -> str:
    # check prints one ERROR line per problem and ends with a generic "Check failed: ..."; the first says why.
    for line in stderr.splitlines():
        if line.startswith("ERROR"):
            return line.removeprefix("ERROR").strip(" :")
    return _last_useful_line(stderr)


def check(image: ImageRef) -> CheckResult:
    """`qemu-img check` (read-only), bounded like info. Exit 1 (the check could not finish, e.g. a vmdk grain
    table pointing past the end of the file) raises QemuImgError with returncode 1."""
    done = _run("check", ["--output=json", *image.args()], limits=CHECK_LIMITS)
    if done.returncode == 1:
        said = _first_error_line(done.stderr)
        raise QemuImgError(
            f"qemu-img check failed: {said}",
            detail=f"{' '.join(done.argv)}\n{done.stderr}",
            returncode=1,
            said=said,
        )
    if done.returncode not in (0, 2, 3, 63):
        raise QemuImgError(
            f"qemu-img check stopped with status {done.returncode} (out of its memory or CPU limit?)",
            detail=f"{' '.join(done.argv)}\n{done.stderr}",
        )
    report = {}
    if done.stdout.strip():
        parsed = _json(done.stdout, "check")
        report = parsed if isinstance(parsed, dict) else {}
    return CheckResult(done.returncode, report)


def read_head(image: ImageRef, length: int) -> bytes:
    """The first `length` bytes of the guest disk, read through qemu-img (for a partition table)."""
    with tempfile.TemporaryDirectory(prefix="imagepack-") as tmp:
        out = Path(tmp, "head.raw")
        block = 512
        *naming, source = image.dd_args()
        args = [*naming, "-O", "raw", f"bs={block}", f"count={length // block}", source, f"of={out}"]
        _checked("dd", args, limits=INFO_LIMITS)
        return out.read_bytes()[:length]
