"""Running a plan: each unit of work in a worker process of its own (batch/worker.py), `jobs` at a time. Signals
reach only this process: the workers run in sessions of their own, and on a signal or an exception here every
worker is told to stop (SIGTERM, which each turns into its cleanup) and waited for, so no partial output and no
child outlives the batch. Free space is reserved across the running workers, not checked by each in a race."""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from imagepack.core.errors import OutputError
from imagepack.core.process import start_worker
from imagepack.core.signals import signals_held
from imagepack.files.atomic import TEMP_MARK, check_free_space
from imagepack.tools import qemu_img as qemu
from imagepack.verbs.batch.manifest import Manifest, OutputEntry, SourceEntry
from imagepack.verbs.batch.plan import Plan, Shard, Unit
from imagepack.verbs.batch.record import Written, has_record, inputs_of, recorded
from imagepack.verbs.batch.report import BatchReport, OutputReport, Status, error_json
from imagepack.verbs.batch.worker import Job

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


@dataclass
class _Worker:
    """A worker process, and the job it is building (None while it waits for one)."""

    process: subprocess.Popen[bytes]
    conn: Connection
    job: Job | None = None
    reserved: dict[int, tuple[Path, int]] = dataclasses.field(default_factory=dict)  # per file system: a path, bytes
    finished: set[int] = dataclasses.field(default_factory=set)  # the outputs of its job it has reported
    retired: bool = False  # told there is no more work


class _Batch:
    """The reports so far, and the events that announce them."""

    def __init__(self, emit: BatchEvents, *, keep_going: bool) -> None:
        self.emit = emit
        self.keep_going = keep_going
        self.reports: list[OutputReport] = []
        self.estimates: dict[str, int] = {}
        self.stopping = False  # a failure without keep-going: nothing new starts

    def finish(self, output: OutputEntry, source: SourceEntry, status: Status, **facts: Any) -> None:
        report = OutputReport(output.name, source.name, status, self.estimates[output.name], **facts)
        self.reports.append(report)
        self.stopping = self.stopping or (status is Status.FAILED and not self.keep_going)
        self.emit(Event(EventKind.FINISHED, report.name, 1.0, report))

    def unstarted(self, job: Job, status: Status, error: dict[str, Any] | None = None) -> None:
        for output in job.outputs:
            self.finish(output, job.source, status, error=error)

    def handle(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        kind, *rest = message
        job = worker.job
        assert job is not None, f"a message from an idle worker: {message}"
        if kind == "idle":
            self.end_job(worker, None)
            return
        index = rest.pop(0)
        output = job.outputs[index]
        if index in worker.finished:
            return  # a shared source that failed to open reports every output, some perhaps reported already
        if kind == "start":
            self.emit(Event(EventKind.STARTED, output.name))
        elif kind == "progress":
            self.emit(Event(EventKind.PROGRESS, output.name, rest[0]))
        elif kind == "done":
            size, sha256, seconds, problems = rest
            worker.finished.add(index)
            self.finish(output, job.source, Status.BUILT, size=size, sha256=sha256, seconds=seconds, problems=problems)
        elif kind == "failed":
            error, seconds = rest
            worker.finished.add(index)
            self.finish(output, job.source, Status.FAILED, seconds=seconds, error=error)

    def end_job(self, worker: _Worker, exit_code: int | None) -> None:
        """The worker is done with its job (or gone, with `exit_code`): what it did not report was cancelled (it
        stopped after a failure) or lost with it."""
        job, worker.job = worker.job, None
        if job is None:
            return
        for index, output in enumerate(job.outputs):
            if index in worker.finished:
                continue
            if exit_code is None:
                self.finish(output, job.source, Status.CANCELLED)
                continue
            error = {
                "code": "batch.worker",
                "message": f"the worker building it ended with status {exit_code}",
                "remedy": None,
                "value": None,
            }
            self.finish(output, job.source, Status.FAILED, error=error)
        worker.finished = set()
        worker.reserved = {}


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
    """Build what `decide` says must be built, by `jobs` workers at a time; the rest is reported skipped. Without
    `keep_going`, nothing new starts after the first failure (what runs finishes) and the rest is cancelled."""
    started = time.monotonic()
    batch = _Batch(on_event or (lambda event: None), keep_going=keep_going)
    pending = deque(_jobs(batch, plan, shard, force=force, keep_going=keep_going))
    limit = max(1, jobs or os.cpu_count() or 1)
    workers: list[_Worker] = []
    try:
        while pending or workers:
            busy = [w for w in workers if w.job is not None]
            while pending and not batch.stopping and len(busy) < limit:
                needs = _reservation(pending[0], batch.estimates)
                try:
                    _check_room(needs, busy)
                except OutputError as e:
                    if busy:
                        break  # room comes back as the running jobs finish: wait for them
                    batch.unstarted(pending.popleft(), Status.FAILED, error_json(e))
                    continue
                worker = next((w for w in workers if w.job is None and not w.retired), None)
                if worker is None:
                    worker = _start_worker()
                    workers.append(worker)
                worker.job, worker.reserved = pending.popleft(), needs
                worker.conn.send(worker.job)  # workers are reused: starting one costs more than most outputs
                busy.append(worker)
            if batch.stopping:
                while pending:
                    batch.unstarted(pending.popleft(), Status.CANCELLED)
            if not pending:
                for idle in (w for w in workers if w.job is None and not w.retired):
                    idle.conn.send(None)  # no more work: it ends
                    idle.retired = True
            for ready in _wait_any(workers):
                for message in _messages(ready.conn):
                    batch.handle(ready, message)
                if ready.conn.closed:  # the worker has ended, or is about to
                    workers.remove(ready)
                    code = ready.process.wait()
                    batch.end_job(ready, code)
    except BaseException:
        _stop(workers)
        raise
    return BatchReport(
        manifest.path.name,
        manifest.sha256,
        str(shard) if shard else None,
        batch.reports,
        time.monotonic() - started,
        planned=sum(len(unit.outputs) for unit in plan.units),
    )


def _jobs(batch: _Batch, plan: Plan, shard: Shard | None, *, force: bool, keep_going: bool) -> Iterator[Job]:
    """Report what is skipped; yield a job per unit for the rest, its output directories made."""
    by_unit: dict[int, list[Decision]] = {}
    for decision in decide(plan, shard, force=force):
        batch.estimates[decision.output.name] = decision.estimate
        if decision.written is None:
            by_unit.setdefault(id(decision.unit), []).append(decision)
            continue
        written = decision.written
        batch.finish(decision.output, decision.unit.source, Status.SKIPPED, size=written.size, sha256=written.sha256)
    for decisions in by_unit.values():
        unit = decisions[0].unit
        outputs = []
        for d in decisions:
            # A file a batch made (it has a record) may be replaced; anyone else's needs the force the user gives.
            target = dataclasses.replace(d.output.target, force=force or has_record(d.output.target.path))
            os.makedirs(target.path.parent, exist_ok=True)
            outputs.append(dataclasses.replace(d.output, target=target))
        yield Job(unit.source, tuple(outputs), tuple(d.inputs for d in decisions), keep_going, unit.decoding)


def _reservation(job: Job, estimates: dict[str, int]) -> dict[int, tuple[Path, int]]:
    """Bytes the job can need on each file system: each output's estimate (twice for a compressed output, whose
    uncompressed temporary exists beside it for a while), and a compressed source's decoded content."""
    needs: dict[int, tuple[Path, int]] = {}

    def add(path: Path, amount: int) -> None:
        device = os.stat(path.parent).st_dev
        where, held = needs.get(device, (path, 0))
        needs[device] = (where, held + amount)

    for output in job.outputs:
        add(output.target.path, estimates[output.name] * (2 if output.target.compression else 1))
    if job.decoding:  # shared, or a single output's, beside itself (unless it goes in one pass)
        add(job.outputs[0].target.path, job.decoding)
    return needs


def _check_room(needs: dict[int, tuple[Path, int]], busy: list[_Worker]) -> None:
    """Room for this job beside what the running jobs hold: two jobs that each fit alone are never started into
    a file system that holds only one of them."""
    for device, (where, amount) in needs.items():
        held = sum(w.reserved[device][1] for w in busy if device in w.reserved)
        check_free_space(where, amount + held)


def _start_worker() -> _Worker:
    ours, theirs = socket.socketpair()
    try:
        with signals_held():  # a worker started is a worker recorded, so a stop always finds it
            process = start_worker(
                [sys.executable, "-m", "imagepack.verbs.batch.worker", str(theirs.fileno())], pass_fds=[theirs.fileno()]
            )
            worker = _Worker(process, Connection(ours.detach()))
    finally:
        theirs.close()
    return worker


def _wait_any(workers: list[_Worker]) -> list[_Worker]:
    if not workers:
        return []
    ready = set(wait([w.conn for w in workers]))
    return [w for w in workers if w.conn in ready]


def _messages(conn: Connection) -> Iterator[tuple[Any, ...]]:
    """What the worker has sent so far; at its end, the connection is closed."""
    while conn.poll():
        try:
            yield conn.recv()
        except (EOFError, OSError):
            conn.close()
            return


def _stop(workers: list[_Worker]) -> None:
    """Tell every worker to stop, wait for each to clean up, and kill one that does not in time."""
    for r in workers:
        with contextlib.suppress(ProcessLookupError):
            r.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for r in workers:
        try:
            r.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            r.process.kill()
            r.process.wait()
            if r.job is not None:
                _remove_temporaries(r.job)  # it could not remove its own
        r.conn.close()


def _remove_temporaries(job: Job) -> None:
    """The hidden directories a killed worker's outputs were being written in."""
    for output in job.outputs:
        pattern = f".{glob.escape(output.target.path.name)}{TEMP_MARK}*.tmp"
        for path in glob.glob(str(output.target.path.parent / pattern)):
            shutil.rmtree(path, ignore_errors=True)
