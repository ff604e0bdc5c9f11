"""`dpo-launch plan` end to end, in process (`main(argv)`), on a demo-like workspace in tmp_path."""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import sys
import threading
from pathlib import Path

import pytest

from launcher.check.config import load_config
from launcher.layout import lock_file
from launcher.lifeline import this_host
from launcher.plan.topology import planned_topology
from launcher.run.ownership import take_ownership
from launcher.run.rundir import RunDirRefused
from launcher.worker.selftest import expected_first_loss, judge

from support.cli import REPO, cli_env, run_main
from support.workspaces import CONFIG, write_workspace


def plan(cwd: Path, *args: str):
    return run_main("plan", "config.yaml", *args, cwd=cwd, env=cli_env(HF_HUB_CACHE=str(cwd / "hub")))


def test_plan_prints_reference_loss_and_batch_sections(tmp_path):
    result = plan(write_workspace(tmp_path))
    assert result.returncode == 0, result.stderr
    sections = result.stdout.split("\n\n")
    assert sections[0] == "dpo-launch plan for config.yaml (nothing is launched; memory is an estimate)"
    assert sections[1] == ("Reference model: frozen-copy\n"
                           "  a frozen copy of the base checkpoint (full fine-tuning): a second full model in memory")
    assert sections[2] == (
        "Loss: sigmoid (stage dpo)\n"
        "  L = −(1−ε)·log σ(β·h) − ε·log σ(−β·h),  h = [log π(y_w|x) − log π_ref(y_w|x)] − "
        "[log π(y_l|x) − log π_ref(y_l|x)] (summed log-probs)\n"
        "  parameters: pref_beta=0.5, dpo_label_smoothing=0, pref_ftx=0, pref_bco_weight=0, ld_alpha=unset\n"
        "  first-step loss (policy = reference): 0.6931, checked by the worker")
    # 100 pairs / (4 per device x 1 process) = 25 batches; ceil(25 / 2) = 13 steps per epoch; 3 epochs = 39.
    assert sections[3] == (
        "Batch and steps\n"
        "  world size: 1 = 1 node(s) × 1 process(es) per node\n"
        "  effective batch: 8 = 4 per device × 2 accumulation × 1 processes (8 sequences per forward)\n"
        "  data: 100 training examples (0 held out for evaluation): 13 optimizer steps per epoch, 39 in all "
        "(3 epochs)")


NOT_CHECKED = "  first-step loss: not checked by the worker: "


@pytest.mark.parametrize("override, shown", [
    ("ref_model=model", NOT_CHECKED + "an explicit ref_model may differ from the policy at step 0"),
    ("neftune_noise_alpha=5", NOT_CHECKED + "NEFTune noise / PiSSA init make the policy differ from its reference at "
                                            "step 0"),
    ("pref_ftx=0.5", NOT_CHECKED + "sigmoid has no closed form at step 0 for this config"),  # + the SFT term
    ("pref_loss=orpo", NOT_CHECKED + "orpo has no closed form at step 0 for this config"),
    ("pref_loss=ipo", "  first-step loss (policy = reference): 1.0000, checked by the worker"),  # (1/(2 x 0.5))^2
])
def test_plan_says_whether_the_worker_checks_the_first_step_loss_as_the_worker_decides(tmp_path, override, shown):
    workspace = write_workspace(tmp_path)
    result = plan(workspace, override)
    assert result.returncode == 0, result.stdout + result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith("  first-step loss")]
    assert line == shown
    # ... and the worker's self-test does the same with this config: skips it, saying why, or compares
    config = load_config(workspace / "config.yaml", [override]).values
    expected, why = expected_first_loss(config)
    if expected is None:
        assert judge(config, 0.5) == ("skipped", None, f"dpo-launch worker: loss self-test skipped: {why}")
        assert line == NOT_CHECKED + why
    else:
        assert judge(config, expected)[0] == "passed"
        assert line == f"  first-step loss (policy = reference): {expected:.4f}, checked by the worker"


def test_plan_prints_the_memory_table_and_the_launch_it_would_run(tmp_path):
    workspace = write_workspace(tmp_path)
    result = plan(workspace)
    out = result.stdout
    assert "Memory per GPU (no DeepSpeed, 1 GPU): 251.20K parameters, 251.20K trainable; model size from " \
           f"{workspace / 'model' / 'config.json'}" in out
    rows = [" ".join(line.split()) for line in out.splitlines()]
    assert "reference model 0.00 251K × 2 B, a full replica per GPU" in rows
    assert "ZeRO-3 + offload optimizer/params 0.01" in rows
    launch = out[out.index("Launch on node 0 of 1"):].split("\n\n")[0].splitlines()
    assert launch == [
        "Launch on node 0 of 1 (one process, cpu):",
        f"  PYTHONPATH={REPO}",
        "  PYTHONUNBUFFERED=1",
        f"  TENSORBOARD_LOGGING_DIR={workspace / 'runs/demo/tensorboard'}",
        f"  {sys.executable} -m launcher.worker --args-file {workspace / 'runs/demo/dpo-launch/resolved_config.json'}",
    ]
    assert out.splitlines()[-1] == "✓ plan ready, 0 warnings; run it with: dpo-launch train config.yaml"


def test_plan_prints_the_exact_train_command_with_its_overrides_and_launch_flags(tmp_path):
    workspace = write_workspace(tmp_path)
    args = ("pref_beta=0.2", "output_dir=my runs/x; rm -rf ~", "--nproc-per-node", "2", "--master-port", "29501",
            "--gpu-memory", "80GiB")
    result = plan(workspace, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    last = result.stdout.splitlines()[-1]
    assert last == ("✓ plan ready, 0 warnings; run it with: dpo-launch train config.yaml pref_beta=0.2 "
                    "'output_dir=my runs/x; rm -rf ~' --nproc-per-node 2 --master-port 29501 --gpu-memory 80GiB")
    # The printed command is the command: run as printed (dry), train plans the same launch.
    command = shlex.split(last.split("run it with: ")[1])
    assert command[:2] == ["dpo-launch", "train"]
    dry = run_main(*command[1:], "--dry-run", cwd=workspace, env=cli_env(HF_HUB_CACHE=str(workspace / "hub")))
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f"--args-file {shlex.quote(str(workspace / 'my runs/x; rm -rf ~/dpo-launch/resolved_config.json'))}" in \
        dry.stdout
    assert "--nproc_per_node 2" in dry.stdout and "--master_port 29501" in dry.stdout


def cpu_env(workspace: Path) -> dict:
    return cli_env(HF_HUB_CACHE=str(workspace / "hub"), CUDA_VISIBLE_DEVICES="")


def test_plan_says_train_refuses_fp16_on_a_cpu_machine_in_trains_own_words(tmp_path):
    workspace = write_workspace(tmp_path)
    planned = run_main("plan", "config.yaml", "fp16=true", cwd=workspace, env=cpu_env(workspace))
    trained = run_main("train", "config.yaml", "fp16=true", "--dry-run", cwd=workspace, env=cpu_env(workspace))
    assert planned.returncode == 0 and trained.returncode == 1
    lines = planned.stdout.splitlines()
    refused = lines[lines.index("`dpo-launch train` would refuse this on this machine, before starting anything:"):]
    [train_error] = [line for line in trained.stdout.splitlines() if "error[" in line]
    assert refused[1:] == [
        train_error,
        "✗ not ready here: 1 error above, 0 warnings; once they are fixed, run: dpo-launch train config.yaml fp16=true"]
    assert train_error == ("<command line>: error[needs-gpu]: fp16: true needs a CUDA GPU, but this machine has none "
                           "visible (or torch is a CPU-only build) (set fp16: false (CPU trains in fp32) or run on a "
                           "GPU machine)")
    assert "plan ready" not in planned.stdout


def test_plan_says_train_refuses_an_output_dir_that_holds_a_previous_run(tmp_path):
    workspace = write_workspace(tmp_path)
    (workspace / "runs/demo/checkpoint-3").mkdir(parents=True)
    planned = run_main("plan", "config.yaml", cwd=workspace, env=cpu_env(workspace))
    trained = run_main("train", "config.yaml", "--dry-run", cwd=workspace, env=cpu_env(workspace))
    assert planned.returncode == 0 and trained.returncode == 1
    message = trained.stderr.removeprefix("dpo-launch train: error: ").rstrip("\n")
    assert message.startswith(f"{workspace / 'runs/demo'} already holds a previous run (checkpoint-3); pass --resume")
    assert f"config.yaml:11:13: error[output-dir-holds-run]: {message}" in planned.stdout.splitlines()
    # With the config's own consent (overwrite_output_dir: true) train would start over: nothing refused, nothing said.
    again = run_main("plan", "config.yaml", "overwrite_output_dir=true", cwd=workspace, env=cpu_env(workspace))
    assert again.stdout.splitlines()[-1].startswith("✓ plan ready")
    assert "starting over" not in again.stdout


def test_plan_says_train_refuses_a_run_another_launcher_holds(tmp_path):
    workspace = write_workspace(tmp_path)
    output_dir = workspace / "runs/demo"
    lock = lock_file(output_dir)
    lock.parent.mkdir(parents=True)
    holder = {"pid": os.getpid(), "host": this_host(), "started_at": 1.0e9}
    lock.write_text(json.dumps(holder) + "\n")
    with open(lock, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        planned = run_main("plan", "config.yaml", cwd=workspace, env=cpu_env(workspace))
        with pytest.raises(RunDirRefused) as refused:
            take_ownership(output_dir, planned_topology({}, {}, 0))
    assert f"config.yaml:11:13: error[run-in-use]: {refused.value}" in planned.stdout.splitlines()
    assert str(refused.value).startswith(f"{output_dir} is in use by another dpo-launch train (pid {os.getpid()} ")
    assert lock.read_text() == json.dumps(holder) + "\n"  # plan took nothing and wrote nothing
    assert run_main("plan", "config.yaml", cwd=workspace, env=cpu_env(workspace)).stdout.splitlines()[-1] \
        .startswith("✓ plan ready")  # released: nothing refused


def test_a_launch_during_plans_lock_probe_is_not_refused(tmp_path):
    """plan's probe holds a shared lock for an instant; a train taking the lock then waits it out."""
    output_dir = tmp_path / "out"
    lock = lock_file(output_dir)
    lock.parent.mkdir(parents=True)
    lock.write_text("")
    probe = open(lock, "rb")  # noqa: SIM115 - released by the timer, as plan's probe releases it
    fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
    release = threading.Timer(0.2, probe.close)
    release.start()
    try:
        ownership = take_ownership(output_dir, planned_topology({}, {}, 0))
    finally:
        release.join()
    assert ownership.writer and json.loads(lock.read_text())["pid"] == os.getpid()
    ownership.release()


def test_plan_json_gives_the_same_as_data(tmp_path):
    workspace = write_workspace(tmp_path, CONFIG.replace("finetuning_type: full", "finetuning_type: lora"))
    result = plan(workspace, "--format", "json", "--nnodes", "2", "--nproc-per-node", "2",
                  "--master-addr", "10.0.0.1", "--master-port", "29400")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert sorted(data) == ["batch", "config", "diagnostics", "launch", "loss", "memory", "reference", "train"]
    assert data["train"] == {"command": ["dpo-launch", "train", "config.yaml", "--nproc-per-node", "2", "--nnodes", "2",
                                         "--master-addr", "10.0.0.1", "--master-port", "29400"], "refusals": []}
    assert data["reference"]["kind"] == "adapter-disabled"
    assert data["loss"]["parameters"]["pref_beta"] == 0.5
    # world 4: ceil(100 / (4 x 4)) = 7 batches per rank; ceil(7 / 2) = 4 steps per epoch.
    assert {k: data["batch"][k] for k in ("world_size", "effective_batch", "steps_per_epoch", "total_steps")} == {
        "world_size": 4, "effective_batch": 32, "steps_per_epoch": 4, "total_steps": 12}
    assert data["memory"]["terms"][3] == {"name": "reference model", "gib": 0.0,
                                          "formula": "none: the policy with adapters disabled"}
    assert data["memory"]["estimate"] is True
    nodes = data["launch"]["nodes"]
    assert [node["node_rank"] for node in nodes] == [0, 1]
    for rank, node in enumerate(nodes):
        argv = node["argv"]
        assert argv[argv.index("--node_rank") + 1] == str(rank)
        assert argv[argv.index("--master_addr") + 1] == "10.0.0.1"
        assert argv[argv.index("--master_port") + 1] == "29400"
        assert node["env_set"]["TENSORBOARD_LOGGING_DIR"] == str(workspace / "runs/demo/tensorboard")


def test_plan_warns_about_the_sft_adapter_reference_trap(tmp_path):
    config = CONFIG.replace("finetuning_type: full", "finetuning_type: lora\nadapter_name_or_path: saves/sft")
    workspace = write_workspace(tmp_path, config)
    (workspace / "saves" / "sft").mkdir(parents=True)
    data = json.loads(plan(workspace, "--format", "json").stdout)
    codes = [d["code"] for d in data["diagnostics"]]
    assert codes.count("sft-adapter-reference") == 1
    trap = data["diagnostics"][codes.index("sft-adapter-reference")]
    assert (trap["severity"], trap["file"], trap["line"]) == ("warning", "config.yaml", 5)


def test_plan_refuses_a_config_with_errors_and_prints_them(tmp_path):
    workspace = write_workspace(tmp_path, CONFIG.replace("pref_loss: sigmoid", "pref_loss: sigmod"))
    result = plan(workspace)
    assert result.returncode == 1
    assert "error[" in result.stdout and "sigmod" in result.stdout
    assert "Reference model" not in result.stdout
    assert result.stderr == ("dpo-launch plan: config.yaml has errors; fix them first "
                             "(dpo-launch validate shows the same)\n")


def test_plan_rejects_an_impossible_topology_as_a_usage_error(tmp_path):
    result = plan(write_workspace(tmp_path), "--nnodes", "2", "--node-rank", "5")
    assert result.returncode == 2
    assert result.stderr == "dpo-launch: error: --node-rank must be in 0..1 for --nnodes 2 but got 5\n"


def test_overrides_change_the_plan_as_they_change_training(tmp_path):
    result = plan(write_workspace(tmp_path), "pref_loss=ipo", "pref_beta=0.25", "--format", "json")
    loss = json.loads(result.stdout)["loss"]
    assert (loss["name"], loss["first_step_loss"], loss["silently_sigmoid_under_llamafactory_cli"]) == (
        "ipo", 4.0, True)


def test_shipped_8b_config_plans_on_eight_gpus(tmp_path):
    env = cli_env(HF_HUB_CACHE=str(tmp_path))
    result = run_main("plan", "config/llama3_8b_lora_dpo.yaml", "--no-data", "--nproc-per-node", "8",
                     "--format", "json", cwd=REPO, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["reference"]["kind"] == "adapter-disabled"
    assert data["memory"]["zero"] == "ZeRO-3"
    assert data["memory"]["parameters"] == 8_030_261_248
    assert data["batch"]["effective_batch"] == 64
    assert 5 < data["memory"]["total_gib"] < 40
    assert [d for d in data["diagnostics"] if d["severity"] == "error"] == []


def test_shipped_8b_config_validates_without_data(tmp_path):
    result = run_main("validate", "config/llama3_8b_lora_dpo.yaml", "--no-data", "--format", "json", cwd=REPO,
                     env=cli_env(HF_HUB_CACHE=str(tmp_path)))
    assert result.returncode == 0, result.stdout
    assert json.loads(result.stdout)["summary"]["errors"] == 0


def test_plan_refuses_what_train_would_refuse_with_a_message(tmp_path):
    result = plan(write_workspace(tmp_path, CONFIG.replace("output_dir: runs/demo\n", "")))
    assert result.returncode == 1
    assert result.stderr.endswith("dpo-launch plan: error: output_dir is not set; add `output_dir: <dir>` to the "
                                  "config (the run directory)\n")


def test_paths_with_spaces_stay_one_argv_element(tmp_path):
    workspace = write_workspace(tmp_path, CONFIG.replace("output_dir: runs/demo", "output_dir: runs/my run"))
    data = json.loads(plan(workspace, "--format", "json", "--nproc-per-node", "2").stdout)
    argv = data["launch"]["nodes"][0]["argv"]
    assert argv[argv.index("--args-file") + 1] == str(workspace / "runs/my run/dpo-launch/resolved_config.json")


def test_plan_json_refusal_is_the_validate_report(tmp_path):
    workspace = write_workspace(tmp_path, CONFIG.replace("pref_loss: sigmoid", "pref_loss: sigmod"))
    result = plan(workspace, "--format", "json")
    data = json.loads(result.stdout)
    assert (result.returncode, data["ok"]) == (1, False)
    assert "pref_loss" in [d["path"] for d in data["diagnostics"] if d["severity"] == "error"]
