"""The cross-field checks of LLaMA-Factory 0.9.5's `get_train_args` and `_verify_model_args`
(docs/upstream-notes.md#argument-checks), and what its model loader refuses (attention implementations).

transformers' own TrainingArguments checks are in hf_args.py; checks that depend on the machine (bf16 support,
a distributed launch, packages) are notes in machine.py. Sources: llamafactory/hparams/parser.py
(`_verify_model_args`, `get_train_args`), model/adapter.py:157-176, model/model_utils/attention.py.
"""

from __future__ import annotations

from collections.abc import Iterator

from launcher.check.diagnostics import Diagnostic
from launcher.check.rules.context import RuleContext, lf_says
from launcher.check.schema_words import shown
from launcher.lf.settings import EPSILON

_SFT_ONLY = {
    "predict_with_generate": "`predict_with_generate` cannot be set as True except SFT.",
    "neat_packing": "`neat_packing` cannot be set as True except SFT.",
    "train_on_prompt": "`train_on_prompt` or `mask_history` cannot be set as True except SFT.",
    "mask_history": "`train_on_prompt` or `mask_history` cannot be set as True except SFT.",
}


def sft_only_options(ctx: RuleContext) -> Iterator[Diagnostic]:
    stage = ctx.stage
    if stage is None or stage == "sft":
        return
    for key, lf_message in _SFT_ONLY.items():
        if ctx.flag(key):
            yield ctx.error("sft-only-option", f"{key}: true applies only to stage: sft but stage is {shown(stage)}",
                            key, f"remove {key}; " + lf_says(lf_message))


def streaming_needs_max_steps(ctx: RuleContext) -> Iterator[Diagnostic]:
    if ctx.flag("streaming") and ctx.number("max_steps") == -1:
        yield ctx.error("streaming-needs-max-steps",
                        "streaming: true needs max_steps (a streamed dataset has no length to count epochs from)",
                        "streaming", "add max_steps: <number of optimizer steps>; "
                        + lf_says("Please specify `max_steps` in streaming mode."))


def train_needs_dataset(ctx: RuleContext) -> Iterator[Diagnostic]:
    if ctx.flag("do_train") and ctx.names("dataset") is None:
        yield ctx.error("train-without-dataset", "do_train: true but no dataset is set", "do_train",
                        "add dataset: <name in dataset_info.json>; " + lf_says("Please specify dataset for training."))


def eval_needs_eval_data(ctx: RuleContext) -> Iterator[Diagnostic]:
    """HF turns do_eval on for any eval_strategy but 'no' (training_args.py `__post_init__`)."""
    asks = [key for key in ("do_eval", "do_predict", "predict_with_generate") if ctx.flag(key)]
    if ctx.text("eval_strategy") not in (None, "no"):
        asks.append("eval_strategy")
    val_size = ctx.number("val_size")
    if asks and ctx.names("eval_dataset") is None and (val_size is None or val_size < EPSILON):
        yield ctx.error("eval-without-eval-data", f"{asks[0]} asks for evaluation but there is no evaluation data",
                        asks[0], "set eval_dataset, or val_size (a fraction of dataset, e.g. 0.05); "
                        + lf_says("Please make sure eval_dataset be provided or val_size >1e-6"))


def quantization_device_map_in_training(ctx: RuleContext) -> Iterator[Diagnostic]:
    if ctx.flag("do_train") and ctx.text("quantization_device_map") == "auto":
        yield ctx.error("quantization-device-map-in-training",
                        "quantization_device_map: 'auto' is for inference only, but do_train is true",
                        "quantization_device_map", "remove quantization_device_map; "
                        + lf_says("Cannot use device map for quantized models in training."))


def zero3_incompatible(ctx: RuleContext) -> Iterator[Diagnostic]:
    if not ctx.zero3():
        return
    checks = (
        ("pissa_init", "Please use scripts/pissa_init.py to initialize PiSSA in DeepSpeed ZeRO-3."),
        ("pure_bf16", "`pure_bf16` is incompatible with DeepSpeed ZeRO-3."),
        ("use_unsloth", "Unsloth is incompatible with DeepSpeed ZeRO-3."),
        ("use_kt", "KTransformers is incompatible with DeepSpeed ZeRO-3."),
    )
    for key, lf_message in checks:
        if ctx.flag(key):
            yield ctx.error("zero3-incompatible", f"{key}: true cannot be used with DeepSpeed ZeRO-3", key,
                            f"use a ZeRO-2 (or ZeRO-0) DeepSpeed config or remove {key}; " + lf_says(lf_message))


def galore_apollo_with_deepspeed(ctx: RuleContext) -> Iterator[Diagnostic]:
    if not ctx.is_set("deepspeed"):
        return
    for key in ("use_galore", "use_apollo"):
        if ctx.flag(key):
            yield ctx.error("galore-apollo-with-deepspeed", f"{key}: true cannot be used with deepspeed", key,
                            "remove deepspeed or " + key + "; "
                            + lf_says("GaLore and APOLLO are incompatible with DeepSpeed yet."))


def fp8_with_quantization(ctx: RuleContext) -> Iterator[Diagnostic]:
    if ctx.flag("fp8") and ctx.is_set("quantization_bit"):
        yield ctx.error("fp8-with-quantization",
                        f"fp8: true cannot be combined with quantization_bit: {shown(ctx.raw('quantization_bit'))}",
                        "fp8", "disable fp8 or quantization; "
                        + lf_says("FP8 training is not compatible with quantization. Please disable one of them."))


def infer_backend_huggingface(ctx: RuleContext) -> Iterator[Diagnostic]:
    backend = ctx.text("infer_backend")
    if backend is not None and backend != "huggingface":
        yield ctx.error("infer-backend-in-training",
                        f"infer_backend: expected 'huggingface' for training but got {shown(backend)}", "infer_backend",
                        "remove infer_backend; "
                        + lf_says("vLLM/SGLang backend is only available for API, CLI and Web."))


def adapter_needs_lora(ctx: RuleContext) -> Iterator[Diagnostic]:
    method = ctx.finetuning_type
    if ctx.is_set("adapter_name_or_path") and method is not None and method != "lora":
        yield ctx.error("adapter-needs-lora",
                        "adapter_name_or_path applies only to finetuning_type: lora but finetuning_type is "
                        + shown(method),
                        "adapter_name_or_path", "use finetuning_type: lora, or merge the adapter into the model first; "
                        + lf_says("Adapter is only valid for the LoRA method."))


def quantized_model_limits(ctx: RuleContext) -> Iterator[Diagnostic]:
    if not ctx.is_set("quantization_bit"):
        return
    method, adapters = ctx.finetuning_type, ctx.names("adapter_name_or_path")
    if method is not None and method not in ("lora", "oft"):
        yield ctx.error("quantization-needs-lora-or-oft",
                        "quantization_bit applies only to finetuning_type lora or oft but finetuning_type is "
                        + shown(method),
                        "quantization_bit", "use finetuning_type: lora (QLoRA) or remove quantization_bit; "
                        + lf_says("Quantization is only compatible with the LoRA or OFT method."))
    checks = (
        (ctx.flag("pissa_init"), "pissa_init",
         "Please use scripts/pissa_init.py to initialize PiSSA for a quantized model."),
        (ctx.flag("resize_vocab"), "resize_vocab", "Cannot resize embedding layers of a quantized model."),
        (adapters is not None and ctx.flag("create_new_adapter"), "create_new_adapter",
         "Cannot create new adapter upon a quantized model."),
        (adapters is not None and len(adapters) != 1, "adapter_name_or_path",
         "Quantized model only accepts a single adapter. Merge them first."),
    )
    for failed, key, lf_message in checks:
        if failed:
            yield ctx.error("quantized-model-limit",
                            f"{key} cannot be used on a quantized model (quantization_bit is set)", key,
                            lf_says(lf_message))


def zero3_single_adapter(ctx: RuleContext) -> Iterator[Diagnostic]:
    """Policy and reference adapters alike are loaded unmerged under ZeRO-3 (model/adapter.py:164)."""
    if not ctx.zero3():
        return
    for key in ("adapter_name_or_path", "ref_model_adapters"):
        adapters = ctx.names(key)
        if adapters is not None and len(adapters) > 1:
            yield ctx.error("zero3-multiple-adapters",
                            f"{key} lists {len(adapters)} adapters, but DeepSpeed ZeRO-3 loads only one",
                            key, "merge the adapters into the model first; "
                            + lf_says("Cannot use multiple adapters in DeepSpeed ZeRO-3."))


def dpo_eval_without_reference(ctx: RuleContext) -> Iterator[Diagnostic]:
    """LF's own warning (parser.py): without training the policy is its own reference, so rewards are 0."""
    if ctx.stage == "dpo" and ctx.uses_ref_model() and not ctx.flag("do_train") and not ctx.is_set("ref_model"):
        yield ctx.warning("eval-without-reference",
                          "do_train is not true and ref_model is not set: the policy is its own reference, so "
                          "evaluation reports no rewards", ctx.first_written("do_train", "stage"),
                          "set ref_model to the model to compare against (LLaMA-Factory warns \"Specify `ref_model` "
                          "for computing rewards at evaluation.\")")



def flash_attention_3_unsupported(ctx: RuleContext) -> Iterator[Diagnostic]:
    """LF 0.9.5's `configure_attn_implementation` (model/model_utils/attention.py) handles fa3 only for gpt-oss,
    which it switches to FlashAttention-3 by itself whatever flash_attn says; for every other model fa3 reaches its
    final `raise NotImplementedError` (fixed on LLaMA-Factory's main after the release)."""
    if ctx.text("flash_attn") == "fa3":
        yield ctx.error("flash-attn-3-unsupported",
                        "flash_attn: 'fa3' is not implemented in LLaMA-Factory 0.9.5: loading any model but gpt-oss "
                        'stops with "NotImplementedError: Unknown attention type: fa3"', "flash_attn",
                        "use flash_attn: fa2 (or auto); gpt-oss gets FlashAttention-3 by itself with auto")


RULES = (
    sft_only_options, streaming_needs_max_steps, train_needs_dataset, eval_needs_eval_data,
    quantization_device_map_in_training, zero3_incompatible, galore_apollo_with_deepspeed, fp8_with_quantization,
    infer_backend_huggingface, adapter_needs_lora, quantized_model_limits, zero3_single_adapter,
    dpo_eval_without_reference, flash_attention_3_unsupported,
)
