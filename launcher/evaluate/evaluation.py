"""`dpo-launch eval RUN_DIR`: preference metrics on held-out pairs, win rate against a baseline, a gate.

Each part runs when it can: the held-out metrics when the run has an `eval_dataset` or --pairs is given, the
win rate when --prompts and --judge are given. A gate naming a metric that no part computes is a usage error
before anything runs. Results: `<output_dir>/dpo-launch/eval/summary.json` (what `report` shows), the parts'
folders beside it, and TensorBoard scalars (launcher.evaluate.results).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launcher.check.diagnostics import Diagnostic, has_errors
from launcher.errors import UsageError, UserError
from launcher.evaluate.gate import Check, Condition, check_gate, gate_passed, needs
from launcher.evaluate.models import Run
from launcher.evaluate.preference import (
    check_config,
    count_pairs,
    evaluation_config,
    held_out,
    run_preference,
    write_config,
)
from launcher.evaluate.results import write_scalars, write_summary
from launcher.evaluate.winrate import WinRateRequest, win_rate_part
from launcher.layout import eval_dir
from launcher.lf.settings import setting


class HeldOutInvalid(UserError):
    """The held-out evaluation's config or pairs have errors; `diagnostics` locates them."""

    def __init__(self, message: str, diagnostics: list[Diagnostic]):
        super().__init__(message)
        self.diagnostics = diagnostics


@dataclass
class EvalRequest:
    run_dir: Path
    pairs: str | None = None
    gate: list[Condition] = field(default_factory=list)
    win_rate: WinRateRequest | None = None
    gate_text: str | None = None


@dataclass
class EvalOutcome:
    summary: dict
    checks: list[Check]
    notes: list[str]

    @property
    def passed(self) -> bool:
        return gate_passed(self.checks)


def evaluate(request: EvalRequest) -> EvalOutcome:
    """Run the parts that apply, write the results, check the gate."""
    run = Run.load(request.run_dir)
    folder = eval_dir(run.output_dir)
    wanted = needs(request.gate)
    notes: list[str] = []
    located = held_out(run, request.pairs, folder / "preference")
    if "preference" in wanted and located is None:
        raise UsageError(f"--gate uses held-out metrics but {run.output_dir} has no eval_dataset: pass --pairs "
                         "DATASET (a dataset name of the run's dataset_dir, or a ShareGPT ranking file)")
    if "win_rate" in wanted and request.win_rate is None:
        raise UsageError("--gate uses win_rate: pass --prompts FILE and --judge JUDGE to measure it")
    summary: dict[str, Any] = {"run": str(run.output_dir), "step": run.final_step(), "stage": run.stage,
                               "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "preference": None,
                               "win_rate": None, "metrics": {}}
    if located is None:
        notes.append("held-out metrics skipped: the run has no eval_dataset (pass --pairs DATASET)")
    else:
        summary["preference"] = preference_part(run, *located, folder / "preference")
        if request.pairs and located[0] != [request.pairs]:  # a file: name it as the user did
            summary["preference"]["pairs"] = [request.pairs]
        summary["metrics"].update(summary["preference"]["metrics"])
    if request.win_rate is not None:
        summary["win_rate"] = win_rate_part(run, request.win_rate, folder / "winrate")
        summary["metrics"].update(summary["win_rate"]["metrics"])
    checks = check_gate(request.gate, summary["metrics"])
    summary["gate"] = gate_record(request, checks) if request.gate else None
    write_summary(run.output_dir, summary)
    summary["tensorboard"] = str(write_scalars(run.output_dir, summary["metrics"], summary["step"]))
    return EvalOutcome(summary, checks, notes)


def preference_part(run: Run, names: list[str], dataset_dir: str, folder: Path) -> dict:
    config = evaluation_config(run, names, dataset_dir, folder)
    path = write_config(config, folder)
    validation = check_config(path)
    if has_errors(validation.diagnostics):
        raise HeldOutInvalid(f"the held-out evaluation ({path}) has errors; nothing was evaluated",
                             validation.diagnostics)
    result = run_preference(config, folder)
    reference = config.get("ref_model")
    return {"pairs": names, "count": count_pairs(validation), "config": str(path),
            "policy": config["model_name_or_path"], "policy_adapters": config.get("adapter_name_or_path"),
            "reference": reference, "reference_adapters": config.get("ref_model_adapters"),
            "loss": str(setting(run.config, "pref_loss")) if run.stage == "dpo" else run.stage,
            "beta": setting(run.config, "pref_beta"), **result}


def gate_record(request: EvalRequest, checks: list[Check]) -> dict:
    return {"expression": request.gate_text or ",".join(str(c) for c in request.gate),
            "passed": gate_passed(checks),
            "checks": [{"condition": str(c.condition), "value": c.value, "passed": c.passed, "reason": c.reason}
                       for c in checks]}
