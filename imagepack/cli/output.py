"""What every command prints: results as text or JSON, failures as one line (and a JSON error object with
--json), warnings, logging and the progress bar."""

from __future__ import annotations

import contextlib
import json
import logging
import select
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import typer

from imagepack.core.errors import EXIT_FAILURE, EXIT_USAGE, ImagepackError, Interrupted
from imagepack.core.problems import Problem, Remedy

if TYPE_CHECKING:
    from imagepack.files.checksums import Checksums
    from imagepack.verbs.build import BuildResult
    from imagepack.verbs.inspect.rules.finding import Finding


INTERRUPTED = "interrupted; nothing was written"

# click's UsageError (an unknown option, a missing argument, a bad value for a typed option), reached through the
# name typer exports, whichever copy of click this typer uses.
CommandLineError: type[Exception] = typer.BadParameter.__mro__[1]


# The option that does what a library remedy says, in the words a refusal ends with.
REMEDY_TEXT = {
    Remedy.ALLOW_BACKING: "pass --allow-backing if you trust this image",
    Remedy.RAISE_MAX_SIZE: "pass --max-size SIZE to accept it",
    Remedy.STATE_FORMAT: "pass --from {value} if the content is right",
    Remedy.STATE_FIRMWARE: "pass --firmware BIOS or --firmware UEFI_64",
    Remedy.STATE_OS: "pass --os NAME and --os-version VERSION",
    Remedy.SET_OS: "set them with 'imagepack meta set ARCHIVE operatingSystem=NAME operatingSystemVersion=VERSION'",
    Remedy.OS_UNLISTED: "did you mean {value}? If the name is right as typed, pass --os-unlisted",
    Remedy.STATE_TARGET_FORMAT: "pass --to FORMAT",
    Remedy.STATE_METADATA: "pass --metadata FILE, or repack the archive",
    Remedy.REPLACE_OUTPUT: "pass --force to replace it",
    Remedy.RESIZE_UP: "pass --resize-up to grow the output to {value} bytes (the input is not changed)",
    Remedy.STATE_LAUNCH_MODE: "pass --launch-mode {value} if so",
    Remedy.WINDOWS_CLOCK_FIX: "'imagepack seed-iso --windows-rtc-fix' makes a seed ISO with a .reg file that sets it",
    Remedy.QEMU_STREAM_WRITER: "pass --stream-writer qemu to have qemu-img write it",
    Remedy.USE_TCG: "try again with --accel tcg (slower, but it does not depend on KVM)",
    Remedy.GUEST_MISMATCH_OK: "leave the value out to take the guest's, or pass --guest-mismatch-ok if it is right",
    Remedy.ALLOW_PARTIAL: "pass --allow-partial to merge only these",
    Remedy.STATE_DISK: "pass --disk N",
    Remedy.NO_COMPRESS: "leave --compress out, or write qcow2 or vmdk",
    Remedy.UNCOMPRESSED_SUBFORMAT: "or leave --compress out",
    Remedy.FIRMWARE_AS: "or pack with --firmware {value}",
    Remedy.TAKE_GUEST_OS: "leave --os out to take it",
}


def with_remedy(
    message: str, remedy: Remedy | None, value: str | None = None, words: Mapping[Remedy, str] = REMEDY_TEXT
) -> str:
    """A refusal ending with what to do, in the front end's `words` (the command line's options by default)."""
    if remedy is None:
        return message
    return f"{message}; {words[remedy].format(value=value or remedy.value.upper())}"


def describe_problem(problem: Problem) -> str:
    return with_remedy(problem.message, problem.remedy, problem.value)


def finding_json(finding: Finding) -> dict[str, Any]:
    """A guest finding as the command line shows it: its fix ending with the option or command that does it."""
    shown = finding.to_json()
    if finding.fix is not None:
        shown["fix"] = with_remedy(finding.fix, finding.remedy, finding.value)
    return shown


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"imagepack: {record.levelname.lower()}: {record.getMessage()}"


def setup_logging(*, quiet: bool, verbose: bool) -> None:
    logger = logging.getLogger("imagepack")
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING)
    logger.propagate = False


def report_error(code: str, message: str, *, json_output: bool, label: str = "error") -> None:
    """One line on stderr; with --json also {"error": {...}} on stdout, so that a pipeline reading stdout sees it."""
    print(f"imagepack: {label}: {message}", file=sys.stderr)
    if json_output:
        print_json({"error": {"code": code, "message": message}})


def report_unparsed(e: Exception, *, json_output: bool) -> int:
    """A command line that does not parse: click's own text (usage, hint, error) on stderr, as typer prints it,
    and with --json the error object, code "usage". Returns the exit status."""
    _suggest_meant(e)
    e.show()  # type: ignore[attr-defined]  # click's UsageError, which typer does not type for us
    if json_output:
        print_json({"error": {"code": "usage", "message": e.format_message()}})  # type: ignore[attr-defined]
    status: int = getattr(e, "exit_code", EXIT_USAGE)
    return status


# qemu-img's short options, and what they mean here: -f is the source format, -O the output format. On a verb
# without that option, the one a user most likely meant is named.
_HABITS = {"-f": ("--from", "--force"), "-O": ("--to",)}


def _suggest_meant(e: Exception) -> None:
    """Name the option meant when an unknown short option is one of qemu-img's habits and the verb has it."""
    meant = _HABITS.get(getattr(e, "option_name", ""), ())
    ctx = getattr(e, "ctx", None)
    if not meant or ctx is None or getattr(e, "possibilities", None):
        return
    names = {name for param in ctx.command.params for name in getattr(param, "opts", ())}
    found = next((option for option in meant if option in names), None)
    if found is not None:
        e.possibilities = [found]  # type: ignore[attr-defined]


@contextlib.contextmanager
def reported(*, verbose: bool, json_output: bool = False, words: Mapping[Remedy, str] = REMEDY_TEXT) -> Iterator[None]:
    """Turn library failures into one line on stderr and the exit status they carry; never a traceback. A
    remedy is said in `words` (a batch's: the manifest's keys)."""
    try:
        yield
    except ImagepackError as e:
        report_error(e.code, with_remedy(e.message, e.remedy, e.value, words), json_output=json_output)
        if verbose and e.detail:
            print(e.detail.rstrip(), file=sys.stderr)
        raise typer.Exit(e.exit_code) from None
    except Interrupted:
        if json_output:
            print_json({"error": {"code": Interrupted.code, "message": INTERRUPTED}})
        raise  # main() prints the line and exits with the signal's status
    except BrokenPipeError as e:
        if output_closed():
            raise  # the reader of stdout or stderr went away: main() ends quietly
        report_error("system", f"a pipe to another process closed early: {e}", json_output=json_output)
        raise typer.Exit(EXIT_FAILURE) from None
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        report_error("system", f"{where}{e.strerror or e}", json_output=json_output)
        raise typer.Exit(EXIT_FAILURE) from None
    except (typer.Exit, typer.Abort, CommandLineError):
        raise  # the command line's own mistakes are click's to report
    except Exception as e:
        report_error(
            "internal", f"{type(e).__name__}: {e} (please report it)", json_output=json_output, label="internal error"
        )
        if verbose:
            traceback.print_exc()
        raise typer.Exit(EXIT_FAILURE) from None


def output_closed() -> bool:
    """Whether the reader of stdout or stderr went away (a pipe whose other end is closed polls as an error), as
    opposed to a pipe to a child process."""
    poll = select.poll()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            poll.register(stream.fileno(), select.POLLOUT)
    return any(events & select.POLLERR for _, events in poll.poll(0))


def print_warnings(warnings: Iterable[Problem]) -> None:
    for warning in warnings:
        print(f"imagepack: {warning.severity.value}: {warning.message}", file=sys.stderr)


def print_build(done: BuildResult) -> None:
    """What `convert` and `pack` say of the target they made (run.show prints its JSON and warnings)."""
    how = "copied" if done.copied else "converted"
    size = human_size(done.size) + _saved(done)
    if done.metadata is not None:
        print(
            f"packed {done.source} ({done.source_format}, {how}) into {done.target} "
            f"({size}; {done.metadata.launch_mode.value}, "
            f"{done.metadata.launch.firmware.value}) in {done.seconds:.1f} s"
        )
        for line in source_lines(done):
            print(f"  {line}")
    else:
        print(
            f"converted {done.source} ({done.source_format}) to {done.target} "
            f"({done.format}{', ' + done.compression if done.compression else ''}, {size}) "
            f"in {done.seconds:.1f} s"
        )
    checked = guest_line(done.guest)
    if checked is not None:
        print(f"  {checked}")
    print_checksums(done.checksum)


def guest_line(guest: dict[str, Any] | None) -> str | None:
    """What `verify` and `convert --for` say of a guest they checked (inspect/run.readiness's `guest`): its system,
    the firmwares it boots with, the rules it was checked against; None when it was not checked."""
    if not guest or not guest.get("checked"):
        return None
    system = guest["os"]
    named = system.get("pretty_name") or system.get("id") or system.get("family")
    boots = f"boots with {' and '.join(guest['firmware'])}" if guest["firmware"] else "no boot loader found"
    return f"guest: {named}, {boots}; rules for {guest.get('launch_mode') or guest.get('for')} checked"


def _saved(done: BuildResult) -> str:
    """What compressing the disk saved, against the output it would be uncompressed: the upload it spares."""
    if done.uncompressed_size is None or done.uncompressed_size <= 0:
        return ""
    saved = 1 - done.size / done.uncompressed_size
    if saved <= 0:
        return f", no smaller than the {human_size(done.uncompressed_size)} it is uncompressed"
    return f", against {human_size(done.uncompressed_size)} uncompressed: {saved:.0%} less to upload"


def source_lines(done: BuildResult) -> list[str]:
    """Where a .oci's system, version and firmware came from: 'os: Debian GNU/Linux 12 (read from the guest's
    /etc/os-release)'."""
    if done.metadata is None:
        return []
    name, version = done.sources.get("operatingSystem"), done.sources.get("operatingSystemVersion")
    system = f"{done.metadata.operating_system} {done.metadata.operating_system_version}"
    lines = []
    if name is not None and version is not None and name.text == version.text:
        lines.append(f"os: {system} ({name.text})")
    elif name is not None or version is not None:
        said = [f"{label} {origin.text}" for label, origin in (("name", name), ("version", version)) if origin]
        lines.append(f"os: {system} ({'; '.join(said)})")
    firmware = done.sources.get("firmware")
    if firmware is not None:
        lines.append(f"firmware: {done.metadata.launch.firmware.value} ({firmware.text})")
    return lines


def checksum_lines(checksums: Checksums) -> list[str]:
    """What `checksum` and every --checksum print: the SHA-256, the Content-MD5 of a single-part upload, and the
    opc-multipart-md5 of the multipart upload `oci os object put` makes with that part size, or that it makes none."""
    mib = checksums.part_size // 1024**2
    lines = [
        f"sha256:            {checksums.sha256}",
        f"Content-MD5:       {checksums.md5}  (single-part upload; md5sum prints {checksums.md5_hex})",
    ]
    if checksums.multipart_md5 is None:
        lines.append(f"opc-multipart-md5: none: not larger than the part size, {mib} MiB, so uploaded in one part")
    else:
        lines.append(f"opc-multipart-md5: {checksums.multipart_md5}  ({checksums.parts} parts of {mib} MiB)")
    return lines


def print_checksums(checksums: Checksums | None) -> None:
    for line in checksum_lines(checksums) if checksums is not None else []:
        print(f"  {line}")


@contextlib.contextmanager
def progress_bar(label: str, *, quiet: bool) -> Iterator[Callable[[float], None] | None]:
    """A tqdm bar on stderr fed by a 0..1 callback; none when quiet or when stderr is not a terminal. Each stage
    the work names (progress.stage: decompressing, then converting) gets a bar of its own, whose ETA is its own."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    with tqdm(
        total=100,
        desc=label,
        unit="%",
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}",
        file=sys.stderr,
        leave=False,
        smoothing=0,  # the stage's average speed: a steady ETA, not the last update's
    ) as bar:
        yield _StagedBar(bar, label)


class _StagedBar:
    """The bar as a progress.StagedProgress: the whole's fraction shown as the current stage's."""

    def __init__(self, bar: Any, label: str) -> None:
        self._bar, self._label = bar, label
        self._start, self._end = 0.0, 1.0

    def stage(self, label: str, start: float, end: float) -> None:
        self._start, self._end = start, max(end, start + 1e-9)
        self._bar.set_description_str(f"{self._label} ({label})", refresh=False)
        self._bar.reset(total=100)  # and its clock: the ETA is the stage's

    def __call__(self, fraction: float) -> None:
        if fraction > self._end + 1e-6:  # past the named stages: the rest of the work, unnamed
            self._start, self._end = self._end, 1.0
            self._bar.set_description_str(self._label, refresh=False)
            self._bar.reset(total=100)
        local = (fraction - self._start) / (self._end - self._start)
        self._bar.update(max(min(local, 1.0) * 100 - self._bar.n, 0))


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=False))


def human_size(n: int | None) -> str:
    if n is None:
        return "unknown"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
