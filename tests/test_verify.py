"""`imagepack verify` on files that are not what OCI imports: each refusal names what the file really is."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from imagepack.errors import EXIT_PROBLEMS
from tests.conftest import run_cli
from tests.test_detect import write_iso

# A compressed disk is read (tests/test_compressed.py); an lz4 one is refused by every verb (test_other_formats.py).
NOT_ARCHIVES: dict[str, Callable[[Path, Path], None]] = {"iso": write_iso}


@pytest.mark.parametrize("kind", NOT_ARCHIVES)
def test_verify_of_an_iso_file_names_it_and_does_not_call_it_a_bad_tar(
    kind: str, sample_raw: Path, tmp_path: Path
) -> None:
    """Only tar and gzip are how archives come; any other container is refused as the file it is."""
    container = tmp_path / "download.img"
    NOT_ARCHIVES[kind](sample_raw, container)
    done = run_cli("verify", str(container))
    assert done.returncode == EXIT_PROBLEMS, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stdout.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stdout
    said = errors[0].replace(str(container), "")
    assert re.search(rf"\b{kind}\b", said, re.IGNORECASE) and "not a disk image" in said
    assert "tar" not in said and done.stderr == ""
