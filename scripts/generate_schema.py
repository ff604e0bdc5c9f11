"""Generate the JSON Schemas in schemas/ from the installed LLaMA-Factory 0.9.5 argument dataclasses.

    .venv/bin/python scripts/generate_schema.py [--output-dir schemas]

Writes two files:
- `llamafactory-0.9.5.schema.json`: every key `llamafactory-cli train` accepts, read from the five dataclasses
  `get_train_args` parses (`_TRAIN_ARGS` in llamafactory/hparams/parser.py), HF TrainingArguments included:
  JSON type from the annotation, default, allowed values, help text. Names LF computes itself are listed under
  `x-not-settable` with the reason, so `validate` can explain them instead of calling them unknown.
- `dpo-config.schema.json`: the DPO/KTO layer on top (stage, pref_loss from launcher/lf/losses.py, ranges).

The output is deterministic (sorted keys, fixed formatting); tests/test_config_schema.py regenerates both
files and fails on drift. This script imports torch and llamafactory (about 10 s); `dpo-launch` never does.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import math
import pathlib
import sys
import types
import typing
from typing import Any

REPO = pathlib.Path(__file__).resolve().parent.parent
LF_SCHEMA_NAME = "llamafactory-0.9.5.schema.json"
DPO_SCHEMA_NAME = "dpo-config.schema.json"
DRAFT = "https://json-schema.org/draft/2020-12/schema"

# Strings LF splits on "," but that also pass through as lists (`split_arg` checks isinstance(str)).
COMMA_SPLIT_OR_LIST = {
    "dataset", "eval_dataset", "lora_target", "additional_target", "oft_target", "freeze_trainable_modules",
    "freeze_extra_modules", "galore_target", "apollo_target",
}
# `interleave_probs` is split, then each item goes through float().
COMMA_SPLIT_NUMBERS = {"interleave_probs"}
# Strings LF calls `.split(",")` on unconditionally (model_args.py:211-258, ModelArguments.copyfrom for
# ref_model_adapters): a YAML list there crashes with AttributeError, so only a string is valid.
COMMA_SPLIT_STRING_ONLY = {"adapter_name_or_path", "ref_model_adapters", "add_tokens", "add_special_tokens"}

COMPUTED = {
    "use_ref_model": "computed by LLaMA-Factory from stage and pref_loss: true for stage dpo unless pref_loss "
                     "is orpo or simpo",
    "use_ray": "computed by LLaMA-Factory from the USE_RAY environment variable",
    "mixed_precision": "computed by transformers from bf16/fp16",
    "deepspeed_plugin": "computed by transformers from deepspeed",
    "fsdp_plugin_args": "computed by transformers from fsdp and fsdp_config",
}


def load_groups() -> list[type]:
    """The five dataclasses `get_train_args` parses, in LF's order."""
    from llamafactory.hparams.parser import _TRAIN_ARGS

    return list(_TRAIN_ARGS)


def template_names() -> list[str]:
    from llamafactory.data.template import TEMPLATES

    return sorted(TEMPLATES)


# ---------------------------------------------------------------- annotation -> JSON Schema


def annotation_schema(annotation: Any) -> dict:
    """The JSON Schema for a dataclass annotation, as a YAML value would have to look."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return {}
    if annotation is type(None):
        return {"type": "null"}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        return merge_alternatives([annotation_schema(arg) for arg in args])
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {"enum": [member.value for member in annotation]}
    return container_schema(annotation, origin, args) or scalar_schema(annotation)


def scalar_schema(annotation: Any) -> dict:
    simple = {bool: "boolean", int: "integer", float: "number", str: "string", pathlib.Path: "string"}
    if annotation in simple:
        return {"type": simple[annotation]}
    return {}  # a Python object (GenerationConfig, ParallelismConfig...): YAML cannot build it; do not guess


def container_schema(annotation: Any, origin: Any, args: tuple) -> dict | None:
    if annotation is dict or origin is dict:
        schema: dict = {"type": "object"}
        if len(args) == 2 and annotation_schema(args[1]):
            schema["additionalProperties"] = annotation_schema(args[1])
        return schema
    if annotation is list or origin is list:
        schema = {"type": "array"}
        if args and annotation_schema(args[0]):
            schema["items"] = annotation_schema(args[0])
        return schema
    return None


def merge_alternatives(schemas: list[dict]) -> dict:
    """Fold a Union into one `type` list (or an enum) where possible, else anyOf."""
    if any(not schema for schema in schemas):
        return {}
    enum_values = [value for schema in schemas if "enum" in schema for value in schema["enum"]]
    if any(isinstance(value, str) for value in enum_values):
        # `IntervalStrategy | str`: transformers converts the string with the Enum, so only its values work.
        schemas = [schema for schema in schemas if schema != {"type": "string"}]
    enums = [schema for schema in schemas if "enum" in schema]
    typed = [schema for schema in schemas if "enum" not in schema]
    if enums and all(schema == {"type": "null"} for schema in typed):
        return {"enum": enum_values + ([None] if typed else [])}
    if enums:
        return {"anyOf": [merge_types(typed), {"enum": enum_values}]} if typed else {"enum": enum_values}
    return merge_types(typed)


def merge_types(schemas: list[dict]) -> dict:
    merged: dict = {}
    type_names: set[str] = set()
    for schema in schemas:
        type_names.add(schema["type"])
        merged.update({key: value for key, value in schema.items() if key != "type"})
    merged["type"] = sorted(type_names) if len(type_names) > 1 else type_names.pop()
    return merged


def comma_split_schema(name: str, nullable: bool) -> dict:
    if name in COMMA_SPLIT_STRING_ONLY:
        schema: dict = {"type": ["null", "string"] if nullable else "string"}
        note = "A comma-separated string (not a list: LLaMA-Factory calls .split on it)."
    else:
        item = {"type": ["number", "string"]} if name in COMMA_SPLIT_NUMBERS else {"type": "string"}
        schema = {"type": ["array", "null", "string"] if nullable else ["array", "string"], "items": item}
        note = "A comma-separated string or a list."
    schema["x-comma-separated"] = note
    return schema


# ---------------------------------------------------------------- fields -> properties


def json_default(field: dataclasses.Field) -> tuple[bool, Any]:
    """(True, value) when the field has a JSON-serialisable default."""
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return False, None
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, float) and not math.isfinite(value):
        return False, None
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False, None
    return True, value


def field_schema(field: dataclasses.Field, annotation: Any, group: str, templates: list[str]) -> dict:
    schema = annotation_schema(annotation)
    nullable = "null" in str(schema.get("type")) or None in schema.get("enum", [])
    if field.name in COMMA_SPLIT_OR_LIST | COMMA_SPLIT_NUMBERS | COMMA_SPLIT_STRING_ONLY:
        schema = comma_split_schema(field.name, nullable)
    elif field.name == "template":
        schema = {"enum": templates + [None]}
    elif field.metadata.get("choices") and schema.get("type") in ("string", ["null", "string"]):
        schema = {"enum": list(field.metadata["choices"]) + ([None] if nullable else [])}
    has_default, default = json_default(field)
    if has_default:
        schema["default"] = default
    help_text = field.metadata.get("help")
    if help_text:
        schema["description"] = " ".join(str(help_text).split())
    schema["x-group"] = group
    return schema


def group_properties(cls: type, templates: list[str]) -> tuple[dict, dict]:
    """(properties, not_settable) for one dataclass."""
    hints = typing.get_type_hints(cls)
    properties, not_settable = {}, {}
    for field in dataclasses.fields(cls):
        if not field.init:
            not_settable[field.name] = init_false_reason(field)
            continue
        properties[field.name] = field_schema(field, hints.get(field.name, field.type), cls.__name__, templates)
    for name in read_only_properties(cls):
        not_settable[name] = f"a read-only property of {cls.__name__}, computed at run time"
    return properties, not_settable


def init_false_reason(field: dataclasses.Field) -> str:
    """'computed by LLaMA-Factory: torch data type ..., derived from `fp/bf16`' from the field's help."""
    help_text = " ".join(str(field.metadata.get("help", "")).split()).replace("Do not specify it.", "").strip()
    help_text = help_text.rstrip(".")
    if not help_text:
        return "computed by LLaMA-Factory"
    return f"computed by LLaMA-Factory: {help_text[:1].lower()}{help_text[1:]}"


def read_only_properties(cls: type) -> list[str]:
    return sorted({name for klass in cls.__mro__ for name, value in vars(klass).items()
                   if isinstance(value, property) and not name.startswith("_")})


def llamafactory_schema(groups: list[type], templates: list[str]) -> dict:
    properties: dict = {}
    not_settable: dict = {}
    for cls in groups:
        group_props, group_not_settable = group_properties(cls, templates)
        properties.update(group_props)
        not_settable.update(group_not_settable)
    not_settable.update(COMPUTED)
    return {
        "$schema": DRAFT,
        "title": "LLaMA-Factory 0.9.5 train arguments",
        "description": "Every key `llamafactory-cli train CONFIG.yaml` accepts (a flat namespace over "
                       + ", ".join(cls.__name__ for cls in groups)
                       + "). Generated by scripts/generate_schema.py; do not edit.",
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        "x-not-settable": {name: reason for name, reason in not_settable.items() if name not in properties},
        "x-groups": {cls.__name__: sum(1 for p in properties.values() if p["x-group"] == cls.__name__)
                     for cls in groups},
    }


# ---------------------------------------------------------------- the DPO/KTO layer


def dpo_schema(pref_loss_names: list[str]) -> dict:
    """Stage, losses and ranges for DPO/KTO; LF itself checks none of these on the YAML path."""
    above_zero = {"exclusiveMinimum": 0}
    at_least_zero = {"minimum": 0}
    nullable_bits = {"enum": [4, 8, None], "x-hint": "bitsandbytes quantizes to 4 or 8 bits"}
    rules = {
        "type": "object",
        "required": ["model_name_or_path", "stage"],
        "properties": {
            "model_name_or_path": {"type": "string", "minLength": 1},
            "stage": {"enum": ["dpo", "kto"]},
            "pref_loss": {"enum": list(pref_loss_names)},
            "pref_beta": {**above_zero, "x-hint": "beta scales the implicit reward; 0.1 is the usual value"},
            "dpo_label_smoothing": {"minimum": 0, "maximum": 0.5,
                                    "x-hint": "cDPO's label-flip probability; above 0.5 it prefers the rejected "
                                              "answer"},
            "pref_ftx": at_least_zero,
            "pref_bco_weight": at_least_zero,
            "simpo_gamma": at_least_zero,
            "ld_alpha": {"minimum": 0, "maximum": 1},
            "kto_chosen_weight": above_zero,
            "kto_rejected_weight": above_zero,
            "ref_model_quantization_bit": nullable_bits,
            "val_size": {"minimum": 0},
            "learning_rate": above_zero,
            "num_train_epochs": above_zero,
            "per_device_train_batch_size": {"minimum": 1},
            "per_device_eval_batch_size": {"minimum": 1},
            "gradient_accumulation_steps": {"minimum": 1},
            "cutoff_len": {"minimum": 1},
            "warmup_ratio": {"minimum": 0, "maximum": 1},
            "lora_rank": {"minimum": 1},
            "lora_dropout": {"minimum": 0, "exclusiveMaximum": 1},
            "reward_model_quantization_bit": nullable_bits,
            # What LF accepts and a later library call refuses (tests/check/test_lf_differential.py finds them):
            "preprocessing_num_workers": {"minimum": 1, "x-hint": "datasets' map needs at least one process "
                                          "(num_proc > 0); leave it unset to preprocess in this process"},
            "dataloader_num_workers": {"minimum": 0, "x-hint": "torch's DataLoader needs 0 (load in the main "
                                       "process) or more worker processes"},
            "max_samples": {"minimum": 1, "x-hint": "0 samples leave nothing to train on; remove it to use all"},
            "seed": {"minimum": 0, "maximum": 2 ** 32 - 1, "x-hint": "numpy seeds are 0 to 2**32 - 1"},
            "warmup_steps": {"minimum": 0, "x-hint": "a whole number of steps, or a fraction below 1 of the total"},
            "torch_empty_cache_steps": {"minimum": 1},
            "adam_beta1": {"minimum": 0, "exclusiveMaximum": 1, "x-hint": "torch's Adam needs 0 <= beta < 1"},
            "adam_beta2": {"minimum": 0, "exclusiveMaximum": 1, "x-hint": "torch's Adam needs 0 <= beta < 1"},
            "adam_epsilon": at_least_zero,
            "weight_decay": at_least_zero,
        },
        # quantization_bit depends on the method (model/model_utils/quantization.py:166-216); bnb is the default.
        "allOf": [
            quantization_rule("bnb", [4, 8], "bitsandbytes quantizes to 4 or 8 bits"),
            quantization_rule("hqq", [1, 2, 3, 4, 5, 6, 8], "HQQ quantizes to 1-6 or 8 bits"),
            quantization_rule("eetq", [8], "EETQ quantizes to 8 bits"),
            VAL_SIZE_RULE,
        ],
    }
    return {
        "$schema": DRAFT,
        "title": "dpo-launch DPO/KTO config",
        "description": "A LLaMA-Factory 0.9.5 config for stage dpo or kto, with the ranges and choices LLaMA-Factory "
                       "does not check itself. Use it in editors with the modeline "
                       f"`# yaml-language-server: $schema=../schemas/{DPO_SCHEMA_NAME}`. "
                       "Generated by scripts/generate_schema.py; do not edit.",
        "allOf": [{"$ref": LF_SCHEMA_NAME}, rules],
    }


# data_utils.py:114 passes a val_size of exactly 1 to train_test_split as the fraction 1.0, which fails; in
# streaming mode it is a count (the parser's own streaming check is a rule in launcher/rules*, not here).
VAL_SIZE_RULE = {
    "if": {"properties": {"streaming": {"const": True}}, "required": ["streaming"]},
    "else": {"properties": {"val_size": {
        "anyOf": [{"exclusiveMaximum": 1}, {"exclusiveMinimum": 1}],
        "x-expected": "a fraction in [0, 1) or a number of examples above 1",
    }}},
}


def quantization_rule(method: str, bits: list[int], hint: str) -> dict:
    condition: dict = {"properties": {"quantization_method": {"const": method}}}
    if method != "bnb":  # bnb is the default, so it also applies when quantization_method is absent
        condition["required"] = ["quantization_method"]
    return {
        "if": condition,
        "then": {"properties": {"quantization_bit": {"enum": [*bits, None], "x-hint": hint}}},
    }


# ---------------------------------------------------------------- output


def dump(schema: dict) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def generate() -> dict[str, str]:
    """File name -> file text, for both schemas."""
    sys.path.insert(0, str(REPO))
    from launcher.lf.losses import PREF_LOSS_NAMES

    return {
        LF_SCHEMA_NAME: dump(llamafactory_schema(load_groups(), template_names())),
        DPO_SCHEMA_NAME: dump(dpo_schema(list(PREF_LOSS_NAMES))),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=pathlib.Path, default=REPO / "schemas")
    args = parser.parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for name, text in generate().items():
        (args.output_dir / name).write_text(text, encoding="utf-8")
        print(f"wrote {args.output_dir / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
