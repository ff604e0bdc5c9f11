"""The cross-field checks LLaMA-Factory 0.9.5 makes in its argument `__post_init__`s
(docs/upstream-notes.md#argument-checks).

LF raises on the first one (after ~8 s of imports); here each is a rule, so all are reported at once. Every
diagnostic quotes LF's own message in its hint. Sources: hparams/finetuning_args.py:560-615,
hparams/data_args.py:147-189, hparams/model_args.py:347-351. A missing model_name_or_path (model_args.py:207,
"Please provide `model_name_or_path`.") is the schema's `required` error, not repeated here.
"""

from __future__ import annotations

from collections.abc import Iterator

from launcher.check.diagnostics import Diagnostic
from launcher.check.rules.context import RuleContext, lf_says
from launcher.check.schema_words import shown
from launcher.lf.settings import EPSILON


def label_smoothing_needs_sigmoid(ctx: RuleContext) -> Iterator[Diagnostic]:
    smoothing, loss = ctx.number("dpo_label_smoothing"), ctx.text("pref_loss")
    if ctx.stage == "dpo" and loss != "sigmoid" and smoothing is not None and smoothing > EPSILON:
        yield ctx.error(
            "label-smoothing-needs-sigmoid",
            f"dpo_label_smoothing: {shown(smoothing)} applies only to pref_loss: sigmoid, but pref_loss is "
            f"{shown(loss)}",
            "dpo_label_smoothing",
            "remove dpo_label_smoothing or use pref_loss: sigmoid; "
            + lf_says("`dpo_label_smoothing` is only valid for sigmoid loss function."))


def llama_pro_needs_freeze_or_lora(ctx: RuleContext) -> Iterator[Diagnostic]:
    if ctx.flag("use_llama_pro") and ctx.finetuning_type == "full":
        yield ctx.error(
            "llama-pro-needs-freeze-or-lora",
            "use_llama_pro: true needs finetuning_type freeze or lora but finetuning_type is 'full'",
            "use_llama_pro",
            "set finetuning_type: freeze or lora, or remove use_llama_pro; "
            + lf_says("`use_llama_pro` is only valid for Freeze or LoRA training."))


_OPTIMIZER_METHODS = ("use_galore", "use_apollo", "use_badam")


def lora_with_galore_apollo_badam(ctx: RuleContext) -> Iterator[Diagnostic]:
    if ctx.finetuning_type != "lora":
        return
    for key in _OPTIMIZER_METHODS:
        if ctx.flag(key):
            yield ctx.error(
                "lora-with-galore-apollo-badam",
                f"{key}: true cannot be combined with finetuning_type: lora (the default)",
                key,
                "use finetuning_type: full or freeze with GaLore/APOLLO/BAdam, or remove it; "
                + lf_says("Cannot use LoRA with GaLore, APOLLO or BAdam together."))


def galore_apollo_badam_together(ctx: RuleContext) -> Iterator[Diagnostic]:
    enabled = [key for key in _OPTIMIZER_METHODS if ctx.flag(key)]
    if len(enabled) > 1:
        yield ctx.error(
            "galore-apollo-badam-together",
            f"{' and '.join(enabled)} are all true, but only one of GaLore, APOLLO and BAdam can be used",
            enabled[1],
            "keep one of them; " + lf_says("Cannot use GaLore, APOLLO or BAdam together."))


def pissa_needs_reference_free_stage(ctx: RuleContext) -> Iterator[Diagnostic]:
    if ctx.flag("pissa_init") and (ctx.stage in ("ppo", "kto") or ctx.uses_ref_model()):
        yield ctx.error(
            "pissa-with-reference",
            f"pissa_init: true cannot be used with stage {shown(ctx.stage)} and pref_loss "
            f"{shown(ctx.text('pref_loss'))}: PiSSA is only allowed for reference-free losses (orpo, simpo)",
            "pissa_init",
            "remove pissa_init or use pref_loss: orpo/simpo; "
            + lf_says("Cannot use PiSSA for current training stage."))


_LORA_ONLY = {
    "loraplus_lr_ratio": "`loraplus_lr_ratio` is only valid for LoRA training.",
    "use_rslora": "`use_rslora` is only valid for LoRA training.",
    "use_dora": "`use_dora` is only valid for LoRA training.",
    "pissa_init": "`pissa_init` is only valid for LoRA training.",
}


def lora_only_options(ctx: RuleContext) -> Iterator[Diagnostic]:
    method = ctx.finetuning_type
    if method is None or method == "lora":
        return
    for key, lf_message in _LORA_ONLY.items():
        value = ctx.number(key) if key == "loraplus_lr_ratio" else ctx.flag(key)
        if value is not None and value is not False:
            yield ctx.error("lora-only-option",
                            f"{key} applies only to finetuning_type: lora but finetuning_type is {shown(method)}",
                            key, f"remove {key} or use finetuning_type: lora; " + lf_says(lf_message))


def val_size_needs_dataset_only(ctx: RuleContext) -> Iterator[Diagnostic]:
    val_size = ctx.number("val_size")
    if val_size is None or val_size <= EPSILON:
        return
    if ctx.names("dataset") is None:
        yield ctx.error("val-size-without-dataset",
                        f"val_size: {shown(val_size)} splits the training data, but no dataset is set", "val_size",
                        "set dataset or remove val_size; " + lf_says("Cannot specify `val_size` if `dataset` is None."))
    if ctx.names("eval_dataset") is not None:
        yield ctx.error("val-size-with-eval-dataset",
                        f"val_size: {shown(val_size)} and eval_dataset are both set; use one of them", "val_size",
                        "remove val_size to evaluate on eval_dataset, or remove eval_dataset; "
                        + lf_says("Cannot specify `val_size` if `eval_dataset` is not None."))


def interleave_probs_match_datasets(ctx: RuleContext) -> Iterator[Diagnostic]:
    probs = ctx.raw("interleave_probs")
    probs = ctx.names("interleave_probs") if isinstance(probs, str) else probs
    if probs is None:
        return
    if ctx.text("mix_strategy") == "concat":
        yield ctx.error("interleave-probs-with-concat",
                        "interleave_probs is set but mix_strategy is 'concat', which ignores it",
                        "interleave_probs",
                        "set mix_strategy: interleave_under (or interleave_over, interleave_once), or remove "
                        "interleave_probs; "
                        + lf_says("`interleave_probs` is only valid for interleaved mixing."))
        return
    if not isinstance(probs, list):
        return
    for key, lf_word in (("dataset", "dataset"), ("eval_dataset", "eval dataset")):
        names = ctx.names(key)
        if names is not None and len(names) != len(probs):
            yield ctx.error("interleave-probs-length",
                            f"interleave_probs has {len(probs)} values but {key} names {len(names)} datasets",
                            "interleave_probs", "give one probability per dataset, in the same order; "
                            + lf_says(f"The length of {lf_word} and interleave probs should be identical."))


def streaming_options(ctx: RuleContext) -> Iterator[Diagnostic]:
    if not ctx.flag("streaming"):
        return
    val_size = ctx.number("val_size")
    if val_size is not None and EPSILON < val_size < 1:
        yield ctx.error("streaming-val-size-fraction",
                        f"val_size: {shown(val_size)} is a fraction, but streaming needs a number of examples",
                        "val_size", "write val_size as an integer count, e.g. 500; "
                        + lf_says("Streaming mode should have an integer val size."))
    if ctx.is_set("max_samples"):
        yield ctx.error("streaming-max-samples", "max_samples cannot be combined with streaming: true",
                        "max_samples", "remove max_samples (use max_steps to bound a streamed run) or streaming; "
                        + lf_says("`max_samples` is incompatible with `streaming`."))


def mask_history_with_train_on_prompt(ctx: RuleContext) -> Iterator[Diagnostic]:
    if ctx.flag("mask_history") and ctx.flag("train_on_prompt"):
        yield ctx.error("mask-history-with-train-on-prompt",
                        "mask_history: true and train_on_prompt: true contradict each other", "mask_history",
                        "remove one of them; " + lf_says("`mask_history` is incompatible with `train_on_prompt`."))


def pixel_bounds(ctx: RuleContext) -> Iterator[Diagnostic]:
    for kind in ("image", "video"):
        high, low = ctx.number(f"{kind}_max_pixels"), ctx.number(f"{kind}_min_pixels")
        if high is not None and low is not None and high < low:
            key = ctx.first_written(f"{kind}_max_pixels", f"{kind}_min_pixels")
            yield ctx.error("pixels-max-below-min",
                            f"{kind}_max_pixels ({shown(high)}) is smaller than {kind}_min_pixels ({shown(low)})", key,
                            f"raise {kind}_max_pixels or lower {kind}_min_pixels; "
                            + lf_says(f"`{kind}_max_pixels` cannot be smaller than `{kind}_min_pixels`."))


RULES = (
    label_smoothing_needs_sigmoid, llama_pro_needs_freeze_or_lora, lora_with_galore_apollo_badam,
    galore_apollo_badam_together, pissa_needs_reference_free_stage, lora_only_options, val_size_needs_dataset_only,
    interleave_probs_match_datasets, streaming_options, mask_history_with_train_on_prompt, pixel_bounds,
)
