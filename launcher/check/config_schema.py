"""The schema check of `validate`: JSON Schema errors turned into located, explained diagnostics.

LLaMA-Factory checks neither types nor choices on the YAML path (`parse_dict` just builds the dataclasses)
and stops at the first unknown key without a position; this reports every problem at once, at its line.
"""

from __future__ import annotations

import math
from typing import Any

from launcher.check.config import OVERRIDES_FILE, LoadedConfig
from launcher.check.diagnostics import ERROR, WARNING, Diagnostic, suggestion_hint
from launcher.check.schema_words import expected_text, is_number, shown, value_hint
from launcher.check.schemas import is_valid, lf_properties, not_settable, validator

# Keyword -> code, in the order that wins when one value breaks several rules.
CODES = {"type": "type", "anyOf": "type", "enum": "enum", "const": "enum", "minimum": "range", "maximum": "range",
         "exclusiveMinimum": "range", "exclusiveMaximum": "range", "minLength": "range"}

# Keys LF once had, or that transformers 5 dropped -> (message, hint). docs/upstream-notes.md#config-reading.
LEGACY_KEYS = {
    **{old: (f"'{old}' was renamed to 'pref_beta' in LLaMA-Factory 0.8.0", "rename it to pref_beta")
       for old in ("dpo_beta", "orpo_beta")},
    **{old: (f"'{old}' was renamed to 'pref_ftx' in LLaMA-Factory 0.8.0", "rename it to pref_ftx")
       for old in ("dpo_ftx", "kto_ftx")},
    "dpo_loss": ("'dpo_loss' was renamed to 'pref_loss' in LLaMA-Factory 0.8.0", "rename it to pref_loss"),
    "evaluation_strategy": ("'evaluation_strategy' was renamed to 'eval_strategy' in transformers",
                            "rename it to eval_strategy"),
    "checkpoint_dir": ("'checkpoint_dir' was renamed to 'adapter_name_or_path' in LLaMA-Factory",
                       "rename it to adapter_name_or_path"),
    **{old: (f"'{old}' was replaced by 'cutoff_len' in LLaMA-Factory, one length for prompt and response",
             "delete it and set cutoff_len to the longest prompt plus response in tokens; the default is 2048")
       for old in ("max_source_length", "max_target_length")},
    "neft_alpha": ("'neft_alpha' was renamed to 'neftune_noise_alpha' in LLaMA-Factory",
                   "rename it to neftune_noise_alpha"),
    "resume_lora_training": ("'resume_lora_training' was removed from LLaMA-Factory",
                             "delete it; to continue from an adapter set adapter_name_or_path"),
    "save_safetensors": ("'save_safetensors' was removed in transformers 5 (checkpoints are always safetensors)",
                         "delete it"),
    "no_cuda": ("'no_cuda' was renamed to 'use_cpu' in transformers", "rename it to use_cpu"),
    **{f"per_gpu_{split}_batch_size": ((f"'per_gpu_{split}_batch_size' was renamed to "
                                        f"'per_device_{split}_batch_size' in transformers"),
                                       f"rename it to per_device_{split}_batch_size")
       for split in ("train", "eval")},
}
# TRL DPOConfig/KTOConfig names people copy from TRL examples -> how to say it to LLaMA-Factory.
TRL_KEYS = {
    "beta": "use pref_beta",
    "loss_type": "use pref_loss",
    "label_smoothing": "use dpo_label_smoothing",
    "max_prompt_length": "LLaMA-Factory has one length for prompt and response: use cutoff_len",
    "max_completion_length": "LLaMA-Factory has one length for prompt and response: use cutoff_len",
    "rpo_alpha": "the closest LLaMA-Factory key is pref_ftx, an SFT loss on the chosen response",
    "desirable_weight": "use kto_chosen_weight",
    "undesirable_weight": "use kto_rejected_weight",
    "reference_free": "for training without a reference model use pref_loss: simpo or orpo",
    "precompute_ref_log_probs": "LLaMA-Factory has no equivalent; delete it",
    "sync_ref_model": "LLaMA-Factory has no equivalent; delete it",
    "padding_value": "LLaMA-Factory pads with the tokenizer's pad token; delete it",
    "truncation_mode": "LLaMA-Factory has no equivalent; delete it",
    "dataset_num_proc": "use preprocessing_num_workers",
    "model_init_kwargs": "LLaMA-Factory has no equivalent; delete it",
    "ref_model_init_kwargs": "LLaMA-Factory has no equivalent; delete it",
    "generate_during_eval": "LLaMA-Factory has no equivalent; delete it",
    "use_weighting": "LLaMA-Factory has no equivalent; delete it",
}
# What to write instead of a name LF computes itself.
NOT_SETTABLE_HINTS = {
    "use_ref_model": "choose the loss instead: pref_loss orpo and simpo train without a reference",
    "compute_dtype": "set bf16: true or fp16: true instead",
    "model_max_length": "set cutoff_len instead",
    "block_diag_attn": "set neat_packing instead",
    "train_batch_size": "set per_device_train_batch_size instead",
    "eval_batch_size": "set per_device_eval_batch_size instead",
}
# Keys the parser overwrites (hparams/parser.py:584-648, docs/upstream-notes.md#resume-trap) -> what happens to them.
PARSER_OWNED = {
    "remove_unused_columns": "it is always forced to false, so this value is ignored",
    "label_names": "it sets ['labels'] for LoRA, which the preference trainers need",
    "ddp_find_unused_parameters": "it sets false for LoRA under DDP",
    "local_rank": "torchrun sets it for each process",
}


def check_config_schema(loaded: LoadedConfig) -> list[Diagnostic]:
    """Every key and value problem in the config, sorted by position (command-line overrides last)."""
    properties = lf_properties()
    diagnostics = [d for key in loaded.values if (d := key_diagnostic(loaded, key, properties, not_settable()))]
    diagnostics += value_diagnostics(loaded) + non_finite_numbers(loaded)
    diagnostics += advice(loaded)
    return sorted(diagnostics, key=position_order(loaded))


def position_order(loaded: LoadedConfig):
    """File order by line and column; overrides (no line) after the file, roughly in the order given."""
    keys = {str(key): index for index, key in enumerate(loaded.values)}

    def order(diagnostic: Diagnostic) -> tuple:
        top_key = (diagnostic.path or "").split(".")[0].split("[")[0]
        return (diagnostic.file != loaded.file, diagnostic.file == OVERRIDES_FILE,
                diagnostic.line or 0, diagnostic.column or 0, keys.get(top_key, -1))
    return order


# ---------------------------------------------------------------- keys


def key_diagnostic(loaded: LoadedConfig, key: Any, properties: dict, computed: dict) -> Diagnostic | None:
    name = "null" if key is None else str(key)  # as YAML spells it, which is how positions are indexed
    if name in properties:
        return None
    if name in computed:
        return loaded.diagnostic(ERROR, "not-settable", f"'{name}' cannot be set: it is {computed[name]}",
                                 name, at_value=False, hint=NOT_SETTABLE_HINTS.get(name, "delete this line"))
    message, hint = unknown_key_text(name, properties, loaded.values.get("stage"))
    return loaded.diagnostic(ERROR, "unknown-key", message, name, at_value=False, hint=hint)


def unknown_key_text(name: str, properties: dict, stage: Any) -> tuple[str, str | None]:
    if name in LEGACY_KEYS:
        return LEGACY_KEYS[name]
    if name in TRL_KEYS:
        replacement = TRL_KEYS[name]
        message = f"'{name}' is a TRL DPOConfig/KTOConfig name, not a LLaMA-Factory key"
        return message, replacement
    kind = stage if stage in ("dpo", "kto") else "dpo"
    return f"'{name}' is not a key of a {kind} config", suggestion_hint(name, properties)


# ---------------------------------------------------------------- values


def value_diagnostics(loaded: LoadedConfig) -> list[Diagnostic]:
    if is_valid(loaded.values):
        return []
    by_path: dict[tuple, Any] = {}
    missing: list[str] = []
    for error in validator().iter_errors(loaded.values):
        if error.validator == "additionalProperties":
            continue  # reported per key, with positions and suggestions
        if error.validator == "required":  # one error per missing key, each naming the whole list
            missing += [name for name in error.validator_value if name not in error.instance and name not in missing]
            continue
        path = tuple(error.absolute_path)
        if path not in by_path or precedence(error) < precedence(by_path[path]):
            by_path[path] = error
    return required_diagnostics(loaded, missing) + [error_diagnostic(loaded, path, error)
                                                    for path, error in by_path.items()]


def non_finite_numbers(loaded: LoadedConfig) -> list[Diagnostic]:
    """`.nan` and `.inf` are YAML floats that JSON Schema cannot rule out; no LF number means them."""
    return [loaded.diagnostic(ERROR, "range", f"{key}: expected a finite number but got {shown(value)}", str(key),
                              hint="write a number")
            for key, value in loaded.values.items() if isinstance(value, float) and not math.isfinite(value)]


def precedence(error) -> int:
    order = list(CODES)
    return order.index(error.validator) if error.validator in order else len(order)


def required_diagnostics(loaded: LoadedConfig, missing: list[str]) -> list[Diagnostic]:
    texts = {
        "model_name_or_path": ("model_name_or_path is required: the model to train",
                               "add model_name_or_path: a local path or a Hugging Face Hub id"),
        "stage": ("stage is required: without it LLaMA-Factory trains stage sft",
                  "add stage: dpo, or stage: kto"),
    }
    found = []
    for name in missing:
        message, hint = texts.get(name, (f"{name} is required", None))
        found.append(loaded.diagnostic(ERROR, "required", message, hint=hint))
    return found


def error_diagnostic(loaded: LoadedConfig, path: tuple, error) -> Diagnostic:
    where = path_text(path)
    if path == ("stage",) and error.validator in ("enum", "const"):
        message = f"dpo-launch handles stage dpo or kto; got {shown(error.instance)}"
        hint = suggestion_hint(error.instance, ("dpo", "kto")) if isinstance(error.instance, str) else None
        return located(loaded, path, ERROR, "stage", message, hint or "use llamafactory-cli train for other stages")
    code = CODES.get(error.validator, "schema")
    expected = expected_text(error.schema if code != "enum" else {"enum": error.validator_value}, where)
    if error.validator == "anyOf" and "x-expected" in error.schema:
        code = "range" if is_number(error.instance) else "type"
    message = f"{where}: expected {expected} but got {shown(error.instance)}" if expected else f"{where}: {error.message}"
    return located(loaded, path, ERROR, code, message, value_hint(error, path))


def located(loaded: LoadedConfig, path: tuple, severity: str, code: str, message: str, hint: str | None) -> Diagnostic:
    position = loaded.value_at(*path) if path else loaded.key_at()
    return Diagnostic(severity, code, message, file=position.file, line=position.line, column=position.column,
                      path=path_text(path) or None, hint=hint)


def path_text(path: tuple) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


# ---------------------------------------------------------------- accepted but wrong-headed


def advice(loaded: LoadedConfig) -> list[Diagnostic]:
    found = [loaded.diagnostic(WARNING, "parser-owned", f"'{key}' is set by LLaMA-Factory's parser: {why}",
                               key, at_value=False, hint="delete this line")
             for key, why in PARSER_OWNED.items() if key in loaded.values]
    if "max_length" in loaded.values:
        cutoff = loaded.values.get("cutoff_len")
        hint = f"cutoff_len is {cutoff} here" if cutoff is not None else "set cutoff_len instead; its default is 2048"
        found.append(loaded.diagnostic(
            WARNING, "no-effect", "max_length is a generation setting and does nothing in training; "
            "the training sequence length is cutoff_len", "max_length", at_value=False, hint=hint))
    return found
