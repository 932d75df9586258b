from pathlib import Path

from tests.conftest import run_cli


def test_info_reports_the_sample_disks_gpt_and_esp(sample_raw: Path) -> None:
    done = run_cli("info", "--json", str(sample_raw))
    assert done.returncode == 0, done.stderr
    assert '"partition_table": "gpt"' in done.stdout
    assert '"firmware_guess": "UEFI_64"' in done.stdout
