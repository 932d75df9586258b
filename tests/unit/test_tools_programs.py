"""The one program finder: a variable names the program outright, else a sibling of another program, else PATH;
a check can pass over a candidate (a bsdtar named tar); one phrase says what is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagepack.core.errors import ImagepackError
from imagepack.tools.programs import Program, find_program, version_of

FAKE = Program(("fake-tool", "other-tool"), variable="IMAGEPACK_TEST_FAKE_TOOL")


def refuse(where: str) -> ImagepackError:
    return ImagepackError(f"refused: {where}", code="test.missing")


def script(folder: Path, name: str, says: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\necho '{says}'\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def bins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    on_path, beside = tmp_path / "path", tmp_path / "beside"
    script(on_path, "fake-tool", "path fake-tool")
    script(on_path, "other-tool", "path other-tool")
    script(beside, "fake-tool", "beside fake-tool")
    monkeypatch.setenv("PATH", str(on_path))
    monkeypatch.delenv("IMAGEPACK_TEST_FAKE_TOOL", raising=False)
    return on_path, beside


def test_the_first_name_on_path_is_found(bins: tuple[Path, Path]) -> None:
    assert find_program(FAKE, refuse) == str(bins[0] / "fake-tool")


def test_a_sibling_of_another_program_wins_over_path(bins: tuple[Path, Path]) -> None:
    assert find_program(FAKE, refuse, beside=bins[1]) == str(bins[1] / "fake-tool")


def test_a_check_passes_over_a_candidate_to_the_next_name(bins: tuple[Path, Path]) -> None:
    found = find_program(FAKE, refuse, accept=lambda path: "other" in version_of(path).stdout)
    assert found == str(bins[0] / "other-tool")


def test_the_variable_names_the_program_and_no_other_place_is_tried(
    bins: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = script(tmp_path / "mine", "anything", "mine")
    monkeypatch.setenv("IMAGEPACK_TEST_FAKE_TOOL", str(chosen))
    assert find_program(FAKE, refuse, beside=bins[1]) == str(chosen)
    monkeypatch.setenv("IMAGEPACK_TEST_FAKE_TOOL", str(tmp_path / "absent"))
    with pytest.raises(ImagepackError) as refused:
        find_program(FAKE, refuse, beside=bins[1])
    assert refused.value.message == f"refused: IMAGEPACK_TEST_FAKE_TOOL={tmp_path / 'absent'} is not an executable"
    assert refused.value.code == "test.missing"


def test_when_no_candidate_is_taken_the_phrase_names_the_program(bins: tuple[Path, Path]) -> None:
    with pytest.raises(ImagepackError, match=r"^refused: fake-tool is not installed$"):
        find_program(FAKE, refuse, beside=bins[1], accept=lambda path: False)
    missing = Program(("fake-tool",), missing="is missing")
    with pytest.raises(ImagepackError, match=r"^refused: fake-tool is missing$"):
        find_program(missing, refuse, accept=lambda path: False)
