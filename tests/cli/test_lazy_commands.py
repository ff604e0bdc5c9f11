"""`dpo-launch` imports only the module of the command it runs: `--help` lists every command with the one-line
help that command's own module gives (launcher.cli.COMMANDS holds copies, checked here), and a command runs with
no other command's module imported."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from launcher.cli import COMMANDS, build_parser, chosen_command

from support.cli import REPO, cli_env

PROBE = ("import json, sys; from launcher.cli import main; main(sys.argv[1:]); "
         "print(json.dumps(sorted(m for m in sys.modules if m.startswith('launcher.commands.'))), file=sys.stderr)")


def test_the_help_lines_are_the_command_modules_own():
    assert build_parser(frozenset()).format_help() == build_parser(None).format_help()


def test_the_command_is_the_first_word_that_is_not_an_option():
    assert chosen_command(["--version"]) == frozenset()
    assert chosen_command(["validate", "plan.yaml"]) == {"validate"}
    assert chosen_command(["-h", "plan", "x.yaml"]) == {"plan"}
    assert chosen_command(["valdate"]) == frozenset()


def imported_commands(*argv: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=REPO, env=cli_env(), capture_output=True,
                            text=True, timeout=120, check=False)
    return json.loads(result.stderr.strip().splitlines()[-1])


@pytest.mark.subprocess
def test_help_imports_no_command_module_and_lists_every_command():
    result = subprocess.run([sys.executable, "-m", "launcher", "--help"], cwd=REPO, env=cli_env(),
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0
    assert all(name in result.stdout for name, _, _ in COMMANDS)
    assert imported_commands("--help") == ["launcher.commands.output"]


@pytest.mark.subprocess
def test_validate_imports_its_own_module_only():
    assert imported_commands("validate", "--help") == ["launcher.commands.arguments", "launcher.commands.output",
                                                       "launcher.commands.validate"]
