"""LOOP.yaml, the file `dpo-launch loop` runs: rounds of DPO/KTO training, each from the previous round's model.

```yaml
# dpo-launch loop loop.yaml
config: config/demo_dpo.yaml     # the LLaMA-Factory DPO/KTO config every round starts from
output_dir: runs/loop            # round-1/, round-2/, ..., loop.json (progress), loop.md and loop.png
rounds:
  - name: helpful                # iterative DPO: the round's own preference data
    set: {dataset: helpful}      # LLaMA-Factory keys this round changes (not model_name_or_path/output_dir)
  - name: online-1               # online DPO: prompts -> the previous round's model -> judge -> pairs
    config: config/other.yaml    # optional: another base config for this round
    online: {prompts: data/prompts.jsonl, per_round: 64, n: 4, judge: "rm:models/rm", max_new_tokens: 256}
eval:                            # after every round; a failed gate stops the loop (exit 6)
  pairs: heldout                 # held-out pairs (default: the round config's eval_dataset)
  prompts: data/eval.jsonl       # win rate against the round's starting model
  judge: "rm:models/rm"
  gate: "accuracy>=0.6,win_rate>=0.5"
```
Judge keys (`judge`, `judge_model`, `judge_template`, `judge_api_key_env`, `judge_concurrency`, `judge_prompt`,
`port`) and sampling keys (`n` online only, `temperature`, `top_p`, `top_k`, `max_new_tokens`,
`repetition_penalty`, `seed`, `limit`) mean what the flags of `generate`, `pairs` and `eval` mean. Relative paths
are relative to the directory the loop runs from, as in LLaMA-Factory configs. Problems are reported all at once,
located (`loop.yaml:LINE:COL: error[loop-...]: ...`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from launcher.check.config import ConfigLoadError, LoadedConfig, load_config
from launcher.check.diagnostics import ERROR, Diagnostic, did_you_mean
from launcher.errors import UsageError
from launcher.evaluate.gate import Condition, parse_gate
from launcher.evaluate.generation import Sampling
from launcher.evaluate.judges import JudgeOptions, options_from

TOP_KEYS = ("config", "output_dir", "rounds", "eval")
ROUND_KEYS = ("name", "config", "set", "online")
JUDGE_KEYS = ("judge", "judge_model", "judge_template", "judge_api_key_env", "judge_concurrency", "judge_prompt",
              "port")
SAMPLING_KEYS = ("temperature", "top_p", "top_k", "max_new_tokens", "repetition_penalty", "seed")
ONLINE_KEYS = ("prompts", "per_round", "n", *JUDGE_KEYS, *SAMPLING_KEYS)
EVAL_KEYS = ("pairs", "prompts", "limit", "gate", *JUDGE_KEYS, *SAMPLING_KEYS)
LOOP_OWNED = ("model_name_or_path", "output_dir", "adapter_name_or_path", "ref_model", "ref_model_adapters")


class LoopSpecError(Exception):
    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__(f"{len(diagnostics)} problem(s) in the loop file")
        self.diagnostics = diagnostics


@dataclass(frozen=True)
class Online:
    prompts: Path
    per_round: int | None
    sampling: Sampling
    judge: JudgeOptions


@dataclass(frozen=True)
class Round:
    index: int  # 1-based
    name: str
    config: Path
    changes: dict[str, Any]
    online: Online | None
    raw: dict[str, Any]  # as written: what a rerun must still find

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.raw, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Evaluation:
    pairs: str | None = None
    prompts: Path | None = None
    limit: int | None = None
    judge: JudgeOptions | None = None
    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.0))
    gate: tuple[Condition, ...] = ()
    gate_text: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoopSpec:
    file: Path
    output_dir: Path
    rounds: tuple[Round, ...]
    evaluation: Evaluation

    def fingerprint(self) -> str:
        """What finished evaluations depend on: the eval settings except the gate (re-checked on stored metrics)."""
        settings = {k: v for k, v in self.evaluation.raw.items() if k != "gate"}
        return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


class _Reader:
    """Collects located problems while reading the file."""

    def __init__(self, loaded: LoadedConfig, cwd: Path):
        self.loaded, self.cwd = loaded, cwd
        self.problems: list[Diagnostic] = []

    def error(self, path: tuple, code: str, message: str, hint: str | None = None) -> None:
        position = self.loaded.value_at(*path)
        self.problems.append(Diagnostic(ERROR, code, message, file=position.file, line=position.line,
                                        column=position.column, path=".".join(map(str, path)) or None, hint=hint))

    def mapping(self, value: Any, path: tuple, allowed: tuple[str, ...]) -> dict:
        if not isinstance(value, dict):
            self.error(path, "loop-type", f"{'.'.join(map(str, path))}: expected a mapping")
            return {}
        for key in value:
            if key not in allowed:
                close = did_you_mean(str(key), allowed)
                where = ".".join(map(str, path)) or "the loop"
                self.error((*path, key), "loop-key", f"'{key}' is not a key of {where}",
                           f"did you mean '{close}'?" if close else f"expected one of {', '.join(allowed)}")
        return value

    def path(self, value: Any, where: tuple, kind: str) -> Path | None:
        if not isinstance(value, str) or not value:
            self.error(where, "loop-type", f"{'.'.join(map(str, where))}: expected a path")
            return None
        path = self.cwd / value
        if kind == "file" and not path.is_file():
            self.error(where, "loop-path", f"{'.'.join(map(str, where))}: {value} is not a file")
        return path

    def guarded(self, where: tuple, build):
        try:
            return build()
        except UsageError as exc:
            self.error(where, "loop-value", str(exc).removeprefix("--"))  # the key, not the command-line flag
            return None


def read_loop(path: str | Path, cwd: Path | None = None) -> LoopSpec:
    """The loop file, checked; LoopSpecError with every problem located."""
    cwd = cwd or Path.cwd()
    try:
        loaded = load_config(path)
    except ConfigLoadError as exc:
        raise LoopSpecError(exc.diagnostics) from None
    reader = _Reader(loaded, cwd)
    top = reader.mapping(loaded.values, (), TOP_KEYS)
    for key in ("config", "output_dir", "rounds"):
        if key not in top:
            reader.error((), "loop-missing", f"the loop needs '{key}'")
    base = reader.path(top.get("config"), ("config",), "file") if "config" in top else None
    output_dir = reader.path(top.get("output_dir"), ("output_dir",), "dir") if "output_dir" in top else None
    rounds = top.get("rounds") or []
    if "rounds" in top and (not isinstance(rounds, list) or not rounds):
        reader.error(("rounds",), "loop-type", "rounds: expected a list of at least one round")
        rounds = []
    parsed = [_round(reader, index, raw, base) for index, raw in enumerate(rounds)]
    evaluation = _evaluation(reader, top.get("eval") or {})
    if reader.problems or output_dir is None:
        raise LoopSpecError(reader.problems)
    return LoopSpec(Path(path), output_dir, tuple(r for r in parsed if r is not None), evaluation)


def _round(reader: _Reader, index: int, raw: Any, base: Path | None) -> Round | None:
    where = ("rounds", index)
    values = reader.mapping(raw, where, ROUND_KEYS)
    config = reader.path(values["config"], (*where, "config"), "file") if "config" in values else base
    changes = values.get("set") or {}
    if not isinstance(changes, dict):
        reader.error((*where, "set"), "loop-type", "set: expected a mapping of LLaMA-Factory keys to values")
        changes = {}
    for key in changes:
        if key in LOOP_OWNED:
            reader.error((*where, "set", key), "loop-owned-key",
                         f"{key} is decided by the loop (round k starts from round k-1's model, which is also its "
                         "reference, and writes to <output_dir>/round-k/run)", "remove it from set")
    online = _online(reader, values["online"], (*where, "online")) if "online" in values else None
    name = str(values.get("name") or f"round-{index + 1}")
    return Round(index + 1, name, config, dict(changes), online, dict(values)) if config else None


def _online(reader: _Reader, raw: Any, where: tuple) -> Online | None:
    values = reader.mapping(raw, where, ONLINE_KEYS)
    if "prompts" not in values or "judge" not in values:
        reader.error(where, "loop-missing", "online: needs prompts and judge")
        return None
    prompts = reader.path(values["prompts"], (*where, "prompts"), "file")
    sampling = reader.guarded(where, lambda: Sampling(n=int(values.get("n", 2)), **_sampling(values)))
    judge = reader.guarded((*where, "judge"), lambda: options_from(values))
    per_round = values.get("per_round")
    if per_round is not None and (not isinstance(per_round, int) or per_round < 1):
        reader.error((*where, "per_round"), "loop-value", "per_round: expected a positive number of prompts")
    if prompts is None or sampling is None or judge is None:
        return None
    return Online(prompts, per_round, sampling, judge)


def _evaluation(reader: _Reader, raw: Any) -> Evaluation:
    values = reader.mapping(raw, ("eval",), EVAL_KEYS)
    prompts = reader.path(values["prompts"], ("eval", "prompts"), "file") if "prompts" in values else None
    judge = reader.guarded(("eval", "judge"), lambda: options_from(values)) if "judge" in values else None
    if (prompts is None) != (judge is None) and not reader.problems:
        reader.error(("eval",), "loop-missing", "eval: the win rate needs both prompts and judge")
    gate = reader.guarded(("eval", "gate"), lambda: tuple(parse_gate(str(values["gate"])))) if "gate" in values \
        else ()
    sampling = reader.guarded(("eval",), lambda: Sampling(**{"temperature": 0.0, **_sampling(values)}))
    return Evaluation(values.get("pairs"), prompts, values.get("limit"), judge, sampling or Sampling(temperature=0),
                      gate or (), values.get("gate"), dict(values))


def _sampling(values: dict) -> dict:
    return {key: values[key] for key in SAMPLING_KEYS if key in values}


def describe(spec: LoopSpec) -> dict:
    return {"file": str(spec.file), "output_dir": str(spec.output_dir),
            "rounds": [{"index": r.index, "name": r.name, "config": str(r.config), "set": r.changes,
                        "online": asdict(r.online) if r.online else None} for r in spec.rounds]}
