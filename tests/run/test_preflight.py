"""`dpo-launch train` checks the machine before it writes or starts anything: packages, GPUs, memory.

The machine is faked exactly at its boundaries (launcher.run.preflight's docstring names them): what
`importlib.util.find_spec` and `importlib.metadata.version` return, how many CUDA devices the driver shows, and what
`nvidia-smi --query-gpu=...` prints. Everything else is the real command, in process, with `--dry-run`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from launcher.run import preflight

from support.cli import run_main
from support.workspaces import CONFIG, write_workspace

LORA = CONFIG.replace("finetuning_type: full", "finetuning_type: lora")
A100 = "0, GPU-a100, NVIDIA A100-SXM4-80GB, 8.0, 81920\n"
T4S = "0, GPU-t4-0, Tesla T4, 7.5, 15360\n1, GPU-t4-1, Tesla T4, 7.5, 15360\n"
REFUSED = "dpo-launch train: error: this machine cannot run the config as it is; nothing was started\n"


class Machine:
    """The four boundaries, faked: installed packages (find_spec and metadata), the CUDA device count and what
    nvidia-smi prints. It starts as a CPU machine with the pinned training stack."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.packages: dict[str, str] = {}  # distribution -> version
        self.modules: set[str] = set()  # what find_spec finds
        self.count, self.smi = 0, None
        monkeypatch.setattr(preflight, "find_spec", lambda name: object() if name in self.modules else None)
        monkeypatch.setattr(preflight, "distribution_version", self.packages.get)
        monkeypatch.setattr(preflight, "visible_gpus", lambda env: self.count)
        monkeypatch.setattr("launcher.plan.gpus.nvidia_smi_output", lambda: self.smi)
        for distribution in ("torch", "transformers", "tensorboard", "deepspeed"):
            self.install(distribution, "5.5.4" if distribution == "transformers" else "1.0")

    def install(self, distribution: str, version: str) -> None:
        self.packages[distribution] = version
        self.modules.add(distribution.replace("-", "_"))

    def gpus(self, count: int, nvidia_smi: str | None) -> None:
        self.count, self.smi = count, nvidia_smi


@pytest.fixture
def machine(monkeypatch) -> Machine:
    return Machine(monkeypatch)


def train(workspace: Path, *args: str):
    return run_main("train", "config.yaml", "--dry-run", *args, cwd=workspace, env={**os.environ,
                                                                                    "HF_HUB_CACHE": str(workspace)})


def errors(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if ": error[" in line]


def test_missing_packages_are_refused_each_with_its_install_command(tmp_path, machine):
    config = LORA.replace("report_to: tensorboard", "report_to: [tensorboard, wandb]")
    workspace = write_workspace(tmp_path, config + "use_unsloth: true\noptim: adamw_8bit\n")

    result = train(workspace)

    assert (result.returncode, result.stderr) == (1, REFUSED)
    assert errors(result.stdout) == [
        "config.yaml:16:12: error[missing-package]: report_to: wandb needs wandb (transformers' logging callback "
        "imports it), but wandb is not installed on this machine (install it: pip install wandb)",
        "config.yaml:17:14: error[missing-package]: use_unsloth: true needs unsloth (LLaMA-Factory checks it before "
        "training), but unsloth is not installed on this machine (install it: pip install unsloth)",
        "config.yaml:18:8: error[missing-package]: optim: adamw_8bit needs bitsandbytes (transformers builds the "
        "optimizer from it), but bitsandbytes is not installed on this machine (install it: pip install "
        "bitsandbytes)"]
    assert not (workspace / "runs").exists()


def test_installed_packages_pass_and_the_dry_run_goes_on(tmp_path, machine):
    workspace = write_workspace(tmp_path, LORA + "use_unsloth: true\noptim: adamw_8bit\n")
    machine.install("unsloth", "2025.1")
    machine.install("bitsandbytes", "0.45.0")

    result = train(workspace)

    assert (result.returncode, errors(result.stdout)) == (0, [])
    assert "-m launcher.worker --args-file" in result.stdout


def test_a_package_older_than_llamafactory_needs_is_refused_with_the_version_to_install(tmp_path, machine):
    workspace = write_workspace(tmp_path, LORA + "quantization_bit: 4\n")
    machine.install("bitsandbytes", "0.38.1")
    machine.gpus(1, A100)

    result = train(workspace)

    assert errors(result.stdout) == [
        "config.yaml:17:19: error[missing-package]: quantization_bit: 4 needs bitsandbytes >= 0.39.0 (LLaMA-Factory "
        "quantizes the model on load), but bitsandbytes 0.38.1 is installed on this machine (install it: pip install "
        "'bitsandbytes>=0.39.0')"]


def test_flash_attention_2_is_refused_where_transformers_5_6_0_is_installed(tmp_path, machine):
    workspace = write_workspace(tmp_path, LORA + "flash_attn: fa2\nbf16: true\n")
    machine.install("flash-attn", "2.8.3")
    machine.install("transformers", "5.6.0")
    machine.gpus(1, A100)

    result = train(workspace)

    assert errors(result.stdout) == [
        "config.yaml:17:13: error[missing-package]: flash_attn: fa2 needs transformers other than 5.6.0 "
        "(transformers 5.6.0 crashes on the first forward (huggingface/transformers#45588)), but transformers 5.6.0 "
        "is installed on this machine (install it: pip install transformers==5.5.4)"]


def test_flash_attention_2_and_bf16_on_the_pinned_stack_and_an_ampere_gpu_pass(tmp_path, machine):
    workspace = write_workspace(tmp_path, LORA + "flash_attn: fa2\nbf16: true\n")
    machine.install("flash-attn", "2.8.3")
    machine.gpus(1, A100)

    result = train(workspace)

    assert (result.returncode, errors(result.stdout)) == (0, [])


def test_bf16_and_flash_attention_2_on_a_gpu_older_than_ampere_are_refused_naming_the_gpus(tmp_path, machine):
    workspace = write_workspace(tmp_path, LORA + "flash_attn: fa2\nbf16: true\n")
    machine.install("flash-attn", "2.8.3")
    machine.gpus(2, T4S)

    result = train(workspace, "--nproc-per-node", "2")

    gpus = "GPU 0 (Tesla T4, 7.5), GPU 1 (Tesla T4, 7.5)"
    assert (result.returncode, result.stderr) == (1, REFUSED)
    assert errors(result.stdout) == [
        "config.yaml:17:13: error[gpu-too-old]: flash_attn: fa2 needs compute capability 8.0 or higher "
        f"(FlashAttention-2 runs on NVIDIA Ampere or newer), but this machine has {gpus} (use flash_attn: sdpa (or "
        "auto) on this GPU, or run on an Ampere or newer GPU)",
        "config.yaml:18:7: error[gpu-too-old]: bf16: true needs compute capability 8.0 or higher (bfloat16 runs "
        f"natively on NVIDIA Ampere or newer), but this machine has {gpus} (use fp16: true (watch for NaN rewards) "
        "or fp32 on this GPU, or run on an Ampere or newer GPU)"]


def test_cuda_visible_devices_narrows_the_gpus_that_are_checked(tmp_path, machine, monkeypatch):
    workspace = write_workspace(tmp_path, LORA + "bf16: true\n")
    machine.gpus(1, A100.replace("0, GPU-a100", "1, GPU-a100") + "0, GPU-t4, Tesla T4, 7.5, 15360\n")

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert (train(workspace).returncode, errors(train(workspace).stdout)) == (0, [])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert [line.split(": error[")[1][:11] for line in errors(train(workspace).stdout)] == ["gpu-too-old"]


def test_quantization_on_a_machine_without_a_gpu_is_refused(tmp_path, machine):
    workspace = write_workspace(tmp_path, LORA + "quantization_bit: 4\n")
    machine.install("bitsandbytes", "0.45.0")

    result = train(workspace)

    assert errors(result.stdout) == [
        "config.yaml:17:19: error[needs-gpu]: quantization_bit: 4 needs a CUDA GPU (bitsandbytes quantizes on CUDA), "
        "but this machine has none visible (or torch is a CPU-only build) (remove quantization_bit or run on a GPU "
        "machine)"]


@pytest.mark.parametrize(("nvidia_smi", "selection"), [(None, None), (A100, "MIG-4f2b")])
def test_gpus_nvidia_smi_cannot_describe_get_a_note_and_the_run_goes_on(tmp_path, machine, monkeypatch, nvidia_smi,
                                                                         selection):
    workspace = write_workspace(tmp_path, LORA + "bf16: true\n")
    machine.gpus(1, nvidia_smi)
    if selection:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", selection)

    result = train(workspace)

    assert result.returncode == 0
    assert "config.yaml: note[gpu-details-unknown]: nvidia-smi could not tell the compute capability and memory of " \
           "the GPUs this process sees: not checked here" in result.stdout.splitlines()


def test_an_estimate_above_the_gpu_memory_is_refused_with_the_ways_out(tmp_path, machine):
    workspace = write_workspace(tmp_path)
    machine.gpus(1, "0, GPU-tiny, Tiny GPU, 8.0, 1\n")  # 1 MiB

    result = train(workspace)

    lines = result.stdout.splitlines()
    assert (result.returncode, result.stderr) == (1, REFUSED)
    assert errors(result.stdout)[0].startswith(
        "config.yaml: error[out-of-memory]: the plan's estimate, 0.01 GiB per GPU, is more than the 0.00 GiB of GPU "
        "0, Tiny GPU, from nvidia-smi (take one of the ways out below, or pass --no-memory-check to start anyway")
    ways = lines[lines.index(next(line for line in lines if line.startswith("Out of GPU memory"))) + 1:]
    assert [way.split()[0] for way in ways] == ["finetuning_type:", "finetuning_type:", "deepspeed:", "cutoff_len:",
                                               "per_device_train_batch_size:", "pref_loss:"]
    assert not (workspace / "runs").exists()


def test_no_memory_check_starts_anyway_and_gpu_memory_plans_for_another_machine(tmp_path, machine):
    workspace = write_workspace(tmp_path)

    assert train(workspace, "--gpu-memory", "1MiB").returncode == 1
    assert train(workspace, "--gpu-memory", "1MiB", "--no-memory-check").returncode == 0
    assert train(workspace, "--gpu-memory", "80GiB").returncode == 0


def test_deepspeed_offload_without_a_prebuilt_cpu_adam_needs_ninja_and_a_compiler(tmp_path, machine, monkeypatch):
    workspace = write_workspace(tmp_path, LORA + "deepspeed: ds.json\n")
    (workspace / "ds.json").write_text('{"train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto", '
                                       '"gradient_accumulation_steps": "auto", "zero_optimization": {"stage": 2, '
                                       '"offload_optimizer": {"device": "cpu"}}}')
    monkeypatch.setattr(preflight, "_prebuilt_ops", lambda: {"cpu_adam": False})
    empty, tools = tmp_path / "empty-bin", tmp_path / "tools-bin"
    empty.mkdir()
    tools.mkdir()
    for tool in ("ninja", "c++"):
        (tools / tool).write_text("#!/bin/sh\n")
        (tools / tool).chmod(0o755)

    monkeypatch.setenv("PATH", str(empty))
    without = train(workspace)
    monkeypatch.setenv("PATH", str(tools))
    with_tools = train(workspace)

    assert errors(without.stdout) == [
        "config.yaml:17:12: error[missing-package]: deepspeed offloads the optimizer to CPU with DeepSpeedCPUAdam, "
        "which this deepspeed install did not prebuild, and compiling it at the first step needs ninja and a C++ "
        "compiler (c++ or $CXX), missing on this machine (pip install ninja (and a C++ compiler), or reinstall "
        "DeepSpeed with its ops prebuilt: DS_BUILD_CPU_ADAM=1 pip install deepspeed; or use a DeepSpeed config "
        "without offload_optimizer)"]
    assert errors(with_tools.stdout) == []


def test_the_prebuilt_deepspeed_ops_are_read_from_the_installed_package_without_importing_it():
    assert preflight.find_spec("deepspeed") is not None, "the training stack is installed in the test environment"

    ops = preflight._prebuilt_ops()

    assert "cpu_adam" in ops and all(isinstance(built, bool) for built in ops.values())
