"""`imagepack batch MANIFEST`: every output a manifest names, built in parallel, skipped when unchanged, split
into shards for CI matrices; `imagepack batch merge-reports` joins the shards' reports."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from imagepack.cli import MERGE
from imagepack.cli.output import REMEDY_TEXT, human_size, print_json, with_remedy
from imagepack.cli.run import Run, reporting
from imagepack.cli.shared_options import FORCE
from imagepack.core.errors import Interrupted
from imagepack.core.problems import Remedy

if TYPE_CHECKING:
    from imagepack.verbs.batch.plan import Plan, Shard
    from imagepack.verbs.batch.report import BatchReport, OutputReport
    from imagepack.verbs.batch.run import Decision, Event

BATCH_EXAMPLES = """\b
Examples:
  imagepack batch release.toml --jobs 4 --report report.json
  imagepack batch release.toml --shard 2/8 --report report-2.json
  imagepack batch release.toml --shard auto --shards 8   # Kubernetes Indexed Job
  imagepack batch release.toml --dry-run --shard auto    # GitLab parallel: which outputs are mine
  imagepack batch merge-reports report-*.json --output report.json   # the shards' reports joined"""

BATCH_INTERRUPTED = "interrupted; the outputs finished before it are kept, no partial one is left"

MERGE_EXAMPLES = """\b
Examples:
  imagepack batch merge-reports report-*.json --output report.json   # and SHA256SUMS beside it"""

# What a library remedy says in a manifest's words: the key that does it (the command line's are in REMEDY_TEXT).
BATCH_REMEDY_TEXT = {
    Remedy.ALLOW_BACKING: "set allow_backing = true in its [[source]] if you trust this image",
    Remedy.RAISE_MAX_SIZE: 'set max_size = "SIZE" in its [[source]] to accept it',
    Remedy.STATE_FORMAT: 'set from = "{value}" in its [[source]] if the content is right',
    Remedy.STATE_FIRMWARE: 'set firmware = "BIOS" or firmware = "UEFI_64" in the output\'s oci table',
    Remedy.STATE_OS: "set os and os_version in the output's oci table",
    Remedy.STATE_TARGET_FORMAT: 'set format = "FORMAT" in the output',
    Remedy.STATE_METADATA: 'set metadata = "FILE" in the output\'s oci table',
    Remedy.REPLACE_OUTPUT: "pass --force to replace it",
    Remedy.RESIZE_UP: "set resize_up = true in the output to grow it to {value} bytes (the source is not changed)",
    Remedy.STATE_LAUNCH_MODE: 'set launch_mode = "{value}" in the output\'s oci table if so',
    Remedy.WINDOWS_CLOCK_FIX: REMEDY_TEXT[Remedy.WINDOWS_CLOCK_FIX],  # a command of its own, not a setting
    Remedy.QEMU_STREAM_WRITER: "convert it with 'imagepack convert --stream-writer qemu' instead",
    Remedy.ALLOW_PARTIAL: REMEDY_TEXT[Remedy.ALLOW_PARTIAL],  # merge-reports' own option
    Remedy.STATE_DISK: "set disk = N in its [[source]]",
    Remedy.USE_TCG: REMEDY_TEXT[Remedy.USE_TCG],  # boot-test's own option; a batch does not boot
    Remedy.SET_OS: REMEDY_TEXT[Remedy.SET_OS],  # an archive's metadata: a command of its own
    Remedy.OS_UNLISTED: "did you mean {value}? If the name is right as typed, set os_unlisted = true in the output's "
    "oci table",
    Remedy.GUEST_MISMATCH_OK: "leave the key out to take the guest's value, or set guest_mismatch_ok = true in the "
    "output's oci table if it is right",
    Remedy.NO_COMPRESS: "leave compress out of the output, or write qcow2 or vmdk",
    Remedy.UNCOMPRESSED_SUBFORMAT: "or leave compress out of the output",
    Remedy.FIRMWARE_AS: 'or set firmware = "{value}" in the output\'s oci table',
    Remedy.TAKE_GUEST_OS: "leave os and os_version out of the output's oci table to take it",
}


def in_manifest_terms(message: str, remedy: Remedy | None, value: str | None = None) -> str:
    """A refusal, ending with what to set in the manifest (where the command line names its option)."""
    return with_remedy(message, remedy, value, BATCH_REMEDY_TEXT)


def register(app: typer.Typer) -> None:
    app.command("batch", epilog=BATCH_EXAMPLES)(batch_command)
    app.command(MERGE, epilog=MERGE_EXAMPLES)(merge_command)
    app.command("batch-merge", hidden=True, epilog=MERGE_EXAMPLES)(merge_command)  # the name it first had


@reporting(words=BATCH_REMEDY_TEXT)
def batch_command(
    manifest: Path = typer.Argument(..., metavar="MANIFEST", help="TOML manifest of sources and their outputs."),
    jobs: int = typer.Option(None, "--jobs", "-j", min=1, metavar="N", help="Outputs built at once (default: cores)."),
    shard: str = typer.Option(
        None, "--shard", metavar="I/N|auto", help="Build only shard I of N (from 0); auto reads the CI's variables."
    ),
    shards: int = typer.Option(
        None, "--shards", min=1, metavar="N", help="The shard count, with --shard auto under a Kubernetes Indexed Job."
    ),
    report: Path = typer.Option(None, "--report", metavar="FILE", help="Write the JSON report to FILE."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (build or skip, shard); touch nothing."),
    keep_going: bool = typer.Option(False, "--keep-going", "-k", help="Go on after a failed output."),
    force: bool = typer.Option(
        False, "--force", help="Rebuild every output, even unchanged ones, and replace files not made by a batch."
    ),
    *,
    run: Run,
) -> None:
    """Build every output of a manifest, in parallel; outputs whose record says nothing changed are skipped. Writes
    a SHA256SUMS beside the outputs; exits 1 when an output failed."""
    from imagepack.verbs.batch.manifest import load_manifest
    from imagepack.verbs.batch.plan import make_plan
    from imagepack.verbs.batch.report import write_report, write_sums_beside_outputs
    from imagepack.verbs.batch.run import decide, run_plan
    from imagepack.verbs.batch.writes import check_report_path

    which = _parse_shard(shard, shards)
    loaded = load_manifest(manifest)
    if report is not None:
        check_report_path(report, loaded, named="--report")
    plan = make_plan(loaded, which.count if which else 1)
    if dry_run:
        _print_plan(plan, decide(plan, None, force=force), which, json_output=run.json_output)
        return
    total = sum(len(unit.outputs) for unit in plan.units_of(which))
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)  # as the outputs' directories are: before the work
    try:
        with _display(total, quiet=run.quiet or run.json_output) as on_event:
            done = run_plan(loaded, plan, shard=which, jobs=jobs, keep_going=keep_going, force=force, on_event=on_event)
    except Interrupted as e:
        # Unlike a single command's, a batch's finished outputs stay: each is whole and recorded.
        print(f"imagepack: {BATCH_INTERRUPTED}", file=sys.stderr)
        if run.json_output:
            print_json({"error": {"code": Interrupted.code, "message": BATCH_INTERRUPTED}})
        raise typer.Exit(e.exit_code) from None
    if report is not None:
        write_report(report, done)
    sums = write_sums_beside_outputs(done, loaded.root)
    run.show(done, lambda: _print_summary(done, sums))
    if done.failed:
        raise typer.Exit(1)


@reporting
def merge_command(
    reports: list[Path] = typer.Argument(..., metavar="REPORT...", help="The shards' reports, of one manifest."),
    output: Path = typer.Option(
        None, "--output", metavar="FILE", help="Write the merged report here (default: stdout)."
    ),
    sums: Path = typer.Option(
        None, "--sums", metavar="FILE", help="Write the SHA256SUMS here (default: beside --output, else ./SHA256SUMS)."
    ),
    allow_partial: bool = typer.Option(
        False, "--allow-partial", help="Merge the reports there are, though shards are missing (the report names them)."
    ),
    force: bool = FORCE,
    *,
    run: Run,
) -> None:
    """Join the reports of every shard of a manifest's plan into the report one run would have written, and one
    SHA256SUMS of every output, named from the manifest's directory. Exits 1 when an output failed."""
    from imagepack.core.errors import InvalidValueError
    from imagepack.files.atomic import check_target
    from imagepack.verbs.batch.merge import merge_reports, merged_sums
    from imagepack.verbs.batch.report import SUMS_NAME, write_report, write_text
    from imagepack.verbs.batch.writes import file_key, same_file

    sums_path = sums or (output.parent if output else Path(".")) / SUMS_NAME
    if output is not None and same_file(file_key(output), file_key(sums_path)):
        raise InvalidValueError(
            f"--output {output} is also where the SHA256SUMS goes; give --sums another path",
            code="batch.collision",
        )
    merged = merge_reports(reports, allow_partial=allow_partial)
    for path in (output, sums_path):
        if path is not None:
            check_target(path, force=force, inputs=tuple(reports))
    if output is not None:
        write_report(output, merged)
    write_text(sums_path, merged_sums(merged))
    if output is None:  # the merged report goes to stdout
        print_json(merged.to_json())
    else:
        run.show(merged, lambda: _print_summary(merged, [sums_path], merged=True))
    if merged.failed:
        raise typer.Exit(1)


def _parse_shard(text: str | None, count: int | None) -> Shard | None:
    from imagepack.core.errors import InvalidValueError
    from imagepack.verbs.batch.plan import parse_shard, shard_from_environment

    if text is None:
        if count is not None:
            raise InvalidValueError("--shards goes with --shard auto (or give --shard I/N)")
        return None
    if text.strip().lower() == "auto":
        return shard_from_environment(os.environ, count)
    if count is not None:
        raise InvalidValueError("--shards goes with --shard auto; --shard I/N names the count itself")
    return parse_shard(text)


def _print_plan(plan: Plan, decisions: list[Decision], shard: Shard | None, *, json_output: bool) -> None:
    from imagepack.writers.oci.pack import read_from_guest

    shard_of = {id(unit): index for unit, index in zip(plan.units, plan.shards, strict=True)}
    rows: list[dict[str, Any]] = [
        {
            "path": d.output.name,
            "source": d.unit.source.name,
            "action": "skip" if d.written is not None else "build",
            "shard": shard_of[id(d.unit)],
            "mine": shard is None or shard_of[id(d.unit)] == shard.index,
            "estimate": d.estimate,
            "from_guest": read_from_guest(d.output.target.metadata) if d.output.target.metadata else [],
        }
        for d in decisions
    ]
    if json_output:
        print_json(
            {"shard": str(shard) if shard else None, "shards": plan.count, "loads": plan.loads(), "outputs": rows}
        )
        return
    for row in rows:
        where = f"shard {row['shard']}/{plan.count}" + ("" if row["mine"] else " (not this one)")
        read = row["from_guest"]
        said = ", ".join(read[:-1]) + " and " + read[-1] if len(read) > 1 else "".join(read)
        guest = f", {said} read from the guest" if read else ""
        print(f"{row['action']:5}  {row['path']}  from {row['source']}, {where}, ~{human_size(row['estimate'])}{guest}")
    if plan.count > 1:
        print("estimated per shard: " + ", ".join(human_size(load) for load in plan.loads()))


def _print_summary(done: BatchReport, sums: list[Path], *, merged: bool = False) -> None:
    counts = done.to_json()["summary"]
    told = ", ".join(f"{n} {status}" for status, n in counts.items() if n or status in ("built", "failed"))
    where = f"; checksums in {', '.join(str(p) for p in sums)}" if sums else ""
    if merged and sums:
        where += " (its paths start in the manifest's directory: run sha256sum -c there)"
    if done.missing_shards:
        count = len(done.missing_shards)
        told += f"; no report of {count} shard{'s' if count > 1 else ''} ({', '.join(map(str, done.missing_shards))})"
    print(f"batch {done.shard + ' ' if done.shard else ''}done: {told} in {done.seconds:.1f} s{where}")


def _line(report: OutputReport) -> str:
    if report.status == "built":
        return f"built {report.name} ({human_size(report.size)}) in {report.seconds or 0:.1f} s"
    if report.status == "skipped":
        return f"skipped {report.name} (unchanged)"
    return f"cancelled {report.name}"


def _failure(report: OutputReport) -> str:
    error = report.error or {}
    remedy = Remedy(error["remedy"]) if error.get("remedy") else None
    return (
        f"imagepack: error: {report.name}: {in_manifest_terms(str(error.get('message')), remedy, error.get('value'))}"
    )


@contextmanager
def _display(total: int, *, quiet: bool) -> Iterator[Callable[[Event], None]]:
    """One bar per running output and one for the batch on a terminal; a plain line per output otherwise.
    Failures and warnings always reach stderr."""
    from imagepack.verbs.batch.run import EventKind

    bars: dict[str, Any] = {}
    overall: Any = None
    if not quiet and sys.stderr.isatty():
        from tqdm import tqdm

        overall = tqdm(total=total, desc="batch", unit="output", file=sys.stderr, position=0)

    def say(line: str, *, error: bool = False) -> None:
        stream = sys.stderr if error else sys.stdout
        if overall is not None:
            overall.write(line, file=stream)
        else:
            print(line, file=stream, flush=True)

    def on_event(event: Event) -> None:
        if overall is not None and event.kind is EventKind.STARTED:
            from tqdm import tqdm

            bars[event.name] = tqdm(
                total=100,
                desc=event.name,
                unit="%",
                file=sys.stderr,
                leave=False,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}",
            )
        elif event.kind is EventKind.PROGRESS and event.name in bars:
            bar = bars[event.name]
            bar.update(max(event.fraction * 100 - bar.n, 0))
        elif event.kind is EventKind.FINISHED and event.report is not None:
            if event.name in bars:
                bars.pop(event.name).close()
            if overall is not None:
                overall.update(1)
            for problem in event.report.problems:
                say(f"imagepack: {problem['severity']}: {event.name}: {problem['message']}", error=True)
            if event.report.status == "failed":
                say(_failure(event.report), error=True)
            elif not quiet:
                say(_line(event.report))

    try:
        yield on_event
    finally:
        for bar in bars.values():
            bar.close()
        if overall is not None:
            overall.close()
