"""`dpo-launch eval RUN_DIR --prompts --judge rm:...`: the win rate against the base model, recomputed here from
LLaMA-Factory's own reward-model scores of the generated responses; the gate on its Wilson lower bound; a model
against itself ties everywhere."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.errors import EXIT_GATE_FAILED
from launcher.evaluate.stats import wilson_interval

from support.cli import run_cli
from support.training import make_workspace, training_env

SCORE = """
import json, sys
from llamafactory.chat import ChatModel
model = ChatModel({"model_name_or_path": sys.argv[1], "template": "default", "stage": "rm"})
engine = model.engine
out = {}
for path in sys.argv[2:]:
    for record in map(json.loads, open(path)):
        messages = record["messages"] + [{"role": "assistant", "content": record["responses"][0]}]
        p, r = engine.template.encode_oneturn(engine.tokenizer, messages, record["system"])
        out[f"{path}:{record['id']}"] = float(model.get_scores([engine.tokenizer.decode(p + r)])[0])
print(json.dumps(out))
"""
WIN_RATE = ("--prompts", "data/demo_dpo.jsonl", "--limit", "8", "--max-new-tokens", "8", "--judge-template",
            "default", "--format", "json")


@pytest.fixture(scope="module")
def run_and_rm(tmp_path_factory, tiny_model_dir, tiny_reward_model):
    ws = make_workspace(tmp_path_factory.mktemp("winrate") / "ws", tiny_model_dir, max_steps=10,
                        learning_rate=3.0e-3)
    trained = run_cli("train", "config.yaml", "--no-monitor", cwd=ws.root, env=training_env())
    assert trained.returncode == 0, trained.stderr[-3000:]
    return ws, tiny_reward_model


@pytest.mark.slow
def test_the_win_rate_is_what_the_reward_models_scores_say_and_gates_on_its_lower_bound(run_and_rm):
    ws, rm = run_and_rm
    result = run_cli("eval", "out", *WIN_RATE, "--judge", f"rm:{rm}", cwd=ws.root, env=training_env())
    assert result.returncode == 0, result.stderr[-3000:]
    part = json.loads(result.stdout)["win_rate"]
    generated = sorted((ws.out / "dpo-launch" / "eval" / "winrate" / "generations").glob("*.jsonl"))
    records = {str(path): [json.loads(line) for line in path.read_text().splitlines()] for path in generated}
    files = {side: next(p for p, rs in records.items() if _model_of(p) == part[side].split(" + ")[0])
             for side in ("policy", "baseline")}
    direct = subprocess.run([sys.executable, "-c", SCORE, str(rm), *files.values()], capture_output=True, text=True,
                            env=training_env(), timeout=300)
    scores = json.loads(direct.stdout.splitlines()[-1])
    ids = [r["id"] for r in records[files["policy"]]]
    ours = [scores[f"{files['policy']}:{i}"] for i in ids]
    theirs = [scores[f"{files['baseline']}:{i}"] for i in ids]
    wins = sum(a > b for a, b in zip(ours, theirs, strict=True))
    losses = sum(a < b for a, b in zip(ours, theirs, strict=True))
    counts = part["counts"]
    assert (counts["wins"], counts["losses"], counts["ties"], counts["invalid"], counts["n"]) == (
        wins, losses, 8 - wins - losses, 0, 8)
    assert counts["win_rate"] == pytest.approx((wins + (8 - wins - losses) / 2) / 8)
    low, high = wilson_interval(wins + (8 - wins - losses) / 2, 8)
    assert (counts["wilson95_low"], counts["wilson95_high"]) == pytest.approx((low, high))
    assert part["mean_length"]["policy"] == pytest.approx(
        sum(r["tokens"][0] for r in records[files["policy"]]) / 8)
    assert 0 < len(part["examples"]) <= 5
    gate = run_cli("eval", "out", *WIN_RATE, "--judge", f"rm:{rm}", "--gate", f"win_rate>={low + 0.001:.4f}",
                   cwd=ws.root, env=training_env())
    assert gate.returncode == EXIT_GATE_FAILED, gate.stderr[-3000:]
    assert gate.stderr.splitlines()[-1] == (f"dpo-launch eval: gate failed: win_rate (Wilson 95% lower bound) "
                                            f"{low:.3f} >= {low + 0.001:.4f}: FAIL")
    passed = run_cli("eval", "out", *WIN_RATE, "--judge", f"rm:{rm}", "--gate", f"win_rate>={low - 0.001:.4f}",
                     cwd=ws.root, env=training_env())
    assert passed.returncode == 0, passed.stderr[-3000:]


def _model_of(path: str) -> str:
    meta = json.loads(Path(path + ".meta.json").read_text())
    return meta["identity"]["model"]["model"]


@pytest.mark.slow
def test_a_model_judged_against_itself_ties_on_every_prompt(run_and_rm):
    ws, rm = run_and_rm
    result = run_cli("eval", "out", *WIN_RATE, "--judge", f"rm:{rm}", "--baseline", "out", cwd=ws.root,
                     env=training_env())
    assert result.returncode == 0, result.stderr[-3000:]
    counts = json.loads(result.stdout)["win_rate"]["counts"]
    assert (counts["wins"], counts["losses"], counts["ties"], counts["win_rate"]) == (0, 0, 8, 0.5)
