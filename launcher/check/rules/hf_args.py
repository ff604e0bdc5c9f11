"""transformers' TrainingArguments checks (`_validate_args`), and the settings LLaMA-Factory accepts and then fails
on once training starts: a data loader, the `datasets` map or the checkpoint loader refuses them 8-23 s in.

Found systematically: tests/check/test_lf_differential.py runs LLaMA-Factory's `get_train_args` (its parser,
every `__post_init__` and TrainingArguments') and the library calls that receive these values later over
generated values, and checks that whatever they refuse, validate refuses. Single-key ranges are in the schema
(scripts/generate_schema.py); what depends on two keys or on a strategy is here.
Sources: transformers 5.x training_args.py `_validate_args` and `__post_init__`, trainer.py `_load_from_checkpoint`.
"""

from __future__ import annotations

from collections.abc import Iterator

from launcher.check.diagnostics import Diagnostic
from launcher.check.rules.context import RuleContext, lf_says
from launcher.check.schema_words import shown

STEP_KINDS = ("logging", "eval", "save")


def transformers_says(message: str) -> str:
    return f'transformers stops with "{message}"'


def _strategy(ctx: RuleContext, kind: str) -> str | None:
    """logging_strategy and save_strategy default to steps, eval_strategy to no."""
    default = "no" if kind == "eval" else "steps"
    return ctx.text(f"{kind}_strategy") or default


def _steps(ctx: RuleContext, kind: str) -> float | None:
    default = None if kind == "eval" else 500
    value = ctx.number(f"{kind}_steps")
    return default if value is None else value


def steps_are_whole_numbers_above_one(ctx: RuleContext) -> Iterator[Diagnostic]:
    """A value below 1 is a share of the total steps; above 1 it counts steps and must be whole."""
    for kind in STEP_KINDS:
        value = _steps(ctx, kind)
        if _strategy(ctx, kind) == "steps" and value is not None and value > 1 and value != int(value):
            yield ctx.error("steps-not-whole", f"{kind}_steps: {shown(value)} is above 1 but not a whole number of "
                            "steps", f"{kind}_steps", f"write {int(value)} steps, or a fraction below 1 for a share of "
                            "the total steps; " + transformers_says(
                                f"--{kind}_steps must be an integer if bigger than 1: {value}"))


def steps_above_zero(ctx: RuleContext) -> Iterator[Diagnostic]:
    """logging_steps 0 stops transformers; save_steps 0 never saves; a negative count means nothing."""
    for kind in STEP_KINDS:
        value = _steps(ctx, kind)
        if _strategy(ctx, kind) != "steps" or value is None or value > 0 or (kind == "eval" and value == 0):
            continue  # eval_steps 0 falls back to logging_steps (training_args.py __post_init__)
        key = f"{kind}_steps"
        if kind == "logging" and value == 0:
            yield ctx.error("logging-steps-zero", "logging_steps: 0 with logging_strategy 'steps' never logs", key,
                            "set logging_steps to a number of steps (e.g. 10), or logging_strategy: epoch or no; "
                            + transformers_says("logging strategy IntervalStrategy.STEPS requires non-zero "
                                                "--logging_steps"))
        elif kind == "save" and value == 0:
            yield ctx.warning("save-steps-zero", "save_steps: 0 with save_strategy 'steps' never saves a checkpoint",
                              key, "set save_steps to a number of steps, or save_strategy: 'no' to say so")
        else:
            yield ctx.error("steps-negative", f"{key}: expected a number above 0 but got {shown(value)}", key,
                            "a whole number of steps, or a fraction below 1 for a share of the total steps")


def fp16_and_bf16(ctx: RuleContext) -> Iterator[Diagnostic]:
    if ctx.flag("fp16") and ctx.flag("bf16"):
        yield ctx.error("fp16-and-bf16", "fp16: true and bf16: true are both set; choose one", "fp16",
                        "prefer bf16 for DPO (fp16 overflows into NaN rewards, LLaMA-Factory #2819); "
                        + transformers_says("At most one of fp16 and bf16 can be True, but not both"))
    if ctx.flag("fp16_full_eval") and ctx.flag("bf16_full_eval"):
        yield ctx.error("fp16-and-bf16", "fp16_full_eval: true and bf16_full_eval: true are both set; choose one",
                        "fp16_full_eval",
                        transformers_says("At most one of fp16 and bf16 can be True for full eval, but not both"))


def best_model_needs_matching_strategies(ctx: RuleContext) -> Iterator[Diagnostic]:
    if not ctx.flag("load_best_model_at_end") or ctx.text("save_strategy") == "best":
        return
    evaluate, save = _strategy(ctx, "eval"), _strategy(ctx, "save")
    if evaluate != save:
        yield ctx.error("best-model-strategy-mismatch",
                        f"load_best_model_at_end: true needs save_strategy equal to eval_strategy but got "
                        f"save_strategy {shown(save)} and eval_strategy {shown(evaluate)}", "load_best_model_at_end",
                        'set both to steps (or epoch); transformers stops with "--load_best_model_at_end requires '
                        'the save and eval strategy to match"')
    elif evaluate == "steps":
        yield from _save_steps_multiple_of_eval_steps(ctx)


def _save_steps_multiple_of_eval_steps(ctx: RuleContext) -> Iterator[Diagnostic]:
    """The best checkpoint must be saved at an evaluation step; the same arithmetic as `_validate_args`, where
    eval_steps falls back to logging_steps when unset."""
    save, evaluate = _steps(ctx, "save"), _steps(ctx, "eval") or _steps(ctx, "logging")
    if not save or not evaluate or save <= 0 or evaluate <= 0 or save % evaluate == 0:
        return  # a value of 0 or below is reported by steps_above_zero
    save, evaluate = _as_transformers_keeps(save), _as_transformers_keeps(evaluate)
    start = "--load_best_model_at_end requires the saving steps to be a"
    if save >= 1 and evaluate >= 1:
        says = f"{start} round multiple of the evaluation steps, but found {save}, which is not a round multiple of " \
               f"{evaluate}."
    elif save >= 1 or evaluate >= 1:
        says = f"{start} multiple of the evaluation steps, which cannot get guaranteed when mixing ratio and " \
               f"absolute steps for save_steps {save} and eval_steps {evaluate}."
    elif (save * 1_000_000) % (evaluate * 1_000_000) != 0:
        says = f"{start} multiple of the evaluation steps, but found {save}, which is not a multiple of {evaluate}."
    else:
        return
    eval_key = "eval_steps" if ctx.is_set("eval_steps") else "logging_steps (eval_steps is unset)"
    yield ctx.error("best-model-steps-not-multiple",
                    f"load_best_model_at_end: true needs save_steps to be a multiple of eval_steps, but save_steps "
                    f"is {shown(save)} and {eval_key} is {shown(evaluate)}",
                    ctx.first_written("save_steps", "eval_steps", "load_best_model_at_end"),
                    "make save_steps a multiple of eval_steps (both step counts, or both fractions); "
                    + transformers_says(says))


def _as_transformers_keeps(steps: float) -> float:
    """transformers turns a step count above 1 into an int before comparing (`_validate_args`)."""
    return int(steps) if steps > 1 else steps


def scheduler_needs_eval(ctx: RuleContext) -> Iterator[Diagnostic]:
    scheduler = ctx.text("lr_scheduler_type")
    if scheduler in ("reduce_lr_on_plateau", "greedy") and _strategy(ctx, "eval") == "no":
        yield ctx.error("scheduler-needs-eval", f"lr_scheduler_type: {shown(scheduler)} needs an eval_strategy",
                        "lr_scheduler_type", "set eval_strategy: steps and eval data; "
                        + transformers_says(f"lr_scheduler_type {scheduler} requires an eval strategy"))


def prefetch_needs_workers(ctx: RuleContext) -> Iterator[Diagnostic]:
    if ctx.is_set("dataloader_prefetch_factor") and ctx.number("dataloader_num_workers") in (0, None):
        yield ctx.error("prefetch-without-workers",
                        "dataloader_prefetch_factor is set but dataloader_num_workers is 0 (batches load in the main "
                        "process, with nothing to prefetch)", "dataloader_prefetch_factor",
                        "set dataloader_num_workers above 0, or remove dataloader_prefetch_factor; "
                        + transformers_says("--dataloader_prefetch_factor can only be set when data is loaded in a "
                                            "different process, i.e. when --dataloader_num_workers > 0."))


def export_quantization_needs_dataset(ctx: RuleContext) -> Iterator[Diagnostic]:
    """ModelArguments.__post_init__ (hparams/model_args.py): an export setting, refused even in training."""
    if ctx.is_set("export_quantization_bit") and not ctx.is_set("export_quantization_dataset"):
        yield ctx.error("export-quantization-without-dataset",
                        "export_quantization_bit is an export setting (llamafactory-cli export) and needs "
                        "export_quantization_dataset", "export_quantization_bit",
                        "remove export_quantization_bit from a training config; "
                        + lf_says("Quantization dataset is necessary for exporting."))


RULES = (steps_are_whole_numbers_above_one, steps_above_zero, fp16_and_bf16, best_model_needs_matching_strategies,
         scheduler_needs_eval, prefetch_needs_workers, export_quantization_needs_dataset)
