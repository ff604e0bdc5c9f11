"""The README's exit-code table lists every code a command can return (launcher/errors.py)."""

from __future__ import annotations

import re

from launcher import errors

from support.cli import REPO

RESERVED = {errors.EXIT_GATE_FAILED}  # defined for evaluation gates, returned by no command yet


def test_the_readme_exit_code_table_lists_every_exit_code_a_command_returns():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("Exit codes (`launcher/errors.py`)"):]
    table = table[:table.index("\n\n", table.index("| code |"))]
    listed = {int(code) for row in table.splitlines()[3:] for code in re.findall(r"\b\d+\b", row.split("|")[1])}
    codes = {value for name, value in vars(errors).items() if name.startswith("EXIT_")} - RESERVED
    assert codes <= listed
