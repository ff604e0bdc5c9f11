"""Task `prefeval`: LLaMA-Factory's DPO/KTO evaluation (`run_exp` with do_train off, do_eval on).

Request: {"config": the evaluation config (launcher.evaluate.preference)}. Result: {"metrics": the contents of
LLaMA-Factory's eval_results.json}. The loss patch of `dpo-launch train` is installed first, so the evaluated
loss is the configured one (launcher.worker.loss_patch).
"""

from __future__ import annotations

import json
from pathlib import Path

from launcher.evaluate.worker.common import TaskError, first_line
from launcher.worker import loss_patch


def run(request: dict) -> dict:
    config = dict(request["config"])
    results = Path(config["output_dir"]) / "eval_results.json"
    results.unlink(missing_ok=True)  # never report a previous evaluation's numbers
    loss_patch.install()
    from llamafactory.train.tuner import run_exp

    try:
        run_exp(args=config)
    except (ValueError, OSError) as exc:  # arguments, data or a model LLaMA-Factory cannot load
        raise TaskError(f"LLaMA-Factory's evaluation failed: {first_line(exc)}") from exc
    try:
        return {"metrics": json.loads(results.read_text(encoding="utf-8"))}
    except (OSError, ValueError) as exc:
        raise TaskError(f"LLaMA-Factory's evaluation wrote no metrics ({results}: {exc})") from exc
