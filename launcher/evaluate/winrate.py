"""Win rate of a run's model against a baseline on --prompts, judged (part of `dpo-launch eval`).

Both models answer every prompt once through `generate` (same sampling settings; greedy with --temperature 0),
into files named by what was generated, so a rerun, or a later round of `dpo-launch loop` whose baseline is
this model, reuses them. The judge compares policy (a) and baseline (b) per prompt; wins, losses and ties are
counted from the policy's side, with invalid and skipped verdicts counted apart. The baseline is `base` (the
model the run started from, the default), another run directory, or a model.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from launcher.evaluate.generation import Generation, Sampling, generate_all, read_candidates
from launcher.evaluate.judges import JudgeOptions, make_judge
from launcher.evaluate.judging import INVALID, SKIP, TIE, A, B, Item, Verdict
from launcher.evaluate.models import ModelSpec, Run, model_source
from launcher.evaluate.pairs import write_jsonl
from launcher.evaluate.prompts import Prompt, read_prompts
from launcher.evaluate.stats import LOSS, WIN, mean, win_rate

OUTCOME = {A: WIN, B: LOSS, TIE: "tie", INVALID: "invalid", SKIP: "skip"}


@dataclass
class WinRateRequest:
    prompts: Path
    judge: JudgeOptions
    baseline: str | None = None  # base | RUN_DIR | MODEL
    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.0))
    limit: int | None = None
    backend: str = "auto"
    data_parallel: int | None = None
    examples: int = 5
    generations: Path | None = None  # where the generations go (default: the evaluation's folder)


def baseline_model(run: Run, baseline: str | None) -> ModelSpec:
    if baseline in (None, "base"):
        return run.base()
    spec = model_source(str(baseline))
    return spec if spec.template or not run.config.get("template") else \
        ModelSpec(spec.model, spec.adapters, spec.finetuning_type, run.config.get("template"), spec.extra)


def generations(models: dict[str, ModelSpec], prompts: list[Prompt], request: WinRateRequest,
                folder: Path) -> dict[str, dict]:
    """side -> (id -> candidates record) of each model on the prompts (generated now, or found complete)."""
    jobs = {}
    for side, model in models.items():
        digest = hashlib.sha256(json.dumps([model.to_dict(), request.sampling.__dict__, str(request.prompts),
                                            len(prompts)], sort_keys=True).encode()).hexdigest()[:12]
        jobs[side] = Generation(model, prompts, request.prompts, folder / f"{digest}.jsonl", request.sampling,
                                request.backend, request.data_parallel)
        print(f"dpo-launch eval: {side}: {model.describe()} on {len(prompts)} prompts", file=sys.stderr, flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    unique = list({job.out: job for job in jobs.values()}.values())  # the same model twice is generated once
    generate_all(unique)
    return {side: {str(r["id"]): r | {"file": str(job.out)} for r in read_candidates(job.out)}
            for side, job in jobs.items()}


def win_rate_part(run: Run, request: WinRateRequest, folder: Path) -> dict:
    policy, baseline = run.policy(), baseline_model(run, request.baseline)
    prompts = read_prompts(request.prompts, request.limit)
    sides = generations({"policy": policy, "baseline": baseline}, prompts, request,
                        request.generations or folder / "generations")
    ours, theirs = sides["policy"], sides["baseline"]
    items = [Item(p.id, p.messages, p.system, ours[p.id]["responses"][0], theirs[p.id]["responses"][0])
             for p in prompts]
    # a person's verdicts belong to these two generations: new generations, new page
    stems = "-".join(Path(records[prompts[0].id]["file"]).stem for records in (ours, theirs))
    log = folder / f"human-verdicts-{stems}.jsonl"
    judge = make_judge(request.judge, folder, log, run.config.get("template"))
    verdicts = judge.compare(items)
    write_jsonl(folder / "verdicts.jsonl", [v.to_dict() for v in verdicts])
    counts = win_rate([OUTCOME[v.winner] for v in verdicts],
                      sum(1 for v in verdicts if v.detail.get("order_disagreement")))
    lengths = {side: mean(sum(r["tokens"][:1]) for r in records.values())
               for side, records in (("policy", ours), ("baseline", theirs))}
    chars = {side: mean(len(item.a if side == "policy" else item.b) for item in items)
             for side in ("policy", "baseline")}
    low, high = counts.interval
    return {"prompts": str(request.prompts), "count": len(prompts), "judge": judge.name,
            "policy": policy.describe(), "baseline": baseline.describe(), "counts": counts.to_dict(),
            "mean_length": lengths, "mean_chars": chars, "judge_stats": getattr(judge, "stats", None),
            "examples": examples(items, verdicts, request.examples), "verdicts": str(folder / "verdicts.jsonl"),
            "metrics": {"win_rate": low if counts.n else None, "win_rate_point": counts.rate,
                        "win_rate_high": high if counts.n else None, "length_policy": lengths["policy"],
                        "length_baseline": lengths["baseline"]}}


def examples(items: list[Item], verdicts: list[Verdict], count: int) -> list[dict]:
    """Up to `count` pairs, taking wins, losses and ties in turn so each kind is seen."""
    by_kind: dict[str, list[dict]] = {}
    for item, verdict in zip(items, verdicts, strict=True):
        by_kind.setdefault(OUTCOME[verdict.winner], []).append(
            {"id": item.key, "prompt": item.question, "policy": item.a, "baseline": item.b,
             "verdict": OUTCOME[verdict.winner]})
    chosen: list[dict] = []
    kinds = Counter({kind: len(entries) for kind, entries in by_kind.items()})
    while len(chosen) < count and any(kinds.values()):
        for kind in ("win", "loss", "tie", "invalid", "skip"):
            if kinds[kind] and len(chosen) < count:
                chosen.append(by_kind[kind][len(by_kind[kind]) - kinds[kind]])
                kinds[kind] -= 1
    return chosen
