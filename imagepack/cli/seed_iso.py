"""`imagepack seed-iso OUT.iso --user-data FILE`: a cloud-init NoCloud seed (volume `cidata`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from imagepack.cli.output import human_size
from imagepack.cli.run import Run, reporting
from imagepack.cli.shared_options import FORCE

if TYPE_CHECKING:
    from imagepack.verbs.seed import SeedIso

EXAMPLES = """\b
Examples:
  imagepack seed-iso seed.iso --user-data cloud.yaml --hostname web1
  imagepack seed-iso seed.iso --user-data user-data --meta-data meta-data --network-config net.yaml
  imagepack seed-iso win-seed.iso --user-data cloud.yaml --windows-rtc-fix"""


def register(app: typer.Typer) -> None:
    app.command("seed-iso", epilog=EXAMPLES)(seed_iso_command)


@reporting
def seed_iso_command(
    output: Path = typer.Argument(..., metavar="OUT.iso", help="The seed ISO to write."),
    user_data: Path = typer.Option(
        ..., "--user-data", metavar="FILE", help="user-data: #cloud-config, a #! script, a MIME multi-part, ..."
    ),
    meta_data: Path | None = typer.Option(
        None, "--meta-data", metavar="FILE", help="meta-data (default: generated instance-id and local-hostname)."
    ),
    network_config: Path | None = typer.Option(
        None, "--network-config", metavar="FILE", help="network-config, version 1 or 2."
    ),
    vendor_data: Path | None = typer.Option(None, "--vendor-data", metavar="FILE", help="vendor-data."),
    instance_id: str | None = typer.Option(
        None, "--instance-id", metavar="ID", help="instance-id of the generated meta-data (default iid-<digest>)."
    ),
    hostname: str | None = typer.Option(
        None, "--hostname", metavar="NAME", help="local-hostname of the generated meta-data (default imagepack)."
    ),
    windows_rtc_fix: bool = typer.Option(
        False,
        "--windows-rtc-fix",
        help="Add a .reg file and a PowerShell script that set RealTimeIsUniversal (Windows images), and a README.",
    ),
    force: bool = FORCE,
    *,
    run: Run,
) -> None:
    """Write a cloud-init NoCloud seed ISO (label cidata, Rock Ridge and Joliet names), its files checked first."""
    from imagepack.core.errors import InvalidValueError
    from imagepack.verbs.seed import make_seed_iso

    if meta_data is not None and (instance_id is not None or hostname is not None):
        given = " and ".join(
            flag for flag, value in (("--instance-id", instance_id), ("--hostname", hostname)) if value is not None
        )
        raise InvalidValueError(
            f"{given} with --meta-data: put instance-id and local-hostname in the meta-data file, "
            "or leave out --meta-data to have it generated"
        )
    with run.progress(f"writing {output.name}") as on_progress:
        done = make_seed_iso(
            output,
            user_data=user_data,
            meta_data=meta_data,
            network_config=network_config,
            vendor_data=vendor_data,
            instance_id=instance_id,
            hostname=hostname,
            windows_rtc_fix=windows_rtc_fix,
            force=force,
            on_progress=on_progress,
        )
    run.show(done, lambda: _print(done), warnings=done.warnings)


def _print(done: SeedIso) -> None:
    meta = "generated" if done.meta_data_generated else "as given"
    print(f"wrote {done.target} (cidata, {human_size(done.size)}) in {done.seconds:.2f} s")
    print(f"  user-data: {done.user_data_type}")
    print(f"  meta-data: {meta}, instance-id {done.instance_id or '-'}, local-hostname {done.hostname or '-'}")
    for name, size in done.files:
        print(f"  {name}: {size} bytes")
