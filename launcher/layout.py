"""Where things are in a run directory (the config's `output_dir`): one place for every name and path that the
launcher, the worker inside each rank and the readers (monitor, report, tensorboard) agree on.

```
<output_dir>/
  checkpoint-N/          transformers' checkpoints; complete once trainer_state.json is written
  trainer_log.jsonl      LLaMA-Factory's step log
  tensorboard/           HF's event files (TENSORBOARD_LOGGING_DIR); tensorboard/dpo-launch/ is ours
  dpo-launch/            resolved_config.json|yaml, plan.json, versions.json, datasets.json, runtime.json,
                         alerts.jsonl, logs/ (launcher.log, rank-N.log, torchrun/), report/, stats/,
                         eval/ (dpo-launch eval: summary.json, preference/, winrate/)
```
Pure: no imports beyond the standard library, nothing is created here.
"""

from __future__ import annotations

import re
from pathlib import Path

OWN_DIR = "dpo-launch"  # our folder inside output_dir, and our TensorBoard run inside tensorboard/
RESOLVED_CONFIG = "resolved_config.json"
PLAN_FILE = "plan.json"
RUNTIME_FILE = "runtime.json"
ALERTS_FILE = "alerts.jsonl"
TRAINER_LOG = "trainer_log.jsonl"
TRAINER_STATE = "trainer_state.json"
# transformers' trainer_utils._re_checkpoint
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
# Files LLaMA-Factory treats as a finished model in output_dir (llamafactory/extras/constants.py
# CHECKPOINT_NAMES): with one of them and no checkpoint it refuses to start.
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin", "model.safetensors",
                "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


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
    """transformers' `Trainer._save_checkpoint` writes trainer_state.json after the weights, optimizer,
    scheduler and RNG states: a checkpoint without it was cut short."""
    return (Path(checkpoint) / TRAINER_STATE).is_file()


def complete_checkpoints(output_dir: Path | str) -> list[Path]:
    """The `checkpoint-N` directories holding a finished save, by step."""
    return [p for p in checkpoints(output_dir) if is_complete(p)]


def weight_files(output_dir: Path | str) -> list[Path]:
    return [Path(output_dir) / name for name in WEIGHT_FILES if (Path(output_dir) / name).is_file()]
