"""Record a run's metric stream for the alert tests: `python record_stream.py RUN_DIR OUT.jsonl [NOTE]`.

Each line is one logged step as the alert rules see it: {"step": N, "<tag>": value, ...}, tags as HF's
TensorBoardCallback writes them. The first line is {"_source": NOTE}. NaN/inf are written as strings.
"""

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from launcher.observe.events import Scalar, read_all

KEEP = ("train/loss", "train/grad_norm", "train/learning_rate", "train/rewards/", "train/logps/", "eval/loss",
        "eval/rewards/", "train/kl")


def main(run_dir: str, out: str, note: str = "") -> None:
    steps: dict[int, dict] = {}
    for event in read_all(Path(run_dir) / "tensorboard"):
        if isinstance(event, Scalar) and event.tag.startswith(KEEP):
            value = event.value if math.isfinite(event.value) else str(event.value)
            steps.setdefault(event.step, {})[event.tag] = value
    with open(out, "w", encoding="utf-8") as handle:
        handle.write(json.dumps({"_source": note}) + "\n")
        handle.writelines(json.dumps({"step": step, **steps[step]}) + "\n" for step in sorted(steps))


if __name__ == "__main__":
    main(*sys.argv[1:])
