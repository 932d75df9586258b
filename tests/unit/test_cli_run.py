"""The body every command shares is written once (cli/run.py): each verb takes --json, --quiet and --verbose from
@reporting (or opens its work with `running`), and prints its result with `Run.show`, so logging, failure lines,
exit statuses, the progress bar and --json behave the same in every verb."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from imagepack.cli.run import Run, reporting, running
from imagepack.core.errors import EXIT_USAGE, InvalidValueError
from imagepack.core.problems import Problem, Severity

CLI = Path(__file__).parents[2] / "imagepack" / "cli"
# What only the runner calls: a verb that calls one of them writes the shared body again.
SHARED_BODY = {"setup_logging", "reported", "progress_bar"}


def calls_to(tree: ast.AST, names: set[str]) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name in names:
                found.append(f"{name} at line {node.lineno}")
    return found


def test_no_verb_module_writes_the_shared_body_again() -> None:
    repeated = {
        path.name: calls
        for path in sorted(CLI.glob("*.py"))
        if path.name not in ("output.py", "run.py")
        if (calls := calls_to(ast.parse(path.read_text()), SHARED_BODY))
    }
    assert repeated == {}


def test_the_check_sees_a_verb_that_opens_its_own_body() -> None:
    """The check itself can fail: a verb calling `reported` itself is caught."""
    lines = ["def verb():", "    setup_logging(quiet=False, verbose=False)", "    with reported(verbose=False):"]
    lines.append("        pass")
    tree = ast.parse("\n".join(lines))
    assert calls_to(tree, SHARED_BODY) == ["setup_logging at line 2", "reported at line 3"]


class Result:
    def __init__(self, value: int) -> None:
        self.value = value

    def to_json(self) -> dict[str, int]:
        return {"value": self.value}


WARNING = Problem(code="test.warned", message="something to know", severity=Severity.WARNING)


def test_json_prints_the_result_alone(capsys: pytest.CaptureFixture[str]) -> None:
    Run(json_output=True, quiet=False).show(Result(7), lambda: print("text"), warnings=[WARNING], even_quiet=True)
    out, err = capsys.readouterr()
    assert out == '{\n  "value": 7\n}\n'
    assert err == ""


def test_json_ready_values_are_printed_as_they_are(capsys: pytest.CaptureFixture[str]) -> None:
    Run(json_output=True, quiet=False).show([{"name": "a"}], lambda: print("text"))
    assert capsys.readouterr().out == '[\n  {\n    "name": "a"\n  }\n]\n'


def test_text_follows_the_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    Run(json_output=False, quiet=False).show(Result(7), lambda: print("text"), warnings=[WARNING])
    out, err = capsys.readouterr()
    assert out == "text\n"
    assert err == "imagepack: warning: something to know\n"


def test_quiet_keeps_the_warnings_and_drops_the_chatter(capsys: pytest.CaptureFixture[str]) -> None:
    Run(json_output=False, quiet=True).show(Result(7), lambda: print("text"), warnings=[WARNING])
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "imagepack: warning: something to know\n"


def test_a_verb_whose_text_is_its_answer_prints_it_when_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    Run(json_output=False, quiet=True).show(Result(7), lambda: print("text"), even_quiet=True)
    assert capsys.readouterr().out == "text\n"


@pytest.mark.parametrize("json_output", [False, True])
def test_a_failure_inside_is_one_line_and_its_exit_status(
    capsys: pytest.CaptureFixture[str], json_output: bool
) -> None:
    with pytest.raises(typer.Exit) as exited, running(json_output=json_output, quiet=False, verbose=False):
        raise InvalidValueError("--level 99: use 1 to 22")
    assert exited.value.exit_code == EXIT_USAGE
    out, err = capsys.readouterr()
    assert err == "imagepack: error: --level 99: use 1 to 22\n"
    assert ('"code": "invalid-value"' in out) is json_output


def test_the_progress_bar_is_none_when_quiet() -> None:
    with Run(json_output=False, quiet=True).progress("reading") as on_progress:
        assert on_progress is None


def test_reporting_gives_the_options_and_runs_the_command_inside(capsys: pytest.CaptureFixture[str]) -> None:
    """@reporting adds --json, --quiet and --verbose last, hands the command one Run, and reports its failure."""
    seen: list[Run] = []

    @reporting
    def verb(path: str = typer.Argument(...), *, run: Run) -> None:
        seen.append(run)
        raise InvalidValueError(f"{path}: refused")

    app = typer.Typer()
    app.command()(verb)
    app.command("other")(lambda: None)
    result = CliRunner().invoke(app, ["verb", "disk.raw", "--json", "--quiet"])
    assert result.exit_code == EXIT_USAGE
    assert seen == [Run(json_output=True, quiet=True)]
    assert '"message": "disk.raw: refused"' in capsys.readouterr().out + result.stdout
    help_text = CliRunner().invoke(app, ["verb", "--help"]).stdout
    assert help_text.index("--json") < help_text.index("--quiet") < help_text.index("--verbose")
