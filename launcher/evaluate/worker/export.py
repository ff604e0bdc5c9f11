"""Task `export`: merge LoRA adapters into their base with LLaMA-Factory's own export (`export_model`).

Request: {"config": LLaMA-Factory export arguments (model_name_or_path, adapter_name_or_path, finetuning_type,
template, export_dir, ...)}. The merged model (weights and tokenizer) lands in export_dir; `dpo-launch loop`
uses it as the next round's model and, being that round's base, its reference.
"""

from __future__ import annotations

from pathlib import Path

from launcher.evaluate.worker.common import TaskError, first_line


def run(request: dict) -> dict:
    from llamafactory.train.tuner import export_model

    config = dict(request["config"])
    try:
        export_model(args=config)
    except (ValueError, OSError) as exc:
        raise TaskError(f"LLaMA-Factory's export failed: {first_line(exc)}") from exc
    return {"export_dir": str(Path(config["export_dir"]))}
