"""LLaMA-Factory's defaults for the keys dpo-launch reads, and how it reads comma-separated values.

Sources: LLaMA-Factory 0.9.5 `hparams/finetuning_args.py`, `hparams/data_args.py`, `hparams/model_args.py` and
transformers 5.5.4 `training_args.py`. A test compares every entry with the generated schema's defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULTS: dict[str, Any] = {
    # FinetuningArguments / RLHFArguments
    "stage": "sft", "finetuning_type": "lora", "pref_beta": 0.1, "pref_loss": "sigmoid",
    "dpo_label_smoothing": 0.0, "pref_ftx": 0.0, "pref_bco_weight": 0.0, "simpo_gamma": 0.5, "ld_alpha": None,
    "kto_chosen_weight": 1.0, "kto_rejected_weight": 1.0,
    # DataArguments
    "max_samples": None, "val_size": 0.0, "mix_strategy": "concat", "streaming": False, "cutoff_len": 2048,
    # ModelArguments
    "infer_backend": "huggingface", "flash_attn": "auto", "image_max_pixels": 768 * 768,
    "image_min_pixels": 32 * 32, "video_max_pixels": 256 * 256, "video_min_pixels": 16 * 16,
    # transformers TrainingArguments
    "do_train": False, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1,
    "num_train_epochs": 3.0, "max_steps": -1, "dataloader_drop_last": False, "learning_rate": 5e-5,
    "max_grad_norm": 1.0, "adam_beta1": 0.9, "adam_beta2": 0.999, "adam_epsilon": 1e-8, "weight_decay": 0.0,
    "eval_strategy": "no", "save_strategy": "steps", "lr_scheduler_type": "linear", "report_to": "none",
}

# LLaMA-Factory compares val_size and dpo_label_smoothing against this to decide whether they are set.
EPSILON = 1e-6


def setting(config: Mapping[str, Any], key: str) -> Any:
    """The value LLaMA-Factory uses for `key`: the config's, else its default (None counts as unset)."""
    value = config.get(key)
    return DEFAULTS.get(key) if value is None else value


def split_arg(value: Any) -> list[str]:
    """LLaMA-Factory's split_arg: a comma string or a list, stripped (hparams/parser.py)."""
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]
