"""The `deepspeed` JSON: readable, no optimizer/scheduler blocks, hard-coded values that agree with the config.

transformers fills every "auto" from TrainingArguments and raises on a hard-coded value that disagrees
(integrations/deepspeed.py `trainer_config_process`, LLaMA-Factory #3224). trl builds the reference model's
engine from a deep copy of this config (docs/upstream-notes.md#deepspeed, docs/upstream-notes.md#reference-model),
so its optimizer blocks reach the reference too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from launcher.check.diagnostics import ERROR, NOTE, WARNING, Diagnostic
from launcher.check.rules.context import NotApplicable, RuleContext, path_kind
from launcher.check.schema_words import shown

MISMATCH = "Please correct the following DeepSpeed config values that mismatch TrainingArguments values"
NOT_FOUND = ("Expected a string path to an existing deepspeed config, or a dictionary, or a base64 encoded "
             "string.")


class DeepSpeedFile:
    """The DeepSpeed JSON with the line/column of each key, so diagnostics point into it."""

    def __init__(self, display: str, data: dict, positions: dict[tuple, tuple[int | None, int | None]]):
        self.display, self.data, self.positions = display, data, positions

    def at(self, severity: str, code: str, message: str, key_path: tuple = (), hint: str | None = None) -> Diagnostic:
        # An inline `deepspeed:` mapping only knows where the mapping starts: the () entry.
        line, column = self.positions.get(key_path) or self.positions.get((), (None, None))
        return Diagnostic(severity, code, message, file=self.display, line=line, column=column,
                          path=".".join(map(str, key_path)) or None, hint=hint)


def deepspeed_file(ctx: RuleContext) -> Iterator[Diagnostic]:
    """The file must exist and parse; the other DeepSpeed rules read it through ctx.deepspeed_config()."""
    value, path = ctx.raw("deepspeed"), ctx.deepspeed_path()
    if value is None or isinstance(value, dict):
        return
    if path is None:
        raise NotApplicable("deepspeed")
    kind, reason = path_kind(path)
    if kind in ("missing", "unusable"):
        why = "does not exist" if kind == "missing" else f"cannot be used ({reason})"
        yield ctx.error("deepspeed-config-not-found", f"deepspeed: {shown(value)} {why} (resolved from "
                        f"{ctx.cwd})", "deepspeed", "point it at a DeepSpeed JSON such as config/deepspeed/"
                        f'ds_z3_config.json; transformers stops with "{NOT_FOUND}"')
    elif kind != "file":
        yield ctx.error("deepspeed-config-not-found", f"deepspeed: expected a JSON file but {shown(value)} is a "
                        "directory", "deepspeed", "point it at the JSON file inside it")
    else:
        yield from _parse_problems(ctx, value, path)


def _parse_problems(ctx: RuleContext, value: str, path: Path) -> Iterator[Diagnostic]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        yield Diagnostic(ERROR, "deepspeed-config-invalid", f"DeepSpeed config is not UTF-8 (byte {exc.start})",
                         file=value, hint="save it as UTF-8 JSON")
        return
    except OSError as exc:
        yield ctx.error("deepspeed-config-invalid", f"deepspeed: cannot read {shown(value)}: {exc.strerror or exc}",
                        "deepspeed")
        return
    except json.JSONDecodeError as exc:
        yield Diagnostic(ERROR, "deepspeed-config-invalid", f"DeepSpeed config is not valid JSON: {exc.msg}",
                         file=value, line=exc.lineno, column=exc.colno,
                         hint="DeepSpeed configs are strict JSON: no comments, no trailing commas")
        return
    except RecursionError:
        yield Diagnostic(ERROR, "deepspeed-config-invalid", "DeepSpeed config nesting is too deep", file=value)
        return
    if not isinstance(data, dict):
        yield Diagnostic(ERROR, "deepspeed-config-invalid", f"DeepSpeed config: expected a JSON object at the top "
                         f"level but got a {type(data).__name__}", file=value, line=1, column=1)


def load_deepspeed_file(ctx: RuleContext) -> DeepSpeedFile | None:
    data = ctx.deepspeed_config()
    if data is None:
        return None
    value = ctx.raw("deepspeed")
    if isinstance(value, dict):  # an inline mapping: locate at the config's deepspeed key
        position = ctx.loaded.value_at("deepspeed")
        return DeepSpeedFile(position.file, data, {(): (position.line, position.column)})
    return DeepSpeedFile(value, data, _positions(ctx.deepspeed_path()))


def _positions(path: Path | None) -> dict[tuple, tuple[int | None, int | None]]:
    """Key positions from the YAML composer (JSON is YAML); empty when it disagrees (e.g. tabs) or there is no file."""
    positions: dict[tuple, tuple[int | None, int | None]] = {}
    if path is None:
        return positions
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, ValueError, yaml.YAMLError, RecursionError):
        return positions
    _walk(node, (), positions)
    return positions


def _walk(node: Any, prefix: tuple, positions: dict[tuple, tuple[int | None, int | None]]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key_path = prefix + (key_node.value,)
            positions[key_path] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            _walk(value_node, key_path, positions)


def optimizer_blocks(ctx: RuleContext) -> Iterator[Diagnostic]:
    """LF's presets have none; with one, DeepSpeed builds the optimizer/scheduler, not the config (#2546, #3224)."""
    ds = load_deepspeed_file(ctx)
    if ds is None:
        return
    for block, replaces in (("optimizer", "optim, learning_rate, adam_* and weight_decay"),
                            ("scheduler", "lr_scheduler_type and warmup")):
        if block in ds.data:
            yield ds.at(WARNING, f"deepspeed-{block}-block",
                        f"the DeepSpeed config has a '{block}' block: DeepSpeed builds it instead of the config's "
                        f"{replaces}, and trl copies it into the reference model's engine (LLaMA-Factory #2546 "
                        "'max() arg is an empty sequence', #3224)", (block,),
                        f"remove the '{block}' block and set these in the YAML (LLaMA-Factory's presets have none)")


def _hf_values(ctx: RuleContext) -> list[tuple[str, str, Any]]:
    """(DeepSpeed key, TrainingArguments name, value) pairs transformers checks in trainer_config_process."""
    pairs = [("gradient_accumulation_steps", "gradient_accumulation_steps", "gradient_accumulation_steps"),
             ("gradient_clipping", "max_grad_norm", "max_grad_norm"),
             ("optimizer.params.lr", "learning_rate", "learning_rate"),
             ("optimizer.params.eps", "adam_epsilon", "adam_epsilon"),
             ("optimizer.params.weight_decay", "weight_decay", "weight_decay"),
             ("scheduler.params.warmup_max_lr", "learning_rate", "learning_rate")]
    if not ctx.flag("auto_find_batch_size"):
        micro = "per_device_train_batch_size"
        pairs.insert(0, ("train_micro_batch_size_per_gpu", micro, micro))
    values: list[tuple[str, str, Any]] = [(ds_key, label, ctx.number(key)) for ds_key, label, key in pairs]
    betas = [ctx.number("adam_beta1"), ctx.number("adam_beta2")]
    values.append(("optimizer.params.betas", "adam_beta1+adam_beta2", betas))
    values.append(("fp16.enabled", "fp16|fp16_full_eval", ctx.flag("fp16") or ctx.flag("fp16_full_eval")))
    values.append(("bf16.enabled", "bf16|bf16_full_eval", ctx.flag("bf16") or ctx.flag("bf16_full_eval")))
    return values


def _ds_value(data: dict, dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def value_mismatches(ctx: RuleContext) -> Iterator[Diagnostic]:
    ds = load_deepspeed_file(ctx)
    if ds is None:
        return
    for ds_key, label, hf_value in _hf_values(ctx):
        ds_value = _ds_value(ds.data, ds_key)
        if ds_value is None or ds_value == "auto" or ds_value == hf_value:
            continue
        yield ds.at(ERROR, "deepspeed-value-mismatch",
                    f"DeepSpeed {ds_key} is {json.dumps(ds_value)} but the config's {label} is {json.dumps(hf_value)}",
                    tuple(ds_key.split(".")),
                    f'set it to "auto" (the presets do) or make them agree; transformers stops with "{MISMATCH}: '
                    f'- ds {ds_key}={ds_value} vs hf {label}={hf_value}"')
    yield from _train_batch_size(ctx, ds)


def _train_batch_size(ctx: RuleContext, ds: DeepSpeedFile) -> Iterator[Diagnostic]:
    """train_batch_size = world size x micro batch x accumulation: validate cannot know the world size."""
    total = ds.data.get("train_batch_size")
    micro, accumulation = ctx.number("per_device_train_batch_size"), ctx.number("gradient_accumulation_steps")
    if not isinstance(total, int) or isinstance(total, bool) or not micro or not accumulation:
        return
    if ctx.flag("auto_find_batch_size"):
        return
    per_rank = micro * accumulation
    if total % per_rank:
        yield ds.at(ERROR, "deepspeed-value-mismatch",
                    f"DeepSpeed train_batch_size is {total}, not a multiple of per_device_train_batch_size x "
                    f"gradient_accumulation_steps = {shown(per_rank)}, so no number of processes matches it",
                    ("train_batch_size",), f'set it to "auto"; transformers stops with "{MISMATCH}"')
    else:
        yield ds.at(NOTE, "deepspeed-fixed-world-size",
                    f"DeepSpeed train_batch_size {total} = {total // per_rank} processes x {shown(per_rank)}: "
                    f"launching any other number of processes fails with \"{MISMATCH}\"",
                    ("train_batch_size",), 'set it to "auto" to follow the launch')


def reference_replica(ctx: RuleContext) -> Iterator[Diagnostic]:
    """trl's prepare_deepspeed keeps stage 3 but drops stages 0/1/2 to stage 0 for the reference
    (docs/upstream-notes.md#reference-model)."""
    stage = ctx.zero_stage()
    separate = ctx.is_set("ref_model") or ctx.finetuning_type != "lora"
    if stage is None or stage == 3 or not ctx.builds_reference() or not separate:
        return
    yield ctx.note("reference-full-replica",
                   f"DeepSpeed ZeRO-{stage}: trl runs the reference model on stage 0, a full replica on every GPU "
                   f"(only ZeRO-3 shards it)", "deepspeed",
                   "budget a whole model copy per GPU for the reference, or use ZeRO-3, or LoRA (whose reference is "
                   "the policy with adapters disabled)")


def kto_zero2(ctx: RuleContext) -> Iterator[Diagnostic]:
    if ctx.stage == "kto" and ctx.zero_stage() == 2:
        yield ctx.note("kto-zero2", "KTO with DeepSpeed ZeRO-2 has been reported to train with a loss stuck at 0 "
                       "(LLaMA-Factory #8184; fine on ZeRO-3)", "deepspeed",
                       "watch the first steps' loss and rewards, or use a ZeRO-3 config")


RULES = (deepspeed_file, optimizer_blocks, value_mismatches, reference_replica, kto_zero2)
