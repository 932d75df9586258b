"""The demo the README starts with runs the tool's main job end to end, and succeeds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import run_cli


def test_demo_packs_the_sample_into_an_archive_that_verifies_and_exits_0(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "imagepack.cli.demo", str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{tmp_path / 'sample.oci'}: ready for import (oci)" in done.stdout
    shown = json.loads(run_cli("meta", "show", str(tmp_path / "sample.oci")).stdout)
    assert (shown["operatingSystem"], shown["operatingSystemVersion"]) == ("Oracle Linux", "9")
    assert shown["externalLaunchOptions"]["firmware"] == "UEFI_64"
