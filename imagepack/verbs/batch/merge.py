"""Shard reports merged into the report one run of the whole manifest writes: every shard of one plan (the same
manifest text, the same shard count) exactly once, every output once, and nothing missing unless a part is what
is asked for; and the one SHA256SUMS of all the outputs, named from the manifest's directory."""

from __future__ import annotations

from pathlib import Path

from imagepack.core.errors import InputError
from imagepack.core.problems import Remedy
from imagepack.verbs.batch.report import BatchReport, OutputReport, Status, sums_text
from imagepack.verbs.batch.reportfile import read_report


def merge_reports(paths: list[Path], *, allow_partial: bool = False) -> BatchReport:
    """The reports of one plan's shards as one report. Without `allow_partial` every shard must be there and
    every output of the plan in one of them; with it, the merged report names the shards it lacks."""
    reports = [read_report(path) for path in paths]
    first, first_path = reports[0], paths[0]
    for path, report in zip(paths, reports, strict=True):
        if report.manifest_sha256 != first.manifest_sha256 or report.manifest != first.manifest:
            raise InputError(
                f"{path}: a report of another manifest than {first_path} ({report.manifest} against "
                f"{first.manifest}, or its text changed between the runs); merge the reports of one plan",
                code="batch.report",
            )
        if report.missing_shards:
            raise InputError(
                f"{path}: a merged report with shards missing; merge the shards' own reports", code="batch.report"
            )
    missing = _missing_shards(paths, reports)
    outputs = _outputs(paths, reports)
    planned = {report.planned for report in reports}
    if len(planned) > 1:
        raise InputError(
            f"the reports disagree on the plan's outputs ({', '.join(map(str, sorted(planned)))}); merge the "
            "reports of one plan",
            code="batch.report",
        )
    if missing and not allow_partial:
        count = first.shard.partition("/")[2] if first.shard else "1"
        raise InputError(
            f"no report of shard {', '.join(f'{m}/{count}' for m in missing)}: the merged report would lack its "
            f"outputs ({len(outputs)} of the plan's {first.planned}); give every shard's report",
            code="batch.shard-missing",
            remedy=Remedy.ALLOW_PARTIAL,
        )
    if not missing and len(outputs) != first.planned:
        raise InputError(
            f"the reports list {len(outputs)} outputs, but their plan has {first.planned}; merge the reports of "
            "one plan, as the batch wrote them",
            code="batch.report",
        )
    # The shards ran side by side: the batch took as long as the slowest.
    seconds = max(report.seconds for report in reports)
    return BatchReport(
        first.manifest, first.manifest_sha256, None, outputs, seconds, first.planned, missing_shards=tuple(missing)
    )


def _missing_shards(paths: list[Path], reports: list[BatchReport]) -> list[int]:
    """The shard indexes no report covers. A whole run's report (no shard) is merged alone."""
    if any(report.shard is None for report in reports):
        if len(reports) > 1:
            whole = next(path for path, report in zip(paths, reports, strict=True) if report.shard is None)
            raise InputError(
                f"{whole} is the report of a whole run, not a shard's; merge it alone", code="batch.report"
            )
        return []
    counts = {report.shard.partition("/")[2] for report in reports if report.shard}
    if len(counts) > 1:
        raise InputError(
            f"the reports are of plans split {' and '.join(sorted(counts))} ways; merge the shards of one split",
            code="batch.report",
        )
    seen: dict[str, Path] = {}
    for path, report in zip(paths, reports, strict=True):
        assert report.shard is not None
        if report.shard in seen:
            raise InputError(
                f"{path} and {seen[report.shard]} are both the report of shard {report.shard}; give each shard's "
                "report once",
                code="batch.report",
            )
        seen[report.shard] = path
    count = int(counts.pop())
    have = {int(shard.partition("/")[0]) for shard in seen}
    return [index for index in range(count) if index not in have]


def _outputs(paths: list[Path], reports: list[BatchReport]) -> list[OutputReport]:
    seen: dict[str, Path] = {}
    outputs: list[OutputReport] = []
    for path, report in zip(paths, reports, strict=True):
        for output in report.outputs:
            key = output.name.casefold()  # one file on a case-insensitive file system
            if key in seen:
                again = "twice in it" if seen[key] == path else f"also in {seen[key]}"
                raise InputError(
                    f"{path}: the output {output.name} is {again}; give each shard's report once",
                    code="batch.report",
                )
            seen[key] = path
            outputs.append(output)
    return outputs


def merged_sums(report: BatchReport) -> str:
    """One SHA256SUMS for every output built or skipped, named by its path from the manifest's directory."""
    done = (Status.BUILT, Status.SKIPPED)
    return sums_text([(o.name, o.sha256) for o in report.outputs if o.sha256 is not None and o.status in done])
