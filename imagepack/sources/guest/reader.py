"""A guest read from a disk already opened: exported read-only by qemu-nbd through that same open file, and
read by a child process (child.py) under memory, CPU and wall-clock limits, since guest file systems are parsed by
C code that a hostile disk may lead astray. The parent only checks and returns the child's JSON report."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from imagepack.core.errors import ImagepackError
from imagepack.core.process import Limits, run
from imagepack.core.sizes import parse_size
from imagepack.sources.disk import SourceImage
from imagepack.sources.guest.exits import EXIT_MEMORY
from imagepack.tools.nbd import exported

MEMORY = 1024**3  # address space: the interpreter and the readers need ~150 MiB; a guest that wants more is odd
CPU_SECONDS = 120
WALL_SECONDS = 180.0
MEMORY_VARIABLE = "IMAGEPACK_INSPECT_MEMORY"
REPORT_KEYS = ("storage", "os", "boot", "config", "encrypted", "unreadable")

_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent.parent)
# The child imports this very copy of imagepack, whatever PYTHONPATH or -I says.
_START = (
    "import sys; sys.path.insert(0, sys.argv[1]); from imagepack.sources.guest.child import main; "
    "sys.exit(main(sys.argv[2:]))"
)


# How a child out of address space says so: Python's own error, malloc's errno, the dynamic loader's mmap.
_NO_MEMORY = ("MemoryError", "Cannot allocate memory", "failed to map segment", "out of memory")


class InspectError(ImagepackError):
    """The guest could not be read: its reader ran out of a limit or failed."""

    code = "inspect"


def limits() -> Limits:
    wanted = os.environ.get(MEMORY_VARIABLE)
    memory = parse_size(wanted, what=MEMORY_VARIABLE) if wanted else MEMORY
    return Limits(address_space=memory, cpu_seconds=CPU_SECONDS, wall_seconds=WALL_SECONDS)


def inspect_image(image: SourceImage, shown: str) -> dict[str, Any]:
    """The report's guest part (REPORT_KEYS) on a disk already opened (a command that opened its input once
    reads the guest through that same open file); `shown` names it in messages."""
    with exported(image.ref) as client:
        fd, size, context = client.handover()
        report = _read_in_child(fd, size, context, shown)
    image.require_unchanged()
    return report


def _read_in_child(fd: int, size: int, context: int, shown: str) -> dict[str, Any]:
    bounds = limits()
    argv = [sys.executable, "-c", _START, _PACKAGE_PARENT, str(fd), str(size), str(context)]
    done = run(argv, limits=bounds, pass_fds=(fd,))
    memory = f"{(bounds.address_space or 0) / 1024**2:.0f} MiB"
    if done.timed_out:
        raise InspectError(f"{shown}: reading the guest took longer than {WALL_SECONDS:.0f} s and was stopped",
                           code="inspect.timeout")  # fmt: skip
    if done.returncode == EXIT_MEMORY or (done.returncode > 0 and any(m in done.stderr for m in _NO_MEMORY)):
        raise InspectError(
            f"{shown}: reading the guest needed more than the {memory} it may use and was stopped "
            f"(a damaged or hostile file system?); {MEMORY_VARIABLE}=SIZE raises the limit",
            code="inspect.memory",
        )
    if done.returncode == -signal.SIGXCPU:
        raise InspectError(
            f"{shown}: reading the guest used more than {CPU_SECONDS} s of CPU and was stopped "
            "(a damaged or hostile file system?)",
            code="inspect.timeout",
        )
    if done.returncode < 0:
        raise InspectError(
            f"{shown}: the guest reader was killed by signal {-done.returncode} while parsing the guest's file "
            f"systems (limits: {memory}, {CPU_SECONDS} s of CPU); the disk may be damaged or hostile",
            detail=done.stderr,
            code="inspect.killed",
        )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise InspectError(f"{shown}: the guest reader failed: {last}", detail=done.stderr, code="inspect.failed")
    return _checked(done.stdout, shown)


def _checked(text: str, shown: str) -> dict[str, Any]:
    try:
        report = json.loads(text)
    except ValueError:
        report = None
    if not isinstance(report, dict) or any(key not in report for key in REPORT_KEYS):
        raise InspectError(f"{shown}: the guest reader's report is malformed", code="inspect.failed")
    return report
