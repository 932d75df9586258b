"""Running a plan: each unit of work in a worker process of its own, through the same `make` and `build` calls
as the single commands. Signals reach only this (main) process: the workers ignore Ctrl-C, and on a signal or an
exception here every worker is told to stop (SIGTERM, which each turns into a cleanup) and waited for, so no
partial output and no child outlives the batch."""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from imagepack import qemu, signals
from imagepack.atomic import TEMP_MARK, check_free_space
from imagepack.batch.manifest import Manifest, OutputEntry, SourceEntry
from imagepack.batch.plan import Plan, Shard, Unit, needs_decoding
from imagepack.batch.record import Written, has_record, inputs_of, recorded, write_record
from imagepack.batch.report import BatchReport, OutputReport, Status, error_json, sha256_of
from imagepack.build import BuildResult, Target, build, make
from imagepack.errors import ImagepackError, Interrupted, OutputError
from imagepack.inputs import open_source
from imagepack.progress import Progress

STOP_GRACE_SECONDS = 30  # a worker told to stop removes its temporaries and ends; one that does not is killed


class EventKind(StrEnum):
    STARTED = "started"
    PROGRESS = "progress"
    FINISHED = "finished"


@dataclass(frozen=True)
class Event:
    """What the batch reports as it goes, for a progress display."""

    kind: EventKind
    name: str  # the output's path, relative to the manifest's directory
    fraction: float = 0.0
    report: OutputReport | None = None  # with FINISHED


BatchEvents = Callable[[Event], None]


@dataclass(frozen=True)
class Decision:
    """One output of the plan, and whether its record lets it be skipped."""

    unit: Unit
    output: OutputEntry
    estimate: int
    inputs: dict[str, Any]
    written: Written | None  # what the current record says was written: skip it


def decide(plan: Plan, shard: Shard | None, *, force: bool) -> list[Decision]:
    """What this run would do with each output of its shard; reads records and stats sources, writes nothing."""
    version = ".".join(map(str, qemu.find_qemu_img().version))
    decisions = []
    for unit in plan.units_of(shard):
        for output, estimate in zip(unit.outputs, unit.estimates, strict=True):
            inputs = inputs_of(unit.source, output, qemu_img=version)
            written = None if force else recorded(output.target.path, inputs)
            decisions.append(Decision(unit, output, estimate, inputs, written))
    return decisions


@dataclass(frozen=True)
class Job:
    """What a worker builds: outputs of one source, in order; `shared` opens the source once for all of them."""

    source: SourceEntry
    outputs: tuple[OutputEntry, ...]
    inputs: tuple[dict[str, Any], ...]
    shared: bool
    keep_going: bool


@dataclass
class _Running:
    job: Job
    process: BaseProcess
    conn: Connection
    reserved: dict[int, tuple[Path, int]]  # per file system: a path on it, bytes held for this job
    finished: set[int] = dataclasses.field(default_factory=set)  # outputs it has reported
    started: dict[int, float] = dataclasses.field(default_factory=dict)


def run_plan(
    manifest: Manifest,
    plan: Plan,
    *,
    shard: Shard | None = None,
    jobs: int | None = None,
    keep_going: bool = False,
    force: bool = False,
    on_event: BatchEvents | None = None,
) -> BatchReport:
    """Build what `decide` says must be built, `jobs` units at a time; the rest is reported skipped. Without
    `keep_going`, nothing new starts after the first failure (what runs finishes) and the rest is cancelled."""
    started = time.monotonic()
    emit = on_event or (lambda event: None)
    reports: list[OutputReport] = []
    estimates = {}

    def finish(report: OutputReport) -> None:
        reports.append(report)
        emit(Event(EventKind.FINISHED, report.name, 1.0, report))

    pending: deque[Job] = deque()
    by_unit: dict[int, list[Decision]] = {}
    for decision in decide(plan, shard, force=force):
        estimates[decision.output.name] = decision.estimate
        if decision.written is not None:
            w = decision.written
            finish(
                _report(
                    decision.output,
                    decision.unit.source,
                    Status.SKIPPED,
                    decision.estimate,
                    size=w.size,
                    sha256=w.sha256,
                )
            )
        else:
            by_unit.setdefault(id(decision.unit), []).append(decision)
    for decisions in by_unit.values():
        unit = decisions[0].unit
        outputs = tuple(
            dataclasses.replace(
                d.output, target=dataclasses.replace(d.output.target, force=force or has_record(d.output.target.path))
            )
            for d in decisions
        )
        for output in outputs:
            os.makedirs(output.target.path.parent, exist_ok=True)
        pending.append(
            Job(unit.source, outputs, tuple(d.inputs for d in decisions), needs_decoding(unit.source), keep_going)
        )

    def fail_unstarted(job: Job, status: Status, error: dict[str, Any] | None = None) -> None:
        for output in job.outputs:
            finish(_report(output, job.source, status, estimates[output.name], error=error))

    limit = max(1, jobs or os.cpu_count() or 1)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no locks or threads inherited
    running: list[_Running] = []
    stopping = False
    try:
        while pending or running:
            while pending and not stopping and len(running) < limit:
                job = pending[0]
                needs = _reservation(job, estimates)
                try:
                    _check_room(needs, running)
                except OutputError as e:
                    if running:
                        break  # room comes back as running jobs finish: wait for them, not for a race
                    pending.popleft()
                    fail_unstarted(job, Status.FAILED, error_json(e))
                    stopping = not keep_going
                    continue
                pending.popleft()
                running.append(_launch(context, job, needs))
                for output in job.outputs[:1]:
                    emit(Event(EventKind.STARTED, output.name))
            if stopping:
                while pending:
                    fail_unstarted(pending.popleft(), Status.CANCELLED)
            if not running:
                continue
            for done in _wait_any(running):
                for message in _messages(done.conn):
                    failed = _handle(done, message, estimates, finish, emit)
                    stopping = stopping or (failed and not keep_going)
                if not done.process.is_alive():
                    done.process.join()
                    for message in _messages(done.conn):
                        failed = _handle(done, message, estimates, finish, emit)
                        stopping = stopping or (failed and not keep_going)
                    done.conn.close()
                    running.remove(done)
                    code = done.process.exitcode
                    for index, output in enumerate(done.job.outputs):
                        if index in done.finished:
                            continue
                        if code == 0:
                            finish(_report(output, done.job.source, Status.CANCELLED, estimates[output.name]))
                        else:
                            stopping = stopping or not keep_going
                            error = {
                                "code": "batch.worker",
                                "message": f"the worker building {output.name} ended with status {code}",
                                "remedy": None,
                                "value": None,
                            }
                            finish(_report(output, done.job.source, Status.FAILED, estimates[output.name], error=error))
    except BaseException:
        _stop(running)
        raise
    return BatchReport(manifest.path.name, str(shard) if shard else None, reports, time.monotonic() - started)


def _report(output: OutputEntry, source: SourceEntry, status: Status, estimate: int, **facts: Any) -> OutputReport:
    return OutputReport(output.name, source.name, status, estimate, **facts)


def _reservation(job: Job, estimates: dict[str, int]) -> dict[int, tuple[Path, int]]:
    """Bytes the job can need on each file system: each output's estimate (twice for a compressed output, whose
    uncompressed temporary exists beside it for a while), and a shared decoding's content."""
    needs: dict[int, tuple[Path, int]] = {}

    def add(path: Path, amount: int) -> None:
        device = os.stat(path.parent).st_dev
        where, held = needs.get(device, (path, 0))
        needs[device] = (where, held + amount)

    for output in job.outputs:
        estimate = estimates[output.name]
        add(output.target.path, estimate * (2 if output.target.compression else 1))
    if job.shared:
        add(job.outputs[0].target.path, max(estimates[output.name] for output in job.outputs))
    return needs


def _check_room(needs: dict[int, tuple[Path, int]], running: list[_Running]) -> None:
    """Free space for this job beside what the running jobs hold: the sum of their estimates is reserved, so two
    jobs that each fit alone are never started into a file system that holds only one."""
    for device, (where, amount) in needs.items():
        held = sum(r.reserved[device][1] for r in running if device in r.reserved)
        check_free_space(where, amount + held)


def _launch(context: Any, job: Job, needs: dict[int, tuple[Path, int]]) -> _Running:
    receiver, sender = context.Pipe(duplex=False)
    with signals.signals_held():  # a worker started is a worker recorded, so a stop always finds it
        with _ignoring_ctrl_c():  # the worker inherits the ignored Ctrl-C: only we decide when it stops
            process = context.Process(target=work, args=(sender, job), name=f"imagepack-batch {job.outputs[0].name}")
            process.start()
        running = _Running(job, process, receiver, needs)
    sender.close()
    return running


@contextlib.contextmanager
def _ignoring_ctrl_c() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; a worker's own install() still ignores Ctrl-C
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _wait_any(running: list[_Running]) -> list[_Running]:
    ready = set(wait([r.conn for r in running] + [r.process.sentinel for r in running]))
    return [r for r in running if r.conn in ready or r.process.sentinel in ready]


def _messages(conn: Connection) -> Iterator[tuple[Any, ...]]:
    with contextlib.suppress(OSError):
        while not conn.closed and conn.poll():
            try:
                yield conn.recv()
            except EOFError:
                return


def _handle(
    done: _Running,
    message: tuple[Any, ...],
    estimates: dict[str, int],
    finish: Callable[[OutputReport], None],
    emit: BatchEvents,
) -> bool:
    """Turn a worker's message into events and reports; whether it reports a failure."""
    kind, index, *rest = message
    output = done.job.outputs[index]
    if index in done.finished:
        return False  # a shared source that failed to open reports every output, some perhaps already reported
    if kind == "start":
        done.started[index] = time.monotonic()
        if index:
            emit(Event(EventKind.STARTED, output.name))
    elif kind == "progress":
        emit(Event(EventKind.PROGRESS, output.name, rest[0]))
    elif kind == "done":
        size, sha256, seconds, problems = rest
        done.finished.add(index)
        finish(
            _report(
                output,
                done.job.source,
                Status.BUILT,
                estimates[output.name],
                size=size,
                sha256=sha256,
                seconds=seconds,
                problems=problems,
            )
        )
    elif kind == "failed":
        error, seconds = rest
        done.finished.add(index)
        finish(_report(output, done.job.source, Status.FAILED, estimates[output.name], seconds=seconds, error=error))
        return True
    return False


def _stop(running: list[_Running]) -> None:
    """Tell every worker to stop, wait for each to clean up, and kill one that does not in time."""
    for r in running:
        with contextlib.suppress(ProcessLookupError):
            if r.process.pid is not None and r.process.exitcode is None:
                os.kill(r.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for r in running:
        r.process.join(max(0.0, deadline - time.monotonic()))
        if r.process.exitcode is None:
            r.process.kill()
            r.process.join()
            _remove_temporaries(r.job)  # it could not remove its own
        r.conn.close()


def _remove_temporaries(job: Job) -> None:
    for output in job.outputs:
        folder = output.target.path.parent
        for pattern in (f".{glob.escape(output.target.path.name)}{TEMP_MARK}*.tmp", f"{TEMP_MARK}*"):
            for path in glob.glob(str(folder / pattern)):
                shutil.rmtree(path, ignore_errors=True)


# In the worker process.


def work(conn: Connection, job: Job) -> None:
    """A worker's whole life: build the job's outputs and report each on `conn`. SIGTERM (from the batch) raises
    Interrupted, so the build's own cleanup runs; Ctrl-C is the batch's to handle, not ours."""
    signals.install()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logger = logging.getLogger("imagepack")
    logger.addHandler(logging.NullHandler())  # warnings travel in the results; the batch prints them once
    logger.propagate = False
    try:
        if job.shared:
            where = job.outputs[0].target.path.parent
            try:
                with open_source(
                    job.source.path,
                    claimed=job.source.claimed,
                    policy=job.source.policy,
                    scratch=where,
                    disk=job.source.disk,
                ) as source:
                    _build_each(
                        conn, job, lambda target, progress: build(source, target, scratch=where, on_progress=progress)
                    )
            except ImagepackError as e:
                for index in range(len(job.outputs)):
                    conn.send(("failed", index, error_json(e), 0.0))  # the batch ignores outputs already reported
        else:
            source_entry = job.source
            _build_each(
                conn,
                job,
                lambda target, progress: make(
                    source_entry.path,
                    target,
                    claimed=source_entry.claimed,
                    policy=source_entry.policy,
                    disk=source_entry.disk,
                    on_progress=progress,
                ),
            )
    except Interrupted as e:
        conn.close()
        sys.exit(e.exit_code)
    conn.close()


def _build_each(conn: Connection, job: Job, build_one: Callable[[Target, Progress], BuildResult]) -> None:
    for index, (output, inputs) in enumerate(zip(job.outputs, job.inputs, strict=True)):
        conn.send(("start", index))
        started = time.monotonic()
        try:
            done = build_one(output.target, _progress_sender(conn, index))
            sha256 = sha256_of(output.target.path) if output.checksum else None
            stat = os.stat(output.target.path)
            write_record(output.target.path, inputs, Written(stat.st_size, stat.st_mtime_ns, sha256))
        except ImagepackError as e:
            conn.send(("failed", index, error_json(e), time.monotonic() - started))
            if not job.keep_going:
                return
            continue
        except Exception as e:  # a bug must cost one output, not the batch's report
            error = {
                "code": "internal",
                "message": f"{type(e).__name__}: {e} (please report it)",
                "remedy": None,
                "value": None,
            }
            conn.send(("failed", index, error, time.monotonic() - started))
            if not job.keep_going:
                return
            continue
        problems = [problem.to_json() for problem in done.warnings]
        conn.send(("done", index, stat.st_size, sha256, time.monotonic() - started, problems))


def _progress_sender(conn: Connection, index: int) -> Progress:
    last = [-1.0]

    def send(fraction: float) -> None:
        if fraction - last[0] >= 0.01 or fraction >= 1.0 > last[0]:
            last[0] = fraction
            conn.send(("progress", index, fraction))

    return send
