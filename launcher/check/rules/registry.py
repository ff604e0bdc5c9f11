"""DPO/KTO rules on top of the schema: the cross-field checks JSON Schema cannot express, as code.

Each rule is a small function `rule(ctx) -> Iterator[Diagnostic]`, grouped by where its knowledge comes from:

- lf_args:   LLaMA-Factory's argument `__post_init__` checks (hparams/*_args.py)
- lf_train:  `get_train_args` / `_verify_model_args` (hparams/parser.py) and LF's model loader (attention)
- hf_args:   transformers' TrainingArguments checks, and what LF accepts but a later library call refuses
- advice:    what LLaMA-Factory lets through (silent sigmoid, ignored reference, TensorBoard) and advice
- paths:     model/reference/adapter paths, an output_dir holding one of them, trust_remote_code, paths outside
             the working tree
- deepspeed: the DeepSpeed JSON (readable, no optimizer blocks, no mismatching hard-coded values)
- machine:   machine-dependent checks, as notes (enforced by `dpo-launch train` where the job runs)

A rule whose inputs have the wrong type is skipped: the schema check reports the type.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from launcher.check.config import LoadedConfig
from launcher.check.diagnostics import Diagnostic
from launcher.check.rules import advice, deepspeed, hf_args, lf_args, lf_train, machine, paths
from launcher.check.rules.context import NotApplicable, RuleContext

Rule = Callable[[RuleContext], Iterable[Diagnostic]]

RULES: tuple[Rule, ...] = (
    *lf_args.RULES,
    *lf_train.RULES,
    *hf_args.RULES,
    *advice.RULES,
    *paths.RULES,
    *deepspeed.RULES,
    *machine.RULES,
)


def check_rules(loaded: LoadedConfig, cwd: Path, launching: bool = False) -> list[Diagnostic]:
    """Every rule's diagnostics for `loaded`; relative paths resolve from `cwd`, as in LLaMA-Factory. `launching`:
    the config is about to run under `dpo-launch train` (RuleContext.launching)."""
    ctx = RuleContext(loaded, Path(cwd), launching=launching)
    found: list[Diagnostic] = []
    for rule in RULES:
        found.extend(_run(rule, ctx))
    return found


def _run(rule: Rule, ctx: RuleContext) -> Iterator[Diagnostic]:
    """A rule's diagnostics up to the point where it met an input of the wrong type (if it did)."""
    produced = iter(rule(ctx))
    while True:
        try:
            yield next(produced)
        except (StopIteration, NotApplicable):
            return
