"""The schema check of `validate`: JSON Schema errors turned into located, explained diagnostics.

LLaMA-Factory checks neither types nor choices on the YAML path (`parse_dict` just builds the dataclasses)
and stops at the first unknown key without a position; this reports every problem at once, at its line.
"""

from __future__ import annotations

import math
from typing import Any

from launcher.check.config import LoadedConfig
from launcher.check.diagnostics import ERROR, OVERRIDES_FILE, WARNING, Diagnostic, suggestion_hint
from launcher.check.other_names import LEGACY_KEYS, OTHER_NAMES
from launcher.check.schema_words import expected_text, is_number, shown, value_hint
from launcher.check.schemas import is_valid, lf_properties, not_settable, validator

# Keyword -> code, in the order that wins when one value breaks several rules.
CODES = {"type": "type", "anyOf": "type", "enum": "enum", "const": "enum", "minimum": "range", "maximum": "range",
         "exclusiveMinimum": "range", "exclusiveMaximum": "range", "minLength": "range"}

# What to write instead of a name LF computes itself.
NOT_SETTABLE_HINTS = {
    "use_ref_model": "choose the loss instead: pref_loss orpo and simpo train without a reference",
    "compute_dtype": "set bf16: true or fp16: true instead",
    "mixed_precision": "set bf16: true or fp16: true instead",
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
    if name in OTHER_NAMES:
        return OTHER_NAMES[name].message(name), OTHER_NAMES[name].hint()
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
    message = (f"{where}: expected {expected} but got {shown(error.instance)}" if expected
               else f"{where}: {error.message}")
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
