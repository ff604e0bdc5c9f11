"""How the config was named on the command line, against how `llamafactory-cli train` reads its arguments.

LLaMA-Factory 0.9.5 reads a config file only when it is the first argument (hparams/parser.py `read_args`:
`sys.argv[1].endswith(".yaml")`); anything else is parsed as `--key value` flags, where `--config_file` is an
unknown flag and the missing model stops it first with "Please provide `model_name_or_path`."
(hparams/model_args.py). The guides that write `--config_file` show a form only dpo-launch accepts.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from launcher.check.diagnostics import OVERRIDES_FILE, WARNING, Diagnostic


def config_file_flag_warning(config_path: str | Path, overrides: list[str]) -> Diagnostic:
    """The warning for `--config_file PATH`: what llamafactory-cli does with it, and the form that works."""
    works = shlex.join(["llamafactory-cli", "train", str(config_path), *overrides])
    fails = shlex.join(["llamafactory-cli", "train", "--config_file", str(config_path)])
    return Diagnostic(
        WARNING, "config-file-flag",
        f"--config_file works with dpo-launch, but `{fails}` fails in LLaMA-Factory 0.9.5 with "
        "\"Please provide `model_name_or_path`.\": it reads a config only as the first argument",
        file=OVERRIDES_FILE, hint=f"run it as `{works}`")
