"""An error holds its facts and builds its line from them; nobody edits or parses a message after the raise, and
no library message names a command-line option: the remedy says what to change and each front end words it."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import imagepack
from imagepack.cli.batch import BATCH_REMEDY_TEXT
from imagepack.cli.output import REMEDY_TEXT
from imagepack.core.errors import ImagepackError, InputError, QemuImgError
from imagepack.core.problems import Problem, Remedy
from imagepack.files.writes import NoSpaceError
from imagepack.writers.sample import write_sample_disk
from tests.conftest import run_cli

LIBRARY = Path(imagepack.__file__).parent
OPTION = re.compile(r"--[a-z]")
ONE_OPTION = re.compile(r"--[a-z][a-z0-9-]*(=.*)?")  # one token of an argv built for another program
MiB = 1024**2


def library_modules() -> list[Path]:
    return sorted(p for p in LIBRARY.rglob("*.py") if p.relative_to(LIBRARY).parts[0] != "cli")


def _docstrings(tree: ast.Module) -> set[int]:
    owners = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, owners)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


def options_named(path: Path) -> list[str]:
    """The string literals of `path` (docstrings aside) that name a command-line option in their text."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str) or id(node) in docs:
            continue
        if OPTION.search(node.value) and not ONE_OPTION.fullmatch(node.value):
            found.append(f"{path}:{node.lineno}: {node.value!r}")
    return found


def test_no_library_string_names_a_command_line_option() -> None:
    named = [line for path in library_modules() for line in options_named(path)]
    assert named == [], "\n".join(named)


def test_the_scan_finds_an_option_in_a_message_and_passes_an_argv_token(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        '"""Pass --from to say it."""\n'
        'argv = ["qemu-img", "--output=json", "--force-share"]\n'
        'message = f"{1} is above the limit; pass --max-size to accept it"\n'
    )
    assert [line.split(": ", 1)[1] for line in options_named(module)] == [
        "' is above the limit; pass --max-size to accept it'"
    ]


def _edits_of_a_message(path: Path) -> list[str]:
    """Assignments to an error's `.message`, and calls made on one (`e.message.replace`, `re.search(.., e.message)`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    caught = {node.name for node in ast.walk(tree) if isinstance(node, ast.ExceptHandler) and node.name}
    found = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = [
                t for target in node.targets for t in (target.elts if isinstance(target, ast.Tuple) else [target])
            ]
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Attribute) and target.attr == "message":
                owner = target.value
                if (isinstance(owner, ast.Name) and owner.id in (caught | {"self"})) or not isinstance(owner, ast.Name):
                    found.append(f"{path.name}:{node.lineno}: assigns .message")
        if isinstance(node, ast.Call):
            func = node.func
            on_message = isinstance(func, ast.Attribute) and isinstance(func.value, ast.Attribute)
            if on_message and func.value.attr == "message":  # type: ignore[attr-defined]
                found.append(f"{path.name}:{node.lineno}: edits a .message")
            regex = isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "re"
            if regex and any(isinstance(a, ast.Attribute) and a.attr == "message" for a in node.args):
                found.append(f"{path.name}:{node.lineno}: reads a .message with a regular expression")
    return found


def test_no_code_edits_or_parses_a_message_after_the_raise() -> None:
    modules = [p for p in LIBRARY.rglob("*.py") if p != LIBRARY / "core" / "errors.py"]
    edits = [line for path in modules for line in _edits_of_a_message(path)]
    assert edits == [], "\n".join(edits)


def test_the_edit_scan_finds_the_edits_it_forbids(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "try:\n    pass\nexcept ValueError as e:\n"
        "    e.message = e.message.replace('a', 'b')\n"
        "    size = re.search('(\\\\d+)', e.message)\n"
        "report.outcome, report.message = 1, 2\n"  # a result's field, not an error's
    )
    assert [line.split(": ", 1)[1] for line in _edits_of_a_message(module)] == [
        "assigns .message",
        "edits a .message",
        "reads a .message with a regular expression",
    ]


def _every_error_class() -> set[type[ImagepackError]]:
    for info in pkgutil.walk_packages(imagepack.__path__, "imagepack."):
        if not info.name.endswith("__main__"):  # that one runs the command line
            importlib.import_module(info.name)
    found: set[type[ImagepackError]] = set()
    todo: list[type[ImagepackError]] = [ImagepackError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_no_error_class_lets_its_message_be_set() -> None:
    settable = []
    for cls in _every_error_class():
        message = inspect.getattr_static(cls, "message")
        if not isinstance(message, property) or message.fset is not None:
            settable.append(cls.__qualname__)
    assert settable == []
    with pytest.raises(AttributeError):
        InputError("x").message = "y"  # type: ignore[misc]


def test_an_error_builds_its_line_from_the_subject_and_the_names_to_show() -> None:
    hidden = "/tmp/.imagepack-x/out.qcow2"
    e = QemuImgError(
        f"qemu-img convert failed: Could not open '{hidden}': denied", said=f"Could not open '{hidden}': denied"
    )
    e.shown_as(hidden, "out.qcow2").shown_as("/tmp/.imagepack-x", "out.qcow2").about("disk.oci")
    assert e.message == "disk.oci: qemu-img convert failed: Could not open 'out.qcow2': denied"
    assert str(e) == e.message and e.said == f"Could not open '{hidden}': denied"  # the facts stay as they were
    refused = InputError.from_problems(
        [Problem("a.one", "first"), Problem("a.two", "second", Remedy.RESIZE_UP, value="9")], subject="d.raw"
    )
    assert (refused.message, refused.code, refused.remedy, refused.value) == (
        "d.raw: first; second",
        "a.one",
        Remedy.RESIZE_UP,
        "9",
    )
    assert refused.said_of("d.raw") == "first; second" and refused.said_of("other.raw") == refused.message


def test_a_full_file_system_is_said_from_what_was_measured(tmp_path: Path) -> None:
    full = NoSpaceError(tmp_path, needed=3 * MiB, quota=True)
    assert full.free is not None and f"no space left on {tmp_path} (disk quota exceeded): free " in full.message
    assert full.message.endswith(", needed 3.0 MiB; nothing was written; free some space or write elsewhere")


def test_every_remedy_has_words_in_each_front_end() -> None:
    assert set(REMEDY_TEXT) == set(Remedy) == set(BATCH_REMEDY_TEXT)


def test_a_compressed_output_of_a_format_that_cannot_be_names_the_setting_in_each_front_ends_terms(
    tmp_path: Path,
) -> None:
    write_sample_disk(tmp_path / "a.raw", 2 * MiB)
    single = run_cli("convert", str(tmp_path / "a.raw"), str(tmp_path / "a.vdi"), "--compress")
    assert single.returncode == 2
    assert single.stderr.strip().endswith("not vdi; leave --compress out, or write qcow2 or vmdk"), single.stderr
    manifest = tmp_path / "m.toml"
    manifest.write_text('[[source]]\npath = "a.raw"\n  [[source.output]]\n  path = "out/a.vdi"\n  compress = true\n')
    batch = run_cli("batch", str(manifest))
    assert batch.returncode != 0 and "leave compress out of the output" in batch.stderr, batch.stderr
    assert "--" not in batch.stderr
