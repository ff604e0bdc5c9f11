"""The worker's first-batch loss self-test and its `runtime.json` report (imported by the worker only).

At step 0 the policy equals its reference, so every loss with a reference has a closed form
(docs/upstream-notes.md#first-step-loss; `launcher.lf.losses.Loss.first_step_loss`). The worker compares the first
training micro-batch's loss with it and stops with a clear message when they disagree: cheap, and it catches the
next silent loss regression upstream.
The probe also sees the built trainer, so it reports which reference model was actually built.

Two things look like a wrong loss and are not, so they are named as what they are: a non-finite first loss
(NaN/inf from the forward pass: broken weights, an fp16 overflow; the probe says which parameters are not
finite) fails the self-test as such, and a trainer that resumed a checkpoint (LLaMA-Factory resumes the last
`checkpoint-N` in output_dir on its own when `resume_from_checkpoint` is not set) skips it, naming the checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from launcher.layout import RUNTIME_FILE, run_dir
from launcher.lf.losses import first_step_check, resolve_loss
from launcher.versions import package_versions
from launcher.worker import console

# Human-readable closed forms for the failure message; the values come from launcher.lf.losses.
CLOSED_FORMS = {
    "sigmoid": "−log σ(β·0)",
    "hinge": "relu(1 − β·0)",
    "ipo": "(0 − 1/(2β))²",
    "kto_pair": "1 − σ(0)",
    "kto": "w·(1 − σ(0))",
}


class LossSelfTestFailed(Exception):
    """The first batch's loss is not the closed form of the loss the config asks for."""


def expected_first_loss(cfg: Mapping[str, Any]) -> tuple[float | None, str]:
    """(closed-form step-0 loss, why it is skipped when None): launcher.lf.losses.first_step_check, which `plan`
    prints too."""
    check = first_step_check(cfg)
    return check.expected, check.skipped_because


def tolerance(cfg: Mapping[str, Any]) -> float:
    """Relative tolerance: tight in fp32; half precision runs policy and reference through rounded weights."""
    half = any(cfg.get(key) for key in ("bf16", "fp16", "pure_bf16"))
    return 2e-2 if half else 1e-3


def judge(cfg: Mapping[str, Any], observed: float,
          resumed_from: str | None = None) -> tuple[str, float | None, str]:
    """(status, expected, message) for the observed first-batch loss; `resumed_from`: the checkpoint the trainer
    actually resumed, when it did. Status: passed, failed, skipped or non-finite."""
    loss = resolve_loss(cfg)
    expected, why = expected_first_loss(cfg)
    if not math.isfinite(observed):
        return "non-finite", expected, (
            f"dpo-launch worker: loss self-test failed: the first batch's loss is {observed}, not a number the "
            f"{_label(loss.name)} loss can give: the forward pass produced non-finite values (a wrong loss would "
            "still be finite)")
    if resumed_from and not cfg.get("resume_from_checkpoint"):
        return "skipped", None, (
            f"dpo-launch worker: loss self-test skipped: training resumed from {resumed_from} although the config "
            "does not ask to resume (LLaMA-Factory resumes from the last checkpoint-N in output_dir when "
            "resume_from_checkpoint is not set); the policy has moved from its reference, so the first-batch loss "
            "has no closed form")
    if expected is None:
        return "skipped", None, f"dpo-launch worker: loss self-test skipped: {why}"
    beta = float(cfg.get("pref_beta", 0.1))
    form = f"{CLOSED_FORMS.get(loss.name, loss.name)} = {expected:.4f} at β {beta:g}"
    error = abs(observed - expected) / max(abs(expected), 1e-12)
    if error <= tolerance(cfg):
        return "passed", expected, (f"dpo-launch worker: loss self-test passed: {loss.name} first-batch loss "
                                    f"{observed:.4f} matches {form}")
    stack = package_versions()
    return "failed", expected, (
        f"dpo-launch worker: loss self-test failed: {_label(loss.name)} should start at {form} when the policy "
        f"equals its reference, but the first batch gave {observed:.4f} (relative error {error:.1%}); the loss "
        f"that runs is not the loss asked for (trl {stack['trl']}, llamafactory {stack['llamafactory']})")


def _label(name: str) -> str:
    return "stage kto" if name == "kto" else f"pref_loss {name}"


def _unwrap(module):
    """DeepSpeed engines and DDP keep the model in `.module`."""
    while hasattr(module, "module") and not hasattr(module, "disable_adapter"):
        module = module.module
    return module


def _count_parameters(module, skip_adapters: bool = False) -> int:
    """Parameter count; ZeRO-3 partitions weights, so it keeps the full size in `ds_numel`."""
    return sum(getattr(p, "ds_numel", p.numel()) for name, p in module.named_parameters()
               if not (skip_adapters and "lora_" in name))


def reference_info(trainer, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The reference model the trainer actually holds: kind, class and parameter count
    (docs/upstream-notes.md#reference-model)."""
    if not resolve_loss(cfg).uses_reference:
        return {"kind": "none", "class": None, "parameters": None}
    cache = getattr(trainer, "dpo_launch_ref_cache", None)
    if cache:  # train --precompute-ref: no reference model at all (launcher.worker.ref_cache)
        return {"kind": "precomputed", "class": None, "parameters": 0, "cache": cache}
    if trainer.ref_model is None:
        policy = _unwrap(trainer.model)
        if not hasattr(policy, "disable_adapter"):
            return {"kind": "none", "class": None, "parameters": None}
        base = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
        return {"kind": "adapter-disabled", "class": type(base).__name__,
                "parameters": _count_parameters(base, skip_adapters=True)}
    reference = _unwrap(trainer.ref_model)
    kind = "explicit" if cfg.get("ref_model") else "frozen-copy"
    return {"kind": kind, "class": type(reference).__name__, "parameters": _count_parameters(reference)}


def write_runtime(output_dir: str | Path, report: Mapping[str, Any]) -> Path:
    """Write `<output_dir>/dpo-launch/runtime.json` atomically (a reader never sees half a file)."""
    path = run_dir(output_dir) / RUNTIME_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staging.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    os.replace(staging, path)
    return path


class FirstBatchProbe:
    """Called with the trainer and the loss of the first training micro-batch; checks it and reports."""

    def __init__(self, cfg: Mapping[str, Any]):
        self.cfg = cfg
        self.done = False

    def __call__(self, trainer, observed: float) -> None:
        self.done = True
        status, expected, message = judge(self.cfg, observed, resumed_checkpoint(trainer))
        if status == "non-finite":
            message += "; " + non_finite_parameters(trainer.model)
        is_rank_zero = trainer.is_world_process_zero()
        if is_rank_zero:
            write_runtime(trainer.args.output_dir, {
                "reference": reference_info(trainer, self.cfg),
                "loss": {"name": resolve_loss(self.cfg).name, "first_batch_loss": observed,
                         "expected": expected, "self_test": status},
                "world_size": trainer.args.world_size,
                "versions": package_versions(),
            })
        if status in ("failed", "non-finite"):
            raise LossSelfTestFailed(message)
        if is_rank_zero:
            _say(message)


def resumed_checkpoint(trainer) -> str | None:
    """The checkpoint the trainer resumed (LLaMA-Factory passes training_args.resume_from_checkpoint to
    `trainer.train`, hparams/parser.py sets it to the last checkpoint-N of output_dir), or None."""
    checkpoint = getattr(trainer.args, "resume_from_checkpoint", None)
    if checkpoint:
        return str(checkpoint)
    step = getattr(getattr(trainer, "state", None), "global_step", 0)
    return f"a checkpoint at step {step}" if step else None


def non_finite_parameters(model) -> str:
    """Which of the policy's parameters hold NaN or inf: the weights themselves, or what the forward pass does."""
    import torch

    bad, total = [], 0
    for name, parameter in _unwrap(model).named_parameters():
        if parameter.numel() == 0:  # a ZeRO-3 placeholder: its values live in another rank's partition
            continue
        total += 1
        if not bool(torch.isfinite(parameter.detach()).all()):
            bad.append(name)
    if bad:
        return (f"{len(bad)} of the model's {total} parameter tensors hold NaN or inf (the first: {bad[0]}): the "
                "weights loaded from model_name_or_path (or adapter_name_or_path) are broken")
    return (f"all {total} parameter tensors are finite, so the forward pass overflows: with fp16 try bf16 or fp32, "
            "and check the data and the model's code")


def _say(message: str) -> None:
    """Print above the trainer's progress bar instead of into it."""
    tqdm = sys.modules.get("tqdm.std")
    if tqdm is not None and getattr(tqdm.tqdm, "_instances", None):
        tqdm.tqdm.write(console.shown(message))
    else:
        console.say(message)


def install_probe(probe: FirstBatchProbe) -> None:
    """Wrap the DPO and KTO trainers' compute_loss so the probe sees the first training micro-batch."""
    from llamafactory.train.dpo.trainer import CustomDPOTrainer
    from llamafactory.train.kto.trainer import CustomKTOTrainer

    for trainer_class in (CustomDPOTrainer, CustomKTOTrainer):
        trainer_class.compute_loss = _probed(trainer_class.compute_loss, probe)


def _probed(original, probe: FirstBatchProbe):
    original = getattr(original, "__wrapped__", original)  # installing twice must not probe twice

    def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
        result = original(self, model, inputs, return_outputs, **kwargs)
        if not probe.done and model.training:
            loss = result[0] if return_outputs else result
            probe(self, float(loss.detach().float().cpu()))
        return result

    compute_loss.__wrapped__ = original
    return compute_loss
