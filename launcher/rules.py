"""DPO/KTO rules on top of the schema: the cross-field checks JSON Schema cannot express, as code.

Each rule is a small function `rule(ctx) -> Iterator[Diagnostic]`, grouped by where its knowledge comes from:

- rules_lf_args:   LLaMA-Factory's argument `__post_init__` checks (REFERENCE.md §4.1)
- rules_lf_train:  `get_train_args` / `_verify_model_args` and transformers' TrainingArguments checks (§4.2)
- rules_advice:    what LLaMA-Factory lets through (silent sigmoid, ignored reference, TensorBoard) and advice
- rules_paths:     model/reference/adapter paths, trust_remote_code, paths outside the working tree
- rules_deepspeed: the DeepSpeed JSON (readable, no optimizer blocks, no mismatching hard-coded values)
- rules_machine:   machine-dependent checks, as notes (enforced by `dpo-launch train` where the job runs)

A rule whose inputs have the wrong type is skipped: the schema check reports the type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Iterator

from launcher import rules_advice, rules_deepspeed, rules_lf_args, rules_lf_train, rules_machine, rules_paths
from launcher.config import LoadedConfig
from launcher.diagnostics import Diagnostic
from launcher.rules_context import RuleContext, Skip

Rule = Callable[[RuleContext], Iterable[Diagnostic]]

RULES: tuple[Rule, ...] = (
    *rules_lf_args.RULES,
    *rules_lf_train.RULES,
    *rules_advice.RULES,
    *rules_paths.RULES,
    *rules_deepspeed.RULES,
    *rules_machine.RULES,
)


def check_rules(loaded: LoadedConfig, cwd: Path) -> list[Diagnostic]:
    """Every rule's diagnostics for `loaded`; relative paths resolve from `cwd`, as in LLaMA-Factory."""
    ctx = RuleContext(loaded, Path(cwd))
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
        except (StopIteration, Skip):
            return
