"""`dpo-launch loop LOOP.yaml`: rounds of DPO/KTO training, each starting from the previous round's model.

Round k, in `<output_dir>/round-k/`, runs these steps in order, each recorded in loop.json once finished
(launcher.evaluate.loop_state), so a rerun continues at the first unfinished step and never repeats a finished one:

1. online rounds only: `generate` (candidates.jsonl: the round's starting model answers the round's prompts, K
   samples each, through `dpo-launch generate`'s code) and `pairs` (data/pairs.jsonl: the judge's best vs worst,
   registered in data/dataset_info.json beside the base config's datasets);
2. `config`: config.yaml, a plain LLaMA-Factory config (it runs unchanged under `llamafactory-cli train`): the
   round's base config with its `set` changes, model_name_or_path = the starting model, output_dir = round-k/run.
   From round 2 on, adapter_name_or_path, ref_model and ref_model_adapters are dropped: the previous round's
   model is the new base, and therefore the reference (a frozen copy for full fine-tuning, the adapter-disabled
   model for LoRA);
3. `train`: validate and train through `launcher.run.train.start_run`, the code behind `dpo-launch train`
   (in this process, so the run is owned and supervised exactly as `train` owns it: signals reach the ranks,
   its exit code passes through; a rerun resumes from the last complete checkpoint or starts the round over);
4. `eval`: `dpo-launch eval`'s code on round-k/run: held-out metrics and the win rate against the round's
   starting model; then the gate (from the stored metrics): a failure stops the loop with exit 6 and the reason;
5. LoRA rounds: `merge`: LLaMA-Factory's export merges the run's adapter (and the adapters under it) into the
   base, in round-k/merged: the full model round k+1 starts from.

At the end (and at a failed gate) loop.md holds a table of every round and loop.png plots them.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from launcher.atomic import write_text_atomic
from launcher.check.diagnostics import render_text
from launcher.check.validation import validate
from launcher.errors import EXIT_GATE_FAILED, EXIT_OK, UserError
from launcher.evaluate.evaluation import EvalRequest, evaluate
from launcher.evaluate.gate import check_gate, gate_passed, needs
from launcher.evaluate.generation import Generation, generate, read_candidates
from launcher.evaluate.judges import make_judge
from launcher.evaluate.loop_report import table_lines, write_report
from launcher.evaluate.loop_spec import LOOP_OWNED, LoopSpec, Round
from launcher.evaluate.loop_state import LoopState
from launcher.evaluate.models import ModelSpec, Run, model_source
from launcher.evaluate.pairs import audit_path, build_pairs, write_jsonl
from launcher.evaluate.process import WorkerJob, run_worker
from launcher.evaluate.prompts import read_prompts
from launcher.evaluate.winrate import WinRateRequest
from launcher.layout import complete_checkpoints
from launcher.run.train import Consent, start_run


def read_config(path: Path) -> dict[str, Any]:
    values = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(values, dict):
        raise UserError(f"{path}: expected a LLaMA-Factory config (a mapping)")
    return values


class Loop:
    def __init__(self, spec: LoopSpec, launch_flags: Mapping[str, Any], cwd: Path, env: Mapping[str, str]):
        self.spec, self.launch_flags, self.cwd, self.env = spec, launch_flags, cwd, env
        self.configs = {r.index: {**read_config(r.config), **r.changes} for r in spec.rounds}
        self.precheck()
        self.state = LoopState(spec)

    def precheck(self) -> None:
        """What would fail in a later round, refused before the first one starts."""
        for r in self.spec.rounds:
            config = self.configs[r.index]
            if r.online and config.get("stage") != "dpo":
                raise UserError(f"round {r.index} ({r.name}) is online, which makes pairwise data: its config needs "
                                f"stage: dpo, not {config.get('stage')!r}")
            if r.online and "dataset" in r.changes:
                raise UserError(f"round {r.index} ({r.name}) is online: it trains on the pairs it generates; "
                                "remove dataset from its set")
            if "preference" in needs(list(self.spec.evaluation.gate)) and not (
                    self.spec.evaluation.pairs or config.get("eval_dataset")):
                raise UserError(f"the gate uses held-out metrics but round {r.index} ({r.name}) has no eval_dataset "
                                "and eval has no pairs")

    def run(self) -> int:
        for r in self.spec.rounds:
            code = self.run_round(r)
            if code != EXIT_OK:
                return code
        self.state.set(status="done")
        self.report()
        return EXIT_OK

    def run_round(self, r: Round) -> int:
        steps = (["generate", "pairs"] if r.online else []) + ["config", "train", "eval"]
        for step in steps:
            if self.state.done(r, step):
                self.say(r, f"{step}: finished before, skipped")
                continue
            self.say(r, step)
            code = getattr(self, f"step_{step}")(r)
            if code:
                return code
        if not self.gate(r):
            return EXIT_GATE_FAILED
        if self.configs[r.index].get("finetuning_type", "lora") in ("lora", "oft") and not self.state.done(r, "merge"):
            self.say(r, "merge")
            self.step_merge(r)
        return EXIT_OK

    def say(self, r: Round, what: str) -> None:
        print(f"dpo-launch loop: round {r.index}/{len(self.spec.rounds)} ({r.name}): {what}", flush=True)

    def folder(self, r: Round) -> Path:
        return self.spec.output_dir / f"round-{r.index}"

    def start_model(self, r: Round) -> ModelSpec:
        """Round 1: the config's model; round k: round k-1's model (merged for LoRA)."""
        template = self.configs[r.index].get("template")
        if r.index == 1:
            return model_source(str(r.config), template, self.cwd)
        previous = self.state.data["rounds"][str(r.index - 1)]["steps"]
        return ModelSpec(str((previous.get("merge") or previous["train"])["model"]), template=template)

    # --- steps -------------------------------------------------------------------------------------------

    def step_generate(self, r: Round) -> int:
        online = r.online
        assert online is not None
        prompts = read_prompts(online.prompts)
        count = min(online.per_round or len(prompts), len(prompts))
        turn = sum(1 for other in self.spec.rounds if other.online and other.index < r.index)
        chosen = [prompts[(turn * count + i) % len(prompts)] for i in range(count)]
        out = self.folder(r) / "candidates.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        generate(Generation(self.start_model(r), chosen, online.prompts, out, online.sampling), env=self.env)
        self.state.finish(r, "generate", candidates=str(out), prompts=len(chosen))
        return EXIT_OK

    def step_pairs(self, r: Round) -> int:
        online = r.online
        assert online is not None
        folder = self.folder(r)
        judge = make_judge(online.judge, folder / "judge", folder / "human-verdicts.jsonl",
                           self.configs[r.index].get("template"))
        result = build_pairs(read_candidates(folder / "candidates.jsonl"), judge)
        pairs = folder / "data" / "pairs.jsonl"
        pairs.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl(audit_path(pairs), result.audit)
        if not result.rows:
            raise UserError(f"round {r.index} ({r.name}): the judge preferred no candidate of any prompt; see "
                            f"{audit_path(pairs)}")
        write_jsonl(pairs, result.rows)
        write_text_atomic(pairs.parent / "dataset_info.json",
                          json.dumps(self.dataset_info(r, pairs), indent=2, ensure_ascii=False) + "\n")
        self.state.finish(r, "pairs", pairs=len(result.rows), outcomes=dict(result.counts))
        return EXIT_OK

    def dataset_info(self, r: Round, pairs: Path) -> dict:
        """The base config's datasets (file names made absolute) plus this round's pairs."""
        base_dir = self.cwd / str(self.configs[r.index].get("dataset_dir") or "data")
        try:
            entries = json.loads((base_dir / "dataset_info.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            entries = {}
        for entry in entries.values():
            if isinstance(entry, dict) and entry.get("file_name"):
                entry["file_name"] = str((base_dir / entry["file_name"]).absolute())
        entries[f"loop_round_{r.index}"] = {"file_name": pairs.name, "formatting": "sharegpt", "ranking": True,
                                            "columns": {"messages": "conversations", "chosen": "chosen",
                                                        "rejected": "rejected"}}
        return entries

    def step_config(self, r: Round) -> int:
        values = dict(self.configs[r.index])
        start = self.start_model(r)
        if r.index > 1:
            for key in LOOP_OWNED:
                values.pop(key, None)
        values["model_name_or_path"] = start.model
        values["output_dir"] = str(self.folder(r) / "run")
        if r.online:
            values.update(dataset=f"loop_round_{r.index}", dataset_dir=str(self.folder(r) / "data"))
        elif not Path(str(values.get("dataset_dir") or "data")).is_absolute():
            values["dataset_dir"] = str(self.cwd / str(values.get("dataset_dir") or "data"))
        path = self.folder(r) / "config.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        header = (f"# Round {r.index} ({r.name}) of {self.spec.file}, written by dpo-launch loop; from {self.cwd} it "
                  f"also runs as:\n#   llamafactory-cli train {path}\n")
        write_text_atomic(path, header + yaml.safe_dump(values, sort_keys=False, allow_unicode=True))
        self.state.finish(r, "config", config=str(path), start_model=start.to_dict())
        return EXIT_OK

    def step_train(self, r: Round) -> int:
        config = self.folder(r) / "config.yaml"
        result = validate(config, cwd=self.cwd, launching=True)
        if result.diagnostics:
            render_text(result.diagnostics, sys.stdout, checked=str(config))
        if not result.ok:
            raise UserError(f"round {r.index} ({r.name}): {config} has errors; nothing was trained")
        run = self.folder(r) / "run"
        consent: Consent = "resume" if complete_checkpoints(run) else "overwrite" if run.exists() else None
        code = start_run(result, self.launch_flags, self.cwd, self.env, consent=consent, monitor=False)
        if code == EXIT_OK:
            self.state.finish(r, "train", model=str(run), step=Run.load(run).final_step())
        return code

    def step_eval(self, r: Round) -> int:
        evaluation = self.spec.evaluation
        win_rate = None
        if evaluation.prompts is not None and evaluation.judge is not None:
            win_rate = WinRateRequest(evaluation.prompts, evaluation.judge, None, evaluation.sampling,
                                      evaluation.limit, generations=self.spec.output_dir / "generations")
        outcome = evaluate(EvalRequest(self.folder(r) / "run", evaluation.pairs, [], win_rate))
        summary = outcome.summary
        self.state.finish(r, "eval", metrics=summary["metrics"], notes=outcome.notes,
                          counts=(summary["win_rate"] or {}).get("counts"),
                          lengths=(summary["win_rate"] or {}).get("mean_length"),
                          pairs=(summary["preference"] or {}).get("count"))
        return EXIT_OK

    def gate(self, r: Round) -> bool:
        metrics = self.state.round(r)["steps"]["eval"]["metrics"]
        checks = check_gate(list(self.spec.evaluation.gate), metrics)
        passed = gate_passed(checks)
        self.state.round(r)["gate"] = {"expression": self.spec.evaluation.gate_text, "passed": passed,
                                       "checks": [c.reason for c in checks]}
        self.state.save()
        if checks:
            self.say(r, f"gate {self.spec.evaluation.gate_text}: {'passed' if passed else 'FAILED'}: "
                        + "; ".join(c.reason for c in checks))
        if not passed:
            self.state.set(status=f"stopped at round {r.index}: gate failed")
            self.report()
            failed = "; ".join(c.reason for c in checks if not c.passed)
            print(f"dpo-launch loop: round {r.index} ({r.name}) failed its gate: {failed}; the loop stops here "
                  f"(exit {EXIT_GATE_FAILED})", file=sys.stderr, flush=True)
        return passed

    def step_merge(self, r: Round) -> None:
        policy = Run.load(self.folder(r) / "run").policy()
        target = self.folder(r) / "merged"
        config = {**policy.lf_args(), "export_dir": str(target)}
        run_worker(WorkerJob("export", {"config": config}, self.folder(r) / "merge"))
        self.state.finish(r, "merge", model=str(target), merged=list(policy.adapters))

    def report(self) -> None:
        for line in table_lines(self.spec, self.state.data):
            print(line)
        written = write_report(self.spec, self.state.data)
        print(f"dpo-launch loop: {', '.join(str(p) for p in written)}", flush=True)


def run_loop(spec: LoopSpec, launch_flags: Mapping[str, Any], cwd: Path | None = None,
             env: Mapping[str, str] | None = None) -> int:
    return Loop(spec, launch_flags, cwd or Path.cwd(), dict(os.environ if env is None else env)).run()
