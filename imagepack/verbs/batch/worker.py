"""A batch worker: a process of its own (`python -m imagepack.verbs.batch.worker FD`) that receives jobs on the socket
FD, one after another until it is sent None, and builds each job's outputs through the same `make` and `build`
calls as the single commands, writing each output's record and reporting on the socket as it goes. SIGTERM from
the batch becomes Interrupted, so the build's own cleanup runs (the temporary removed, qemu-img killed)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from imagepack.core import signals
from imagepack.core.errors import ImagepackError, Interrupted
from imagepack.core.progress import Progress
from imagepack.sources.open import open_source
from imagepack.verbs.batch.manifest import OutputEntry, SourceEntry
from imagepack.verbs.batch.record import Written, write_record
from imagepack.verbs.batch.report import error_json
from imagepack.verbs.build import BuildResult, build, make
from imagepack.verbs.presets import preset_named


@dataclass(frozen=True)
class Job:
    """What a worker builds: outputs of one source, in order."""

    source: SourceEntry
    outputs: tuple[OutputEntry, ...]
    inputs: tuple[dict[str, Any], ...]  # each output's record of what it is made from
    keep_going: bool
    decoding: int  # bytes the source's decoding writes beside the outputs (the plan's estimate; 0: none)

    @property
    def shared(self) -> bool:
        """Whether the source is opened once for all the outputs: a compressed source with several, decoded
        once; a single output takes `make`'s way, one pass where the target allows it."""
        return len(self.outputs) > 1 and self.decoding > 0


def main() -> None:
    signals.install()
    # Ctrl-C is the batch's to handle (we run in a session of our own); a batch killed outright takes us along
    # (process.start_worker asked for SIGTERM at its death before we started).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logger = logging.getLogger("imagepack")
    logger.addHandler(logging.NullHandler())  # warnings travel in the results; the batch prints them once
    logger.propagate = False
    conn = Connection(int(sys.argv[1]))
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})  # held since we started
        while (job := conn.recv()) is not None:  # one job after another, until the batch has no more
            work(conn, job)
            conn.send(("idle",))
    except Interrupted as e:
        conn.close()
        sys.exit(e.exit_code)
    except EOFError:
        sys.exit(1)  # the batch went away before it sent the job
    conn.close()


def work(conn: Connection, job: Job) -> None:
    if not job.shared:
        _build_each(conn, job, lambda output, progress: _make(job.source, output, progress))
        return
    where = job.outputs[0].target.path.parent
    try:
        with open_source(job.source.path, job.source.open_options(where)) as opened:
            _build_each(
                conn,
                job,
                lambda output, progress: build(
                    opened,
                    output.target,
                    preset=preset_named(output.preset) if output.preset else None,
                    resize_up=output.resize_up,
                    scratch=where,
                    on_progress=progress,
                ),
            )
    except ImagepackError as e:
        for index in range(len(job.outputs)):
            conn.send(("failed", index, error_json(e), 0.0))  # the batch ignores outputs already reported


def _make(source: SourceEntry, output: OutputEntry, progress: Progress) -> BuildResult:
    """The output as the single command makes it: `convert`, or `convert --for` (build.make, with the preset)."""
    return make(
        source.path,
        output.target,
        source.open_options(output.target.path.parent).following(progress),
        preset=preset_named(output.preset) if output.preset else None,
        resize_up=output.resize_up,
    )


def _build_each(conn: Connection, job: Job, build_one: Callable[[OutputEntry, Progress], BuildResult]) -> None:
    for index, (output, inputs) in enumerate(zip(job.outputs, job.inputs, strict=True)):
        conn.send(("start", index))
        started = time.monotonic()
        try:
            done = build_one(output, _progress_sender(conn, index))
            # The build reports the checksum an entry asks for (its Target's), hashed as written or read back once.
            sha256 = done.checksum.sha256 if done.checksum else None
            stat = os.stat(output.target.path)
            write_record(output.target.path, inputs, Written(stat.st_size, stat.st_mtime_ns, sha256))
        except ImagepackError as e:
            error: dict[str, Any] = error_json(e)
        except Exception as e:  # a bug must cost one output, not the batch's report
            error = {"code": "internal", "message": f"{type(e).__name__}: {e} (please report it)", "remedy": None}
        else:
            problems = [problem.to_json() for problem in done.warnings]
            conn.send(("done", index, stat.st_size, sha256, time.monotonic() - started, problems))
            continue
        conn.send(("failed", index, error, time.monotonic() - started))
        if not job.keep_going:
            return


def _progress_sender(conn: Connection, index: int) -> Progress:
    last = -1.0

    def send(fraction: float) -> None:
        nonlocal last
        if fraction - last >= 0.01 or (fraction >= 1.0 > last):
            last = fraction
            conn.send(("progress", index, fraction))

    return send


if __name__ == "__main__":
    main()
