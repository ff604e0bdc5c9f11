"""`dpo-launch validate`, `plan` and `schema` must stay fast: they never import the training stack, not even
transitively; the evaluation commands (generate, eval, pairs, loop) do their heavy work in worker processes."""

from __future__ import annotations

import pytest

from support.cli import REPO, probe, run_cli
from support.training import make_workspace, training_env
from support.workspaces import write_workspace


@pytest.mark.parametrize("args", [
    ["validate", "config.yaml"],
    ["plan", "config.yaml"],
    ["plan", "config.yaml", "--format", "json", "--nnodes", "2", "--nproc-per-node", "2"],
    ["train", "config.yaml", "--dry-run"],
    ["schema", "--dataset", "prefs", "--config", "config.yaml"],
], ids=["validate", "plan", "plan-json-multinode", "train-dry-run", "schema"])
@pytest.mark.subprocess
def test_fast_commands_never_import_the_training_stack(tmp_path, args):
    workspace = write_workspace(tmp_path / "work")
    result = probe(args, workspace, tmp_path / "report.json")
    assert result == {"exit": 0, "heavy": []}


@pytest.mark.subprocess
def test_the_probe_sees_what_the_cli_imports(tmp_path):
    # Guards the guard: argparse is always imported by the CLI, so the same probe must report it.
    assert probe(["--version"], REPO, tmp_path / "report.json", heavy=("argparse",)) == {
        "exit": 0, "heavy": ["argparse"]}


@pytest.mark.slow
def test_the_evaluation_commands_leave_the_training_stack_to_their_workers(tmp_path, tiny_model_dir,
                                                                          tiny_reward_model):
    # generate, pairs, eval and loop do real work here (ChatModel generation, reward-model scores, LLaMA-Factory's
    # evaluation, a training round), all of it in worker processes; the CLI process stays free of the stack.
    ws = make_workspace(tmp_path / "ws", tiny_model_dir, max_steps=2, eval_dataset="demo_dpo")
    trained = run_cli("train", "config.yaml", "--no-monitor", cwd=ws.root, env=training_env())
    assert trained.returncode == 0, trained.stderr[-2000:]
    generate = ["generate", "out", "--prompts", "data/demo_dpo.jsonl", "--limit", "2", "--max-new-tokens", "4",
                "-n", "2", "--out", "gen.jsonl"]
    assert probe(generate, ws.root, tmp_path / "generate.json") == {"exit": 0, "heavy": []}
    pairs = ["pairs", "gen.jsonl", "--judge", f"rm:{tiny_reward_model}", "--out", "pairs.jsonl"]
    assert probe(pairs, ws.root, tmp_path / "pairs.json") == {"exit": 0, "heavy": []}
    assert probe(["eval", "out"], ws.root, tmp_path / "eval.json") == {"exit": 0, "heavy": []}
    (ws.root / "loop.yaml").write_text("config: config.yaml\noutput_dir: loop\nrounds: [{set: {max_steps: 1}}]\n")
    assert probe(["loop", "loop.yaml"], ws.root, tmp_path / "loop.json") == {"exit": 0, "heavy": []}
