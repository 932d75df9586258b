"""A command line loads only the module of the verb it names (cli/__init__.py's VERBS): start-up is paid by every
command, and the other verbs' imports were most of it. The table must name every command a verb module
registers, or that command would be missing from a command line that names another verb's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imagepack.cli import VERBS

ROOT = Path(__file__).parents[2]
CLI = ROOT / "imagepack" / "cli"


def loaded_after(args: list[str], env: dict[str, str] | None = None) -> dict[str, list[str]]:
    """In a fresh interpreter: the verb modules imported and the commands registered for `args`."""
    script = (
        "import json, sys\n"
        "from imagepack import cli\n"
        f"cli.register_verbs({args!r})\n"
        "commands = [c.name for c in cli.app.registered_commands] + [g.name for g in cli.app.registered_groups]\n"
        "modules = sorted(m.rsplit('.', 1)[1] for m in sys.modules if m.startswith('imagepack.cli.'))\n"
        "print(json.dumps({'commands': commands, 'modules': modules}))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT, env=env or os.environ
    )
    answer: dict[str, list[str]] = json.loads(run.stdout)
    return answer


def test_the_table_names_every_verb_module_and_every_command_they_register() -> None:
    modules = {module for module, _ in VERBS}
    registering = {path.stem for path in CLI.glob("*.py") if "def register(" in path.read_text()}
    assert modules == registering
    everything = loaded_after([])
    named = {command for _, commands in VERBS for command in commands} | {"batch merge-reports"}
    assert set(everything["commands"]) == named


@pytest.mark.parametrize(
    ("args", "module"),
    [(["convert", "a.qcow2", "b.vmdk"], "convert"), (["decompress", "x.zst"], "compress"), (["seed-iso"], "seed_iso")],
)
def test_a_command_line_loads_only_the_verb_it_names(args: list[str], module: str) -> None:
    loaded = loaded_after(args)
    others = {m for m, _ in VERBS} - {module}
    assert module in loaded["modules"]
    assert not others & set(loaded["modules"])


@pytest.mark.parametrize("args", [[], ["--help"], ["convrt"], ["--version"]])
def test_help_a_typo_and_no_verb_load_every_verb(args: list[str]) -> None:
    assert {m for m, _ in VERBS} <= set(loaded_after(args)["modules"])


def test_completion_loads_every_verb_whatever_is_typed() -> None:
    env = {**os.environ, "_IMAGEPACK_COMPLETE": "complete_bash", "COMP_WORDS": "imagepack conv", "COMP_CWORD": "1"}
    assert {m for m, _ in VERBS} <= set(loaded_after(["convert"], env)["modules"])
    completed = subprocess.run(
        [str(Path(sys.executable).with_name("imagepack"))], capture_output=True, text=True, env=env, check=False
    )
    assert "convert" in completed.stdout


def test_the_app_called_from_a_script_has_every_verb() -> None:
    """A script may run the Typer app itself rather than `main`: it registers every verb then."""
    script = "from imagepack.cli import app\napp(['--help'], prog_name='imagepack')\n"
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    listed = {line.split()[0] for line in run.stdout.splitlines() if line.startswith("  ") and line.split()}
    assert {command for _, commands in VERBS for command in commands if command != "batch-merge"} <= listed
