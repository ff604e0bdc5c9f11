"""Distributed launches for real on CPU: torchrun with 2 processes (gloo), DeepSpeed ZeRO-2 and ZeRO-3, and two
"nodes" on loopback that rendezvous through `--nnodes 2 --node-rank 0/1`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_train import loss_steps, workspace

from support.cli import run_cli, unused_port
from support.training import REPO, training_env

# DeepSpeed JIT-builds its CPU shared-memory op on first use (~85 s); keep the build for later runs.
EXTENSIONS = REPO / ".cache" / "torch_extensions"


def deepspeed_env() -> dict[str, str]:
    EXTENSIONS.mkdir(parents=True, exist_ok=True)
    return training_env(TORCH_EXTENSIONS_DIR=str(EXTENSIONS))


def assert_trained(result: subprocess.CompletedProcess, out: Path, world_size: int, steps: int) -> None:
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert json.loads((out / "dpo-launch" / "runtime.json").read_text())["world_size"] == world_size
    assert loss_steps(out) == list(range(1, steps + 1))


@pytest.mark.subprocess
def test_torchrun_with_two_processes_trains_and_keeps_one_log_per_rank(tmp_path, tiny_model_dir):
    ws = workspace(tmp_path / "ws", tiny_model_dir, max_steps=3, save_strategy="no")
    result = run_cli("train", ws.config, "--nproc-per-node", "2", cwd=ws.root)
    out = ws.out
    assert_trained(result, out, world_size=2, steps=3)
    logs = out / "dpo-launch" / "logs"
    assert sorted(p.name for p in logs.glob("rank-*.log")) == ["rank-0.log", "rank-1.log"]
    assert "world size: 2" in (logs / "rank-1.log").read_text()
    assert "[rank1]: " in (logs / "launcher.log").read_text()


@pytest.mark.parametrize("preset, changes", [
    ("ds_z2_config.json", {"finetuning_type": "lora", "lora_target": "all"}),
    ("ds_z3_config.json", {}),
], ids=["zero2-lora", "zero3-full-with-reference"])
@pytest.mark.subprocess
def test_deepspeed_runs_on_two_cpu_processes_with_the_shipped_presets(tmp_path, tiny_model_dir, preset, changes):
    ws = workspace(tmp_path / "ws", tiny_model_dir, max_steps=3, save_strategy="no",
                   deepspeed=str(REPO / "config" / "deepspeed" / preset), **changes)
    result = run_cli("train", ws.config, "--nproc-per-node", "2", cwd=ws.root, env=deepspeed_env())
    assert_trained(result, ws.out, world_size=2, steps=3)
    launcher_log = (ws.out / "dpo-launch" / "logs" / "launcher.log").read_text()
    assert "[rank1]: DeepSpeed deepspeed.ops.comm.deepspeed_shm_comm_op built successfully" in launcher_log
    assert ("Detected DeepSpeed ZeRO-3" in launcher_log) == (preset == "ds_z3_config.json")


@pytest.mark.subprocess
def test_two_nodes_on_loopback_rendezvous_and_train_as_one_job(tmp_path, tiny_model_dir):
    ws = workspace(tmp_path / "ws", tiny_model_dir, max_steps=3, save_strategy="no")
    port = str(unused_port())
    nodes = [subprocess.Popen([sys.executable, "-m", "launcher", "train", str(ws.config), "--nnodes", "2",
                               "--node-rank", str(rank), "--nproc-per-node", "1", "--master-addr", "127.0.0.1",
                               "--master-port", port], cwd=ws.root, env=training_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for rank in (0, 1)]
    outputs = [node.communicate(timeout=600) for node in nodes]
    for node, (stdout, stderr) in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, stdout[-3000:] + stderr[-3000:]
    out = ws.out
    assert json.loads((out / "dpo-launch" / "runtime.json").read_text())["world_size"] == 2
    assert "[rank1]: " in outputs[1][0] and "[rank1]: " not in outputs[0][0]
    assert loss_steps(out) == [1, 2, 3]
