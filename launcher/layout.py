"""Where things are in a run directory (the config's `output_dir`): one place for every name and path that the
launcher, the worker inside each rank and the readers (monitor, report, tensorboard) agree on.

```
<output_dir>/
  checkpoint-N/          transformers' checkpoints; complete once trainer_state.json parses and weights exist
  trainer_log.jsonl      LLaMA-Factory's step log
  tensorboard/           HF's event files (TENSORBOARD_LOGGING_DIR); tensorboard/dpo-launch/ is ours
  dpo-launch/            resolved_config.json|yaml, plan.json, versions.json, datasets.json, runtime.json,
                         alerts.jsonl, logs/ (launcher.log, rank-N.log, torchrun/), report/, stats/,
                         status.json, launches.jsonl (every launch of the run), lock (held by the launcher
                         that owns the run), heartbeat/rank-N.json (each rank's last sign of progress),
                         eval/ (dpo-launch eval: summary.json, preference/, winrate/)
```
Pure: no imports beyond the standard library, nothing is created here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

OWN_DIR = "dpo-launch"  # our folder inside output_dir, and our TensorBoard run inside tensorboard/
# `train --precompute-ref`: the cache root the worker reads (launcher.worker.ref_cache); by default next to the
# output_dir, so that the runs of a sweep (sibling output_dirs) share it.
PRECOMPUTE_REF_ENV = "DPO_LAUNCH_PRECOMPUTE_REF"
REF_CACHE_DIR = Path(".dpo-launch-cache") / "ref-logps"
RESOLVED_CONFIG = "resolved_config.json"
PLAN_FILE = "plan.json"
RUNTIME_FILE = "runtime.json"
ALERTS_FILE = "alerts.jsonl"
LAUNCHES_FILE = "launches.jsonl"
LOCK_FILE = "lock"
HEARTBEAT_DIR = "heartbeat"
TRAINER_LOG = "trainer_log.jsonl"
TRAINER_STATE = "trainer_state.json"
# transformers' trainer_utils._re_checkpoint
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
# Files LLaMA-Factory treats as a finished model in output_dir (llamafactory/extras/constants.py
# CHECKPOINT_NAMES): with one of them and no checkpoint it refuses to start.
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin", "model.safetensors",
                "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
# Where else a checkpoint keeps its weights: DeepSpeed's engine state (global_stepN/) and FSDP's sharded model
# (transformers' trainer.py, `_load_from_checkpoint` and `deepspeed_load_checkpoint`).
WEIGHT_PREFIXES = ("global_step", "pytorch_model_fsdp")


def run_dir(output_dir: Path | str) -> Path:
    """dpo-launch's own files inside the run directory."""
    return Path(output_dir) / OWN_DIR


def logs_dir(output_dir: Path | str) -> Path:
    return run_dir(output_dir) / "logs"


def eval_dir(output_dir: Path | str) -> Path:
    """`dpo-launch eval`'s results; `summary.json` there is what `report` shows."""
    return run_dir(output_dir) / "eval"


def tensorboard_dir(output_dir: Path | str) -> Path:
    return Path(output_dir) / "tensorboard"


def alerts_file(output_dir: Path | str) -> Path:
    return run_dir(output_dir) / ALERTS_FILE


def launches_file(output_dir: Path | str) -> Path:
    return run_dir(output_dir) / LAUNCHES_FILE


def lock_file(output_dir: Path | str) -> Path:
    return run_dir(output_dir) / LOCK_FILE


def heartbeat_file(output_dir: Path | str, rank: int) -> Path:
    return run_dir(output_dir) / HEARTBEAT_DIR / f"rank-{rank}.json"


def checkpoint_step(path: Path | str) -> int | None:
    """N for a `checkpoint-N` directory name, else None."""
    match = CHECKPOINT_RE.match(Path(path).name)
    return int(match.group(1)) if match else None


def checkpoints(output_dir: Path | str) -> list[Path]:
    """The `checkpoint-N` directories in `output_dir`, by step."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if checkpoint_step(p) is not None and p.is_dir()]
    return sorted(found, key=lambda p: checkpoint_step(p) or 0)


def is_complete(checkpoint: Path | str) -> bool:
    """A checkpoint `--resume` can load: see `checkpoint_problem`."""
    return checkpoint_problem(checkpoint) is None


def checkpoint_problem(checkpoint: Path | str) -> str | None:
    """Why `checkpoint` cannot be resumed from, or None when it can. transformers' `Trainer._save_checkpoint`
    writes trainer_state.json after the weights, optimizer, scheduler and RNG states, so a checkpoint whose
    state is missing, empty or unparsable was cut short, and one without weights cannot be loaded."""
    state = Path(checkpoint) / TRAINER_STATE
    try:
        text = state.read_text(encoding="utf-8")
    except FileNotFoundError:
        return f"no {TRAINER_STATE}: its save did not finish"
    except (OSError, UnicodeDecodeError) as exc:
        return f"{TRAINER_STATE} cannot be read ({getattr(exc, 'strerror', None) or exc})"
    if not text.strip():
        return f"{TRAINER_STATE} is empty"
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        return f"{TRAINER_STATE} is not valid JSON ({exc})"
    if not isinstance(parsed, dict):
        return f"{TRAINER_STATE} is not a JSON object"
    if not has_weights(checkpoint):
        return "no model weights (no model.safetensors, adapter_model.safetensors, pytorch_model.bin or shards)"
    return None


def has_weights(checkpoint: Path | str) -> bool:
    """A non-empty weights file, DeepSpeed's or FSDP's weights folder, or adapters saved in subfolders (a run
    with several adapters saves each in a folder of its own)."""
    root = Path(checkpoint)
    if any(_non_empty_file(root / name) for name in WEIGHT_FILES):
        return True
    try:
        entries = list(root.iterdir())
    except OSError:
        return False
    adapter_files = ("adapter_model.safetensors", "adapter_model.bin")
    return any(entry.name.startswith(WEIGHT_PREFIXES) for entry in entries) or any(
        _non_empty_file(entry / name) for entry in entries for name in adapter_files)


def _non_empty_file(path: Path) -> bool:
    try:
        return path.is_file() and path.stat().st_size > 0
    except OSError:
        return False


def complete_checkpoints(output_dir: Path | str) -> list[Path]:
    """The `checkpoint-N` directories holding a finished save, by step."""
    return [p for p in checkpoints(output_dir) if is_complete(p)]


def weight_files(output_dir: Path | str) -> list[Path]:
    return [Path(output_dir) / name for name in WEIGHT_FILES if (Path(output_dir) / name).is_file()]


def default_ref_cache(output_dir: Path) -> Path:
    """`<output_dir's parent>/.dpo-launch-cache/ref-logps`: shared by sibling output_dirs, e.g. a sweep's."""
    return output_dir.parent / REF_CACHE_DIR
