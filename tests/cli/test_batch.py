"""`imagepack batch MANIFEST`: a manifest of sources and outputs built in parallel, skipped when unchanged, split
into shards whose merged report is the one a single run writes, and stopped cleanly by a failure or a signal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from imagepack.core.errors import EXIT_SIGINT, InvalidValueError
from imagepack.verbs.batch.manifest import load_manifest
from imagepack.verbs.batch.plan import assign_shards, make_plan
from imagepack.writers.sample import write_data_disk, write_sample_disk
from tests.cli.test_pack_onepass import created_in
from tests.conftest import interrupt_when, leftovers, qemu_img, run_cli
from tests.readers import VHD_FIXED, qemu_compare, read_guest_disk, read_vhd_footer

MiB = 1024**2
NAMES = ("alpha", "beta", "gamma")

# The outputs each source gets: a compressed qcow2, a stream vmdk, a zstd-compressed raw disk.
MIXED = """
  [[source.output]]
  path = "out/{name}.qcow2"
  compress = true

  [[source.output]]
  path = "out/{name}.vmdk"
  options = {{ subformat = "streamOptimized", adapter_type = "lsilogic" }}

  [[source.output]]
  path = "out/{name}.raw.zst"
  level = 5
"""

# Outputs whose bytes are the same on every run (a vmdk has a random CID, a .oci's tar a time): two runs' reports
# then agree on every checksum.
REPRODUCIBLE = """
  [[source.output]]
  path = "out/{name}.qcow2"

  [[source.output]]
  path = "out/{name}-small.qcow2"
  compress = true
  threads = 1  # in order: on more threads qemu-img -W writes the clusters in another order each run
  options = {{ cluster_size = "128k" }}

  [[source.output]]
  path = "out/{name}.raw.zst"
"""


def make_sources(folder: Path) -> dict[str, Path]:
    """Three small disks with different data; the third arrives as a zstd stream, decoded once for its outputs."""
    paths = {}
    for seed, name in enumerate(NAMES):
        path = folder / f"{name}.raw"
        write_sample_disk(path, 4 * MiB + seed * MiB, seed=seed + 1)
        paths[name] = path
    subprocess.run(["zstd", "-q", "--rm", str(paths["gamma"])], check=True)
    paths["gamma"] = folder / "gamma.raw.zst"
    return paths


def write_manifest(folder: Path, outputs: str = MIXED) -> Path:
    sources = make_sources(folder)
    text = "".join(f'[[source]]\npath = "{path.name}"\n{outputs.format(name=name)}\n' for name, path in sources.items())
    manifest = folder / "release.toml"
    manifest.write_text(text)
    return manifest


def batch(manifest: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("batch", str(manifest), "--json", *args, timeout=300)


def outputs_of(done: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    report = json.loads(done.stdout)
    return {output["path"]: output for output in report["outputs"]}


def without_timings(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: without_timings(item) for key, item in value.items() if key != "seconds"}
    if isinstance(value, list):
        return [without_timings(item) for item in value]
    return value


def raw_of(source: Path, tmp_path: Path) -> Path:
    if source.suffix != ".zst":
        return source
    plain = tmp_path / f"{source.stem}.plain"
    subprocess.run(["zstd", "-q", "-d", "-f", str(source), "-o", str(plain)], check=True)
    return plain


def test_a_manifest_of_three_sources_and_three_outputs_each_builds_all_nine(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path)
    done = batch(manifest, "--jobs", "2", "--report", str(tmp_path / "report.json"))
    assert done.returncode == 0, done.stderr
    outputs = outputs_of(done)
    assert sorted(outputs) == sorted(f"out/{n}.{s}" for n in NAMES for s in ("qcow2", "vmdk", "raw.zst"))
    assert {o["status"] for o in outputs.values()} == {"built"}
    assert json.loads((tmp_path / "report.json").read_text())["outputs"] == json.loads(done.stdout)["outputs"]
    out = tmp_path / "out"
    for name in NAMES:
        source = raw_of(next(tmp_path.glob(f"{name}.raw*")), tmp_path)
        guest = read_guest_disk(source, "raw")
        for fmt in ("qcow2", "vmdk"):
            assert qemu_compare(source, "raw", out / f"{name}.{fmt}", fmt).returncode == 0
            assert read_guest_disk(out / f"{name}.{fmt}", fmt) == guest  # an independent reader agrees
        plain = tmp_path / f"{name}.back.raw"
        subprocess.run(["zstd", "-q", "-d", str(out / f"{name}.raw.zst"), "-o", str(plain)], check=True)
        assert read_guest_disk(plain, "raw") == guest
    sums = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True, text=True, check=False)
    assert sums.returncode == 0, sums.stdout + sums.stderr
    assert len(sums.stdout.splitlines()) == 9
    assert leftovers(out) == []


def test_a_rerun_skips_everything_and_touching_one_source_rebuilds_only_its_outputs(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path)
    first = batch(manifest)
    assert first.returncode == 0, first.stderr
    again = batch(manifest)
    assert again.returncode == 0, again.stderr
    assert {o["status"] for o in outputs_of(again).values()} == {"skipped"}
    assert {p: o["sha256"] for p, o in outputs_of(again).items()} == {
        p: o["sha256"] for p, o in outputs_of(first).items()
    }
    os.utime(tmp_path / "beta.raw")  # same bytes, a new mtime: another source as far as the record knows
    touched = batch(manifest)
    assert touched.returncode == 0, touched.stderr
    statuses = {path: output["status"] for path, output in outputs_of(touched).items()}
    assert statuses == {path: "built" if "beta" in path else "skipped" for path in statuses}
    forced = batch(manifest, "--force")
    assert {o["status"] for o in outputs_of(forced).values()} == {"built"}


def test_an_output_the_batch_did_not_make_is_not_replaced_without_force(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "alpha.qcow2").write_bytes(b"someone else's file")
    done = batch(manifest, "--keep-going")
    assert done.returncode == 1
    failed = outputs_of(done)["out/alpha.qcow2"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "output.exists"
    assert "out/alpha.qcow2: " in done.stderr and "pass --force to replace it" in done.stderr
    assert (tmp_path / "out" / "alpha.qcow2").read_bytes() == b"someone else's file"


def test_three_shards_cover_every_output_once_and_their_merged_report_is_the_single_runs(tmp_path: Path) -> None:
    single_dir, sharded_dir = tmp_path / "single", tmp_path / "sharded"
    single_dir.mkdir()
    sharded_dir.mkdir()
    single = batch(write_manifest(single_dir, REPRODUCIBLE))
    assert single.returncode == 0, single.stderr
    manifest = write_manifest(sharded_dir, REPRODUCIBLE)
    reports, seen = [], []
    for index in range(3):
        report = sharded_dir / f"report-{index}.json"
        done = batch(manifest, "--shard", f"{index}/3", "--report", str(report))
        assert done.returncode == 0, done.stderr
        assert json.loads(report.read_text())["shard"] == f"{index}/3"
        seen.extend(outputs_of(done))
        reports.append(str(report))
    assert sorted(seen) == sorted(outputs_of(single))  # every output, each exactly once
    shard_sums = sorted(p.name for p in (sharded_dir / "out").glob("SHA256SUMS*"))
    assert shard_sums == [f"SHA256SUMS.shard-{i}-of-3" for i in range(3)]  # in one directory, none replaced
    gamma_shards = {
        i for i, r in enumerate(reports) for o in json.loads(Path(r).read_text())["outputs"] if "gamma" in o["path"]
    }
    assert len(gamma_shards) == 1  # a compressed source's outputs share one decoding, so one shard
    merged_path = sharded_dir / "report.json"
    (tmp_path / "merge-reports").mkdir()  # a folder of that name where it runs changes nothing
    merged = run_cli("batch", "merge-reports", *reports, "--output", str(merged_path), cwd=tmp_path)
    assert merged.returncode == 0, merged.stderr
    assert without_timings(json.loads(merged_path.read_text())) == without_timings(json.loads(single.stdout))
    sums = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=sharded_dir, capture_output=True, text=True, check=False
    )
    assert sums.returncode == 0, sums.stdout + sums.stderr
    assert len(sums.stdout.splitlines()) == 9
    twice = run_cli("batch-merge", reports[0], reports[0], "--output", str(sharded_dir / "twice.json"))  # first name
    assert twice.returncode == 1
    assert twice.stderr.startswith("imagepack: error: ") and "give each shard's report once" in twice.stderr
    assert not (sharded_dir / "twice.json").exists()


def test_shard_auto_reads_the_indexed_job_index_and_gitlab_s_one_based_node_index(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path)
    environ = {
        k: v for k, v in os.environ.items() if k not in ("JOB_COMPLETION_INDEX", "CI_NODE_INDEX", "CI_NODE_TOTAL")
    }
    kubernetes = run_cli(
        "batch",
        str(manifest),
        "--dry-run",
        "--json",
        "--shard",
        "auto",
        "--shards",
        "3",
        env={**environ, "JOB_COMPLETION_INDEX": "2"},
    )
    assert kubernetes.returncode == 0, kubernetes.stderr
    assert json.loads(kubernetes.stdout)["shard"] == "2/3"
    gitlab = run_cli(
        "batch",
        str(manifest),
        "--dry-run",
        "--json",
        "--shard",
        "auto",
        env={**environ, "CI_NODE_INDEX": "1", "CI_NODE_TOTAL": "3"},
    )
    assert json.loads(gitlab.stdout)["shard"] == "0/3"
    nothing = run_cli("batch", str(manifest), "--dry-run", "--shard", "auto", env=environ)
    assert nothing.returncode == 2
    assert nothing.stderr.count("\n") == 1 and "JOB_COMPLETION_INDEX" in nothing.stderr


def test_a_dry_run_prints_the_plan_and_touches_nothing(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    done = run_cli("batch", str(manifest), "--dry-run", "--shard", "1/3")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sum(line.startswith("build  out/") for line in lines) == 9
    assert sum("(not this one)" in line for line in lines) > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # not even the output directory


def failing_manifest(tmp_path: Path) -> Path:
    """A qcow2 naming a backing file (refused as unsafe) first, then two good sources."""
    qemu_img("create", "-f", "raw", str(tmp_path / "base.raw"), "1M")
    qemu_img("create", "-f", "qcow2", "-b", str(tmp_path / "base.raw"), "-F", "raw", str(tmp_path / "bad.qcow2"))
    manifest = write_manifest(tmp_path)
    text = '[[source]]\npath = "bad.qcow2"\n  [[source.output]]\n  path = "out/bad.vmdk"\n\n'
    manifest.write_text(text + manifest.read_text())
    return manifest


def test_a_failing_entry_stops_the_batch_without_keep_going(tmp_path: Path) -> None:
    done = batch(failing_manifest(tmp_path), "--jobs", "1")
    assert done.returncode == 1
    outputs = outputs_of(done)
    assert outputs["out/bad.vmdk"]["status"] == "failed"
    assert outputs["out/bad.vmdk"]["error"]["code"] == "qcow2.backing-file"
    assert {o["status"] for p, o in outputs.items() if p != "out/bad.vmdk"} == {"cancelled"}
    assert "imagepack: error: out/bad.vmdk: " in done.stderr
    assert "set allow_backing = true in its [[source]]" in done.stderr  # the manifest's key, not the flag
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []


def test_a_failing_entry_with_keep_going_builds_everything_else_and_still_exits_1(tmp_path: Path) -> None:
    done = batch(failing_manifest(tmp_path), "--keep-going")
    assert done.returncode == 1
    outputs = outputs_of(done)
    assert outputs.pop("out/bad.vmdk")["status"] == "failed"
    assert {o["status"] for o in outputs.values()} == {"built"}
    assert not (tmp_path / "out" / "bad.vmdk").exists()
    assert leftovers(tmp_path / "out") == []


def processes_with(marker: str) -> list[int]:
    """Processes (but this one) whose environment holds `marker`: whatever the batch started, qemu-img too."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            continue  # it exited while we looked, or is not ours to read
    return found


def test_sigint_mid_batch_leaves_no_partial_output_and_no_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    busy = tmp_path / "busy.raw"
    write_data_disk(busy, 1024 * MiB, 200 * MiB)
    entry = (
        '  [[source.output]]\n  path = "out/busy-{}.qcow2"\n  compress = true\n  options = {{ cluster_size = "{}" }}\n'
    )
    outputs = "".join(entry.format(n, size) for n, size in enumerate(("64k", "128k", "256k")))
    manifest = tmp_path / "busy.toml"
    manifest.write_text(f'[[source]]\npath = "busy.raw"\n{outputs}')
    marker = f"IMAGEPACK_TEST_BATCH={uuid.uuid4().hex}"
    name, value = marker.split("=")
    monkeypatch.setenv(name, value)
    out = tmp_path / "out"

    def two_writing() -> bool:
        return out.is_dir() and len(leftovers(out)) >= 2

    code, stderr = interrupt_when(["batch", str(manifest), "--jobs", "2"], two_writing, signum=signal.SIGINT)
    assert code == EXIT_SIGINT, stderr
    assert stderr.strip().splitlines() == [
        "imagepack: interrupted; the outputs finished before it are kept, no partial one is left"
    ]
    assert leftovers(out) == []
    assert not any(out.glob("*.qcow2")), "an output appeared although every job was interrupted midway"
    assert processes_with(marker) == [], "a worker or a qemu-img outlived the batch"


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ('  formt = "vmdk"\n', "source 2 (beta.raw), output 1 (out/beta.vmdk), key formt: unknown key"),
        ('  options = { subformat = "flat" }\n', "output 1 (out/beta.vmdk), key options: -o subformat=flat"),
        ("  level = 5\n", "output 1 (out/beta.vmdk), key level: level 5: a level applies only to a compressed target"),
        (
            '  for = "azure"\n',
            "key for: …out/beta.vmdk: Azure takes .vhd, which the name does not end in; name it beta.vhd",
        ),
        ("  resize_up = true\n", "key resize_up: applies only to an output made for a preset"),
        ('  [source.output.oci]\n  os = "Ubuntu"\n', "key oci: image metadata applies only to a .oci output"),
        ("  compress = 1\n", "key compress: must be true or false, not an integer"),
    ],
    ids=[
        "unknown-key",
        "bad-option",
        "level-uncompressed",
        "preset-name",
        "resize-without-preset",
        "oci-on-vmdk",
        "wrong-type",
    ],
)
def test_a_manifest_mistake_names_the_entry_the_key_and_the_line(entry: str, problem: str, tmp_path: Path) -> None:
    for name in ("alpha", "beta"):
        write_sample_disk(tmp_path / f"{name}.raw", 2 * MiB)
    text = (
        '[[source]]\npath = "alpha.raw"\n  [[source.output]]\n  path = "out/alpha.qcow2"\n\n'
        '[[source]]\npath = "beta.raw"\n  [[source.output]]\n  path = "out/beta.vmdk"\n' + entry
    )
    manifest = tmp_path / "m.toml"
    manifest.write_text(text)
    line = text.splitlines().index(entry.splitlines()[0]) + 1
    with pytest.raises(InvalidValueError) as refused:
        load_manifest(manifest)
    assert f"m.toml:{line}: " in refused.value.message
    assert all(part in refused.value.message for part in problem.split("…"))  # … stands for a path


def test_two_outputs_with_one_path_or_an_output_that_is_a_source_are_refused_before_any_work(tmp_path: Path) -> None:
    write_sample_disk(tmp_path / "a.raw", 2 * MiB)
    manifest = tmp_path / "m.toml"
    manifest.write_text(
        '[[source]]\npath = "a.raw"\n  [[source.output]]\n  path = "out/a.qcow2"\n'
        '  [[source.output]]\n  path = "out/../out/a.qcow2"\n'
    )
    done = run_cli("batch", str(manifest))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"imagepack: error: {manifest}:6: source 1 (a.raw), output 2 (out/a.qcow2), key path: "
        "is also the path of source 1 (a.raw), output 1 (out/a.qcow2); give every output its own path"
    ]
    assert not (tmp_path / "out").exists()
    manifest.write_text('[[source]]\npath = "a.raw"\n  [[source.output]]\n  path = "a.raw"\n  format = "raw"\n')
    done = run_cli("batch", str(manifest), "--json")
    assert done.returncode == 2
    assert "is the source a.raw; an output must not overwrite an input" in json.loads(done.stdout)["error"]["message"]


def test_the_plan_splits_by_estimated_bytes_longest_first_and_the_same_everywhere(tmp_path: Path) -> None:
    weights = [(k * 7919) % 97 + 1 for k in range(40)]
    names = [f"out/{k:02}.qcow2" for k in range(40)]
    shards = assign_shards(weights, names, 4)
    loads = [sum(w for w, s in zip(weights, shards, strict=True) if s == i) for i in range(4)]
    assert max(loads) - min(loads) <= max(weights)
    assert shards == assign_shards(weights, names, 4)
    manifest = write_manifest(tmp_path)
    plan = make_plan(load_manifest(manifest), 3)
    assert plan == make_plan(load_manifest(manifest), 3)
    assert sorted(
        o.name for i in range(3) for u in plan.units if plan.shards[plan.units.index(u)] == i for o in u.outputs
    ) == sorted(o.name for _, o in load_manifest(manifest).outputs)


def test_free_space_is_reserved_across_parallel_jobs_not_checked_by_each_in_a_race(
    tmp_path: Path, mount_tmpfs: Any
) -> None:
    """Room for one output, not two: with two jobs the second waits for the first, then finds too little room
    and fails cleanly, instead of both starting and running out of room midway."""
    small = mount_tmpfs("12M")
    for name in ("one", "two"):
        (tmp_path / f"{name}.raw").write_bytes(os.urandom(8 * MiB))  # all data: room for one output, not two
    manifest = tmp_path / "m.toml"
    manifest.write_text(
        "".join(
            f'[[source]]\npath = "{name}.raw"\n  [[source.output]]\n  path = "{small.name}/{name}.raw"\n'
            for name in ("one", "two")
        )
    )
    done = batch(manifest, "--jobs", "2", "--keep-going")
    assert done.returncode == 1
    statuses = sorted(o["status"] for o in outputs_of(done).values())
    assert statuses == ["built", "failed"]
    (failed,) = [o for o in outputs_of(done).values() if o["status"] == "failed"]
    assert failed["error"]["code"] == "output"
    assert "needs about" in failed["error"]["message"] and "only 4.0 MiB is free" in failed["error"]["message"]
    assert leftovers(small) == []


def test_an_output_for_a_preset_is_built_as_convert_for_builds_it(tmp_path: Path) -> None:
    write_sample_disk(tmp_path / "small.raw", 5 * MiB)
    manifest = tmp_path / "m.toml"
    body = '  [[source.output]]\n  path = "out/{}.vhd"\n  for = "azure"\n'
    manifest.write_text(
        '[[source]]\npath = "small.raw"\n' + body.format("refused") + body.format("grown") + "  resize_up = true\n"
    )
    done = batch(manifest, "--keep-going")
    assert done.returncode == 1
    outputs = outputs_of(done)
    assert outputs["out/refused.vhd"]["error"]["code"] == "preset.too-small"  # Azure takes 20 MiB and more
    assert outputs["out/grown.vhd"]["status"] == "built"
    footer = read_vhd_footer(tmp_path / "out" / "grown.vhd")
    assert (footer.disk_type, footer.current_size) == (VHD_FIXED, 20 * MiB)
    assert (tmp_path / "out" / "grown.vhd").stat().st_size == 20 * MiB + 512
    assert not (tmp_path / "out" / "refused.vhd").exists()


def decoding_temporaries(names: list[str]) -> list[str]:
    """The temporaries a decoding writes in the output directory (an output's own are `.NAME.imagepack-...`)."""
    return [name for name in names if name.startswith(".imagepack-")]


def test_a_compressed_source_is_decoded_once_for_all_its_outputs_presets_among_them(tmp_path: Path) -> None:
    write_sample_disk(tmp_path / "web.raw", 6 * MiB)
    plain = tmp_path / "web.plain"
    plain.write_bytes((tmp_path / "web.raw").read_bytes())
    subprocess.run(["zstd", "-q", "--rm", str(tmp_path / "web.raw")], check=True)
    manifest = tmp_path / "m.toml"
    manifest.write_text(
        '[[source]]\npath = "web.raw.zst"\n'
        '  [[source.output]]\n  path = "out/web.qcow2"\n'
        '  [[source.output]]\n  path = "out/web-azure.vhd"\n  for = "azure"\n  resize_up = true\n'
        '  [[source.output]]\n  path = "out/web-aws.vmdk"\n  for = "aws"\n'
    )
    out = tmp_path / "out"
    out.mkdir()
    with created_in(out) as names:
        done = batch(manifest, "--jobs", "1")
    assert done.returncode == 0, done.stderr
    assert len(decoding_temporaries(names)) == 1, names
    assert qemu_compare(plain, "raw", out / "web.qcow2", "qcow2").returncode == 0
    assert read_vhd_footer(out / "web-azure.vhd").disk_type == VHD_FIXED  # the preset's own checks ran
    assert read_guest_disk(out / "web-aws.vmdk", "vmdk") == read_guest_disk(plain, "raw")
    assert leftovers(out) == []


def test_a_compressed_qcow2_with_one_oci_output_goes_into_the_archive_in_one_pass(
    tmp_path: Path, make_image: Any
) -> None:
    source = make_image("qcow2", name="web.qcow2")
    subprocess.run(["zstd", "-q", str(source)], check=True)
    manifest = tmp_path / "m.toml"
    manifest.write_text(
        '[[source]]\npath = "web.qcow2.zst"\n  [[source.output]]\n  path = "out/web.oci"\n'
        '  [source.output.oci]\n  os = "Oracle Linux"\n  os_version = "9"\n  firmware = "UEFI_64"\n'
    )
    out = tmp_path / "out"
    out.mkdir()
    with created_in(out) as names:
        done = batch(manifest)
    assert done.returncode == 0, done.stderr
    assert decoding_temporaries(names) == [], names  # no decoded copy: straight into the member's place
    single = tmp_path / "single.oci"
    packed = run_cli(
        "pack", str(source), str(single), "--os", "Oracle Linux", "--os-version", "9", "--firmware", "UEFI_64"
    )
    assert packed.returncode == 0, packed.stderr
    members = []
    for archive in (out / "web.oci", single):
        with tarfile.open(archive) as tar:
            member = tar.extractfile("output.QCOW2")
            assert member is not None
            members.append(member.read())
    assert members[0] == members[1]  # the disk member pack writes from the same compressed qcow2
    disk = tmp_path / "member.qcow2"
    disk.write_bytes(members[0])
    assert qemu_compare(source, "qcow2", disk, "qcow2").returncode == 0
