"""Preference metrics on held-out pairs, computed by LLaMA-Factory's own evaluation path.

The evaluation is a LLaMA-Factory config (`do_train: false`, `do_eval: true`) built from the run's resolved
config: the trained policy, the reference the run trained against as an explicit `ref_model` (with do_train off
and no ref_model LLaMA-Factory would use the policy as its own reference and drop the rewards, train/dpo/
workflow.py), the run's loss and template, and the held-out pairs (the run's `eval_dataset`, or --pairs: a dataset
name of the run's dataset_dir or a ShareGPT ranking file). It is written to
`<output_dir>/dpo-launch/eval/preference/config.yaml`, validated like any config, and run by the evaluation worker
(`run_exp`, with the loss patch `dpo-launch train` uses, so hinge/ipo/kto_pair are evaluated as themselves).
Metrics are LLaMA-Factory's `eval_*` means: each batch's mean, averaged over batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from launcher.atomic import write_text_atomic
from launcher.check.validation import ValidationResult, validate
from launcher.convert.register import register
from launcher.evaluate.models import Run
from launcher.evaluate.process import WorkerJob, run_worker
from launcher.lf.settings import split_arg

# Keys of the run's config that change what the evaluation computes (loss, template, data handling, precision).
CARRIED_KEYS = ("stage", "template", "cutoff_len", "pref_beta", "pref_loss", "pref_ftx", "pref_bco_weight",
                "dpo_label_smoothing", "simpo_gamma", "ld_alpha", "kto_chosen_weight", "kto_rejected_weight",
                "media_dir", "image_max_pixels", "image_min_pixels", "video_max_pixels", "video_min_pixels",
                "enable_thinking", "default_system", "tool_format", "bf16", "fp16", "pure_bf16", "seed",
                "preprocessing_num_workers", "per_device_eval_batch_size")
# LLaMA-Factory's metric names -> ours (the gate's names where the gate reads them).
METRIC_NAMES = {"eval_rewards/accuracies": "accuracy", "eval_rewards/margins": "margin",
                "eval_rewards/chosen": "chosen_reward", "eval_rewards/rejected": "rejected_reward",
                "eval_logps/chosen": "chosen_logps", "eval_logps/rejected": "rejected_logps", "eval_loss": "loss"}
PAIRS_NAME = "dpo_launch_eval_pairs"


def held_out(run: Run, pairs: str | None, folder: Path) -> tuple[list[str], str] | None:
    """(dataset names, dataset_dir) of the held-out pairs; None when the run has none and --pairs is not given."""
    if pairs and Path(pairs).suffix in (".json", ".jsonl") and Path(pairs).is_file():
        info = folder / "data" / "dataset_info.json"
        info.unlink(missing_ok=True)  # ours, rewritten for this evaluation
        register(info, PAIRS_NAME, {"file_name": str(Path(pairs).resolve()), "formatting": "sharegpt",
                                    "ranking": True, "columns": {"messages": "conversations", "chosen": "chosen",
                                                                 "rejected": "rejected"}}, force=True)
        return [PAIRS_NAME], str(info.parent)
    names = split_arg(pairs) if pairs else split_arg(run.config.get("eval_dataset"))
    if not names:
        return None
    return names, run.path(str(run.config.get("dataset_dir") or "data"))


def evaluation_config(run: Run, names: list[str], dataset_dir: str, folder: Path) -> dict[str, Any]:
    """The LLaMA-Factory config of the held-out evaluation (absolute paths: it runs from any directory)."""
    config = {key: run.config[key] for key in CARRIED_KEYS if run.config.get(key) is not None}
    policy, reference = run.policy(), run.reference()
    config.update(policy.lf_args())
    config["finetuning_type"] = policy.finetuning_type
    if reference is not None:
        config["ref_model"] = reference.model
        if reference.adapters:
            config["ref_model_adapters"] = ",".join(reference.adapters)
        for key in ("trust_remote_code",):
            if run.config.get(key) is not None:
                config[key] = run.config[key]
    config.update(do_train=False, do_eval=True, eval_dataset=",".join(names), dataset_dir=dataset_dir,
                  output_dir=str(folder / "lf"), overwrite_output_dir=True, report_to="none")
    config.setdefault("per_device_eval_batch_size", 8)
    return config


def write_config(config: dict[str, Any], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    header = ("# The held-out evaluation `dpo-launch eval` ran, as a LLaMA-Factory config; it also runs under\n"
              f"#   llamafactory-cli train {path}\n# (which evaluates hinge/ipo/kto_pair as sigmoid: dpo-launch does "
              "not).\n")
    write_text_atomic(path, header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


def check_config(path: Path) -> ValidationResult:
    """The evaluation config through `validate` (data included): bad held-out pairs are located errors."""
    return validate(path, cwd=path.parent)


def run_preference(config: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Run LLaMA-Factory's evaluation in a worker; {"metrics": ours, "lf_metrics": LLaMA-Factory's}."""
    result = run_worker(WorkerJob("prefeval", {"config": config}, folder))
    raw = result["metrics"]
    ours = {name: raw[key] for key, name in METRIC_NAMES.items() if key in raw}
    return {"metrics": ours, "lf_metrics": raw}


def count_pairs(validation: ValidationResult) -> int | None:
    """Held-out pairs LLaMA-Factory keeps (validate's record counts less those it would drop)."""
    summary = validation.data_summary
    if not isinstance(summary.get("records"), int):
        return None
    return summary["records"] - int(summary.get("would_drop") or 0)
