"""`dpo-launch pairs` with the reward-model judge: scores from LLaMA-Factory's own get_scores on the tiny reward
model, best-vs-worst pairs that `validate` passes and register in dataset_info.json, and the audit beside them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml
from test_judges import CANDIDATES, write_candidates

from support.cli import REPO, run_cli, run_main
from support.training import training_env

# LLaMA-Factory's own scoring path (chat/hf_engine.py _get_scores) on the texts its pairwise processor encodes
SCORE = """
import json, sys
from llamafactory.chat import ChatModel
model = ChatModel({"model_name_or_path": sys.argv[1], "template": "default", "stage": "rm"})
engine = model.engine
out = {}
for record in json.load(open(sys.argv[2])):
    for i, text in enumerate(record["responses"]):
        messages = record["messages"] + [{"role": "assistant", "content": text}]
        p, r = engine.template.encode_oneturn(engine.tokenizer, messages, record["system"])
        out[f"{record['id']}:{i}"] = float(model.get_scores([engine.tokenizer.decode(p + r)])[0])
print(json.dumps(out))
"""


@pytest.mark.slow
def test_reward_model_pairs_are_best_vs_worst_by_lf_scores_and_pass_validate(tmp_path, tiny_reward_model):
    (tmp_path / "data").mkdir()
    shutil.copyfile(REPO / "data" / "dataset_info.json", tmp_path / "data" / "dataset_info.json")
    result = run_cli("pairs", write_candidates(tmp_path), "--judge", f"rm:{tiny_reward_model}", "--judge-template",
                     "default", "--out", "data/judged.jsonl", "--register", "data/dataset_info.json", "--name",
                     "judged", cwd=tmp_path, env=training_env())
    assert result.returncode == 0, result.stderr[-3000:]
    (tmp_path / "c.json").write_text(json.dumps(CANDIDATES))
    direct = subprocess.run([sys.executable, "-c", SCORE, str(tiny_reward_model), str(tmp_path / "c.json")],
                            capture_output=True, text=True, env=training_env(), timeout=300)
    expected = json.loads(direct.stdout.splitlines()[-1])
    audit = [json.loads(line) for line in (tmp_path / "data" / "judged.audit.jsonl").read_text().splitlines()]
    rows = [json.loads(line) for line in (tmp_path / "data" / "judged.jsonl").read_text().splitlines()]
    for record, entry, row in zip(CANDIDATES, audit, rows, strict=True):
        scores = {int(i): s for i, s in entry["scores"].items()}
        assert scores == pytest.approx({i: expected[f"{record['id']}:{i}"] for i in scores}, abs=1e-5)
        best, worst = max(scores, key=scores.get), min(scores, key=scores.get)
        assert (entry["chosen"], entry["rejected"], entry["status"]) == (best, worst, "pair")
        assert (row["chosen"]["value"], row["rejected"]["value"]) == (record["responses"][best],
                                                                      record["responses"][worst])
    assert result.stdout.splitlines()[0] == (
        f"wrote data/judged.jsonl: 2 pairs from 2 prompts judged by rm:{tiny_reward_model} (2 pair)")
    info = json.loads((tmp_path / "data" / "dataset_info.json").read_text())
    assert info["judged"] == {"file_name": "judged.jsonl", "formatting": "sharegpt", "ranking": True,
                              "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump({
        "model_name_or_path": str(tiny_reward_model), "stage": "dpo", "do_train": True, "finetuning_type": "full",
        "dataset": "judged", "dataset_dir": "data", "template": "default", "output_dir": "out"}))
    validated = run_main("validate", "train.yaml", cwd=tmp_path)
    assert validated.returncode == 0, validated.stdout
    assert validated.stdout.splitlines()[-1].startswith("✓ 0 errors")


def test_pairs_never_replace_an_existing_file_or_a_registered_name_without_force(tmp_path):
    (tmp_path / "pairs.jsonl").write_text("mine\n")
    result = run_main("pairs", write_candidates(tmp_path), "--judge", "human", "--out", "pairs.jsonl", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (1, "dpo-launch pairs: error: pairs.jsonl exists; pass --force to "
                                                     "replace it, or choose another --out\n")
    info = tmp_path / "dataset_info.json"
    info.write_text('{"taken": {"file_name": "other.jsonl"}}\n')
    result = run_main("pairs", "cands.jsonl", "--judge", "human", "--out", "new.jsonl", "--register", info, "--name",
                      "taken", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (1, f"dpo-launch pairs: error: {info}:1: 'taken' is already defined "
                                                     "(file_name 'other.jsonl') (pass --force to replace it, or choose "
                                                     "another --name)\n")
    assert (tmp_path / "pairs.jsonl").read_text() == "mine\n" and not (tmp_path / "new.jsonl").exists()
