"""`dpo-launch loop`: a two-round online loop on the tiny model with the reward-model judge (generate -> judge ->
pairs -> train -> eval -> gate), interrupted with Ctrl-C in round 2 and resumed without repeating a finished
step; a loop whose gate fails stops with exit 6 and says why, also when rerun; the loop file's own errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import yaml

from launcher.errors import EXIT_GATE_FAILED

from support.cli import REPO, run_cli, run_main
from support.training import TRAIN_DEFAULTS, training_env


def workspace(root, model, rm, rounds, evaluation):
    (root / "data").mkdir(parents=True)
    for name in ("dataset_info.json", "demo_dpo.jsonl"):
        (root / "data" / name).write_text((REPO / "data" / name).read_text())
    lines = (REPO / "data" / "demo_dpo.jsonl").read_text().splitlines()
    (root / "data" / "heldout.jsonl").write_text("\n".join(lines[-16:]) + "\n")
    base = {**TRAIN_DEFAULTS, "model_name_or_path": str(model), "max_steps": 4, "output_dir": "unused"}
    (root / "round.yaml").write_text(yaml.safe_dump(base))
    judge = {"judge": f"rm:{rm}", "judge_template": "default", "max_new_tokens": 6}
    spec = {"config": "round.yaml", "output_dir": "loop",
            "rounds": [{"name": name, "online": {"prompts": "data/demo_dpo.jsonl", "per_round": 4, "n": 2, **judge}}
                       for name in rounds],
            "eval": {"pairs": "data/heldout.jsonl", **evaluation}}
    (root / "loop.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return root


def state(root):
    return json.loads((root / "loop" / "loop.json").read_text())


@pytest.mark.slow
def test_a_two_round_online_loop_resumes_after_ctrl_c_in_round_2_without_repeating_a_step(
        tmp_path, tiny_model_dir, tiny_reward_model):
    evaluation = {"prompts": "data/demo_dpo.jsonl", "limit": 4, "judge": f"rm:{tiny_reward_model}",
                  "judge_template": "default", "max_new_tokens": 6, "gate": "accuracy>=0,win_rate>=0"}
    root = workspace(tmp_path / "ws", tiny_model_dir, tiny_reward_model, ["first", "second"], evaluation)
    process = subprocess.Popen([sys.executable, "-m", "launcher", "loop", "loop.yaml"], cwd=root, env=training_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    manifest = root / "loop" / "round-2" / "run" / "dpo-launch" / "resolved_config.json"
    deadline = time.monotonic() + 1200
    while not manifest.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)  # round 2 is training
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 130, output[-4000:]
    before = state(root)
    assert set(before["rounds"]["1"]["steps"]) == {"generate", "pairs", "config", "train", "eval"}
    assert set(before["rounds"]["2"]["steps"]) == {"generate", "pairs", "config"}
    weights = root / "loop" / "round-1" / "run" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns

    resumed = run_cli("loop", "loop.yaml", cwd=root, env=training_env(), timeout=1800)
    assert resumed.returncode == 0, resumed.stdout[-4000:] + resumed.stderr[-2000:]
    after = state(root)
    for index, steps in (("1", before["rounds"]["1"]["steps"]), ("2", before["rounds"]["2"]["steps"])):
        for name, record in steps.items():
            assert after["rounds"][index]["steps"][name] == record, f"round {index} {name} ran again"
    assert set(after["rounds"]["2"]["steps"]) == {"generate", "pairs", "config", "train", "eval"}
    assert weights.stat().st_mtime_ns == stamp and after["status"] == "done"
    skipped = [line for line in resumed.stdout.splitlines() if "finished before, skipped" in line]
    assert len(skipped) == 8  # 5 steps of round 1, 3 of round 2
    # round 2 starts from round 1's model, which is also its reference (a frozen copy: full fine-tuning)
    config = yaml.safe_load((root / "loop" / "round-2" / "config.yaml").read_text())
    assert config["model_name_or_path"] == str(root / "loop" / "round-1" / "run")
    plan = json.loads((root / "loop" / "round-2" / "run" / "dpo-launch" / "plan.json").read_text())
    assert (plan["reference"]["kind"], plan["reference"]["source"]) == (
        "frozen-copy", str(root / "loop" / "round-1" / "run"))
    # the pairs each round trained on are LLaMA-Factory ranking data the judge chose
    rows = [json.loads(line) for line in (root / "loop" / "round-2" / "data" / "pairs.jsonl").read_text().splitlines()]
    assert rows and all(set(r) == {"conversations", "chosen", "rejected"} for r in rows)
    table = [line for line in resumed.stdout.splitlines() if line.startswith(("round ", "1 first", "2 second"))]
    assert table[0].split() == ["round", "kind", "pairs", "steps", "accuracy", "margin", "win", "rate", "[95%]",
                                "length", "(policy/base)", "gate"]
    assert [row.split()[:5] for row in table[1:]] == [["1", "first", "online", str(after["rounds"]["1"]["steps"][
        "pairs"]["pairs"]), "4"], ["2", "second", "online", str(after["rounds"]["2"]["steps"]["pairs"]["pairs"]), "4"]]
    assert all(row.endswith("passed") for row in table[1:])
    assert (root / "loop" / "loop.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| 2 second | online |" in (root / "loop" / "loop.md").read_text()


@pytest.mark.slow
def test_a_failed_gate_stops_the_loop_with_exit_6_and_a_rerun_repeats_nothing(tmp_path, tiny_model_dir,
                                                                               tiny_reward_model):
    root = workspace(tmp_path / "ws", tiny_model_dir, tiny_reward_model, ["only", "never"], {"gate": "accuracy>=1.01"})
    result = run_cli("loop", "loop.yaml", cwd=root, env=training_env(), timeout=1800)
    assert result.returncode == EXIT_GATE_FAILED, result.stdout[-4000:] + result.stderr[-2000:]
    accuracy = state(root)["rounds"]["1"]["steps"]["eval"]["metrics"]["accuracy"]
    message = (f"dpo-launch loop: round 1 (only) failed its gate: accuracy {accuracy:.3f} >= 1.01: FAIL; the loop "
               "stops here (exit 6)")
    assert result.stderr.splitlines()[-1] == message
    assert "2" not in state(root)["rounds"] and not (root / "loop" / "round-2").exists()
    before = state(root)
    again = run_cli("loop", "loop.yaml", cwd=root, env=training_env(), timeout=600)
    assert again.returncode == EXIT_GATE_FAILED and again.stderr.splitlines()[-1] == message
    assert state(root)["rounds"]["1"]["steps"] == before["rounds"]["1"]["steps"]
    # the gate is checked again on the stored metrics: relaxed (and the unstarted round dropped), the loop ends
    spec = yaml.safe_load((root / "loop.yaml").read_text())
    spec["eval"]["gate"], spec["rounds"] = "accuracy>=0", spec["rounds"][:1]
    (root / "loop.yaml").write_text(yaml.safe_dump(spec))
    relaxed = run_main("loop", "loop.yaml", cwd=root)
    assert relaxed.returncode == 0, relaxed.stdout + relaxed.stderr
    assert state(root)["rounds"]["1"]["steps"] == before["rounds"]["1"]["steps"] and state(root)["status"] == "done"


def test_the_loop_file_is_checked_first_and_every_problem_located(tmp_path):
    (tmp_path / "round.yaml").write_text("model_name_or_path: m\nstage: kto\n")
    (tmp_path / "loop.yaml").write_text(
        "config: round.yaml\noutput_dir: out\nround: []\nrounds:\n"
        "  - set: {model_name_or_path: other}\n"
        "  - online: {prompts: nope.jsonl, judge: gpt4}\n"
        "eval: {gate: 'acc>=1'}\n")
    result = run_main("loop", "loop.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "loop.yaml:3:8: error[loop-key]: 'round' is not a key of the loop (did you mean 'rounds'?)",
        "loop.yaml:5:31: error[loop-owned-key]: model_name_or_path is decided by the loop (round k starts from round "
        "k-1's model, which is also its reference, and writes to <output_dir>/round-k/run) (remove it from set)",
        "loop.yaml:6:23: error[loop-path]: rounds.1.online.prompts: nope.jsonl is not a file",
        "loop.yaml:6:42: error[loop-value]: judge: expected rm:PATH, openai:BASE_URL or human but got 'gpt4'",
        "loop.yaml:7:14: error[loop-value]: gate: unknown metric 'acc': expected one of accuracy, margin, loss, "
        "chosen_logps, rejected_logps, win_rate",
        "✗ 5 errors, 0 warnings in loop.yaml"]
    assert result.stderr == "dpo-launch loop: loop.yaml has errors; nothing was started\n"


@pytest.mark.slow
def test_iterative_lora_rounds_start_from_the_previous_round_merged_by_llamafactory_export(tmp_path, tiny_model_dir,
                                                                                          tiny_reward_model):
    root = workspace(tmp_path / "ws", tiny_model_dir, tiny_reward_model, [], {})
    info = json.loads((root / "data" / "dataset_info.json").read_text())
    info["heldout"] = {**info["demo_dpo"], "file_name": "heldout.jsonl"}
    (root / "data" / "dataset_info.json").write_text(json.dumps(info))
    base = yaml.safe_load((root / "round.yaml").read_text())
    (root / "round.yaml").write_text(yaml.safe_dump({**base, "finetuning_type": "lora", "lora_target": "all",
                                                     "lora_rank": 4}))
    spec = yaml.safe_load((root / "loop.yaml").read_text())
    spec["rounds"] = [{"name": "helpful", "set": {"dataset": "demo_dpo"}},
                      {"name": "safety", "set": {"dataset": "heldout", "pref_beta": 0.2}}]
    spec["eval"] = {"pairs": "heldout"}
    (root / "loop.yaml").write_text(yaml.safe_dump(spec))
    result = run_cli("loop", "loop.yaml", cwd=root, env=training_env(), timeout=1800)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    rounds = state(root)["rounds"]
    merged = root / "loop" / "round-1" / "merged"
    assert rounds["1"]["steps"]["merge"] == {"at": rounds["1"]["steps"]["merge"]["at"], "model": str(merged),
                                             "merged": [str(root / "loop" / "round-1" / "run")]}
    assert (merged / "model.safetensors").is_file() and (merged / "tokenizer.json").is_file()
    config = yaml.safe_load((root / "loop" / "round-2" / "config.yaml").read_text())
    assert (config["model_name_or_path"], config["dataset"], config["pref_beta"]) == (str(merged), "heldout", 0.2)
    assert "adapter_name_or_path" not in config
    plan = json.loads((root / "loop" / "round-2" / "run" / "dpo-launch" / "plan.json").read_text())
    assert (plan["reference"]["kind"], plan["reference"]["source"]) == ("adapter-disabled", str(merged))
    assert (root / "loop" / "round-2" / "merged" / "model.safetensors").is_file()
