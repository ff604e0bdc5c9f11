"""`dpo-launch eval RUN_DIR`: held-out preference metrics (reward accuracy, margins, log-probs) by
LLaMA-Factory's own evaluation with the run's policy and reference; with --prompts and --judge, the win rate
against a baseline (wins, losses, ties, Wilson 95% interval, mean response lengths, examples); a quality gate
(`--gate "accuracy>=0.7,win_rate>=0.6"`, exit 6 when it fails; win_rate compares the interval's lower bound).
Results in <output_dir>/dpo-launch/eval/, TensorBoard (eval/...) and `dpo-launch report`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from launcher.check.diagnostics import render_text
from launcher.commands.generate import add_sampling_arguments, sampling_from
from launcher.commands.judging import add_judge_arguments, judge_options
from launcher.errors import EXIT_GATE_FAILED, EXIT_OK, EXIT_USER_ERROR, UsageError
from launcher.evaluate.evaluation import EvalOutcome, EvalRequest, HeldOutInvalid, evaluate
from launcher.evaluate.gate import parse_gate
from launcher.evaluate.winrate import WinRateRequest


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="held-out preference metrics, win rate, and a quality gate",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (the config's output_dir)")
    parser.add_argument("--pairs", metavar="DATASET",
                        help="held-out pairs: a dataset name of the run's dataset_dir, or a ShareGPT ranking file "
                             "(default: the run's eval_dataset)")
    parser.add_argument("--gate", metavar="CONDITIONS",
                        help='e.g. "accuracy>=0.7,win_rate>=0.6"; win_rate compares the lower bound of its Wilson '
                             "95%% interval; exit 6 when a condition fails")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    group = parser.add_argument_group("win rate", "the run's model against a baseline on --prompts, judged")
    group.add_argument("--prompts", metavar="FILE", help="prompts (the formats `generate` reads)")
    group.add_argument("--baseline", metavar="base|RUN_DIR|MODEL",
                       help="what the run's model is compared with (default: base, the model the run started from)")
    group.add_argument("--limit", type=int, metavar="N", help="only the first N prompts")
    group.add_argument("--examples", type=int, default=5, metavar="N", help="example pairs kept (default 5)")
    add_judge_arguments(parser, required=False)
    add_sampling_arguments(parser, n=False)
    parser.set_defaults(handler=run, temperature=0.0)


def run(run_dir: str, pairs: str | None, gate: str | None, format: str, prompts: str | None,
        baseline: str | None, limit: int | None, examples: int, **flags: Any) -> int:
    options = judge_options(flags)
    if (prompts is None) != (options is None):
        raise UsageError("the win rate needs both --prompts FILE and --judge JUDGE")
    win_rate = None
    if prompts is not None and options is not None:
        backend, data_parallel = flags.pop("backend"), flags.pop("data_parallel")
        win_rate = WinRateRequest(Path(prompts).absolute(), options, baseline, sampling_from(flags), limit,
                                  backend, data_parallel, examples)
    request = EvalRequest(run_dir=Path(run_dir), pairs=pairs, gate=parse_gate(gate) if gate else [],
                          win_rate=win_rate, gate_text=gate)
    try:
        outcome = evaluate(request)
    except HeldOutInvalid as exc:
        render_text(exc.diagnostics, sys.stdout)
        print(f"dpo-launch eval: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    if format == "json":
        print(json.dumps(outcome.summary, indent=2, ensure_ascii=False))
    else:
        print("\n".join(render(outcome)))
    if not outcome.passed:
        failed = [c.reason for c in outcome.checks if not c.passed]
        print(f"dpo-launch eval: gate failed: {'; '.join(failed)}", file=sys.stderr)
        return EXIT_GATE_FAILED
    return EXIT_OK


def render(outcome: EvalOutcome) -> list[str]:
    summary = outcome.summary
    lines = [f"dpo-launch eval: {summary['run']} (step {summary['step']})"]
    lines += render_preference(summary["preference"]) if summary["preference"] else []
    lines += render_win_rate(summary["win_rate"]) if summary["win_rate"] else []
    lines += [f"note: {note}" for note in outcome.notes]
    if summary["gate"]:
        verdict = "passed" if summary["gate"]["passed"] else "FAILED"
        lines.append(f"gate {summary['gate']['expression']}: {verdict}")
        lines += [f"  {check['reason']}" for check in summary["gate"]["checks"]]
    lines.append(f"results: {summary['run']}/dpo-launch/eval/summary.json; TensorBoard: {summary['tensorboard']}")
    return lines


def render_preference(part: dict) -> list[str]:
    m = part["metrics"]
    count = f"{part['count']} pairs" if part["count"] is not None else "pairs"
    reference = part["reference"] or "none (reference-free loss)"
    lines = [f"held-out {', '.join(part['pairs'])} ({count}), LLaMA-Factory's evaluation, {part['loss']} "
             f"beta {part['beta']:g}:",
             f"  policy     {part['policy']}" + (f" + {part['policy_adapters']}" if part["policy_adapters"] else ""),
             f"  reference  {reference}" + (f" + {part['reference_adapters']}" if part["reference_adapters"] else "")]
    rows = [("reward accuracy", "accuracy"), ("reward margin", "margin"), ("chosen reward", "chosen_reward"),
            ("rejected reward", "rejected_reward"), ("chosen log-prob", "chosen_logps"),
            ("rejected log-prob", "rejected_logps"), ("loss", "loss")]
    lines += [f"  {label:<18} {m[key]:.4f}" for label, key in rows if isinstance(m.get(key), (int, float))]
    return lines


def render_win_rate(part: dict) -> list[str]:
    c, length = part["counts"], part["mean_length"]
    rate = "n/a (no decided pairs)" if c["win_rate"] is None else \
        f"{c['win_rate']:.3f}, Wilson 95% [{c['wilson95_low']:.3f}, {c['wilson95_high']:.3f}]; a gate compares " \
        f"{c['wilson95_low']:.3f}"
    return [f"win rate against {part['baseline']} on {part['count']} prompts, judged by {part['judge']}:",
            f"  {c['wins']} wins, {c['losses']} losses, {c['ties']} ties ({c['order_disagreements']} from the two "
            f"orders disagreeing), {c['invalid']} invalid, {c['skipped']} skipped",
            f"  win rate {rate}",
            f"  mean response length: policy {_tokens(length['policy'])}, baseline {_tokens(length['baseline'])}",
            f"  {len(part['examples'])} example pairs in summary.json; every verdict in {part['verdicts']}"]


def _tokens(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} tokens"
