"""The pre-commit hook (.pre-commit-hooks.yaml) as a repository of configs and data uses it: `pre-commit try-repo`
against a snapshot of this repository (committed into a temporary git repository, uncommitted changes included),
which installs dpo-launch with pip into pre-commit's own environment and runs `dpo-launch validate` on the
changed configs; then a .pre-commit-config.yaml with `args: [--no-data]`.

pre-commit comes from the `test` extra (pyproject.toml); the hook's environment is built from PyPI (pyyaml,
jsonschema, rich, orjson), as on any machine that uses the hook.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.cli import REPO

pytestmark = pytest.mark.subprocess

HOOK = "dpo-launch-validate"
CONFIG = """model_name_or_path: Qwen/Qwen3-0.6B
stage: dpo
do_train: true
finetuning_type: lora
dataset: prefs
dataset_dir: data
template: qwen3_nothink
output_dir: saves/run
report_to: tensorboard
"""


def pre_commit() -> list[str]:
    """How to run pre-commit: the test venv's module (the `test` extra), else one on PATH."""
    if importlib.util.find_spec("pre_commit") is not None:
        return [sys.executable, "-m", "pre_commit"]
    found = shutil.which("pre-commit")
    if found is None:
        pytest.fail("pre-commit is not installed: `pip install -e '.[test]'` (or put pre-commit on PATH)")
    return [found]


def git_env(home: Path) -> dict[str, str]:
    env = dict(os.environ, PRE_COMMIT_HOME=str(home), GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com", PRE_COMMIT_COLOR="never")
    env.pop("PYTHONPATH", None)  # the hook must run the dpo-launch pip installed, not this checkout
    return env


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False)


def commit_all(root: Path, env: dict[str, str]) -> str:
    """Commit everything (pre-commit stashes unstaged changes and refuses an unstaged config); the new HEAD."""
    if not (root / ".git").exists():
        run(["git", "init", "-q"], root, env)
    for argv in (["git", "add", "-A"], ["git", "commit", "-q", "--allow-empty", "-m", "snapshot"]):
        done = run(argv, root, env)
        assert done.returncode == 0, done.stderr
    return run(["git", "rev-parse", "HEAD"], root, env).stdout.strip()


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """A snapshot of this repository as a git repository, and a repository of configs and data that uses it."""
    root = tmp_path_factory.mktemp("precommit")
    env = git_env(root / "pre-commit-home")
    listed = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], REPO, env).stdout
    snapshot = root / "dpo-launch"
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():
            (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, snapshot / name)
    rev = commit_all(snapshot, env)
    user = root / "configs-repo"
    (user / "configs").mkdir(parents=True)
    (user / "data").mkdir()
    (user / "data/dataset_info.json").write_text(json.dumps({"prefs": {
        "file_name": "prefs.jsonl", "formatting": "sharegpt", "ranking": True,
        "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}}}))
    shutil.copy2(REPO / "data/demo_dpo.jsonl", user / "data/prefs.jsonl")
    (user / "configs/dpo.yaml").write_text(CONFIG)
    (user / "configs/typo.yaml").write_text(CONFIG + "pref_loss: sigmod\n")
    commit_all(user, env)
    return {"snapshot": snapshot, "rev": rev, "user": user, "env": env}


def test_try_repo_runs_validate_on_the_changed_configs_and_fails_on_the_one_with_an_error(setup):
    done = run(pre_commit() + ["try-repo", str(setup["snapshot"]), HOOK, "--files", "configs/dpo.yaml",
                               "configs/typo.yaml"], setup["user"], setup["env"])
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    lines = output.splitlines()
    assert ("configs/typo.yaml:10:12: error[enum]: pref_loss: expected one of sigmoid, hinge, ipo, kto_pair, orpo, "
            "simpo but got 'sigmod' (did you mean 'sigmoid'?)") in lines
    assert "✓ 0 errors, 0 warnings, 2 notes in configs/dpo.yaml" in lines
    assert "✗ 1 error, 0 warnings, 2 notes in configs/typo.yaml" in lines


def test_the_hook_checks_the_records_unless_its_args_say_no_data(setup):
    user, env = setup["user"], setup["env"]
    (user / "configs/typo.yaml").unlink()
    (user / "data/prefs.jsonl").write_text(  # the guide's shape: LLaMA-Factory would drop every record
        "".join(json.dumps({"conversations": [{"from": "user", "value": f"Q{i}"}], "chosen": "A", "rejected": "B"})
                + "\n" for i in range(3)))
    outcomes = {}
    for args in ([], ["--no-data"]):
        (user / ".pre-commit-config.yaml").write_text(json.dumps({"repos": [{
            "repo": str(setup["snapshot"]), "rev": setup["rev"],
            "hooks": [{"id": HOOK, "files": "^configs/", "args": args}]}]}))
        commit_all(user, env)
        done = run(pre_commit() + ["run", "--all-files"], user, env)
        outcomes[" ".join(args) or "default"] = (done.returncode, "error[guide-shape]" in done.stdout)
    assert outcomes == {"default": (1, True), "--no-data": (0, False)}
