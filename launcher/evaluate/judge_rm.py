"""The reward-model judge, `--judge rm:PATH`: each response scored on its own by a reward model, in a worker.

PATH is a LLaMA-Factory `stage: rm` output (full: weights + value_head.safetensors; LoRA: an adapter folder
with value_head.safetensors, on the base its adapter_config.json names) or a HuggingFace sequence-classification
model (config.json `architectures` ending in ForSequenceClassification). Which one it is, is read from the
files here, without loading anything. The template renders prompt and response as the reward model was trained
(--judge-template; default the template of the model being judged).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from launcher.errors import UserError
from launcher.evaluate.judging import Item, Verdict, from_scores
from launcher.evaluate.process import WorkerJob, run_worker

VALUE_HEADS = ("value_head.safetensors", "value_head.bin")


def reward_model(path: Path, template: str | None) -> tuple[dict[str, str | None], str]:
    """(ChatModel/transformers arguments, 'valuehead' or 'classifier') for the reward model at PATH."""
    if not path.is_dir():
        raise UserError(f"--judge rm:{path}: no such directory (the output_dir of a LLaMA-Factory stage: rm run, "
                        "or a sequence-classification model)")
    architectures = _read(path / "config.json").get("architectures") or []
    if any(str(a).endswith("ForSequenceClassification") for a in architectures):
        return {"model_name_or_path": str(path)}, "classifier"
    if not any((path / name).is_file() for name in VALUE_HEADS):
        raise UserError(f"--judge rm:{path} is not a reward model: no value_head.safetensors (a LLaMA-Factory "
                        "stage: rm output) and no ForSequenceClassification architecture in config.json")
    args: dict[str, str | None] = {"model_name_or_path": str(path)}
    adapter = _read(path / "adapter_config.json")
    if adapter:
        args = {"model_name_or_path": adapter.get("base_model_name_or_path"), "adapter_name_or_path": str(path),
                "finetuning_type": "lora"}
    if template:
        args["template"] = template
    return args, "valuehead"


def _read(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


class RewardModelJudge:
    pointwise = True

    def __init__(self, path: str, template: str | None, folder: Path):
        self.path = Path(path).absolute()
        self.name = f"rm:{path}"
        self.model, self.kind = reward_model(self.path, template)
        self.folder = folder

    def score(self, entries: list[dict]) -> dict[str, float]:
        """key -> score for entries {"key", "messages", "system", "response"}."""
        if not entries:
            return {}
        print(f"dpo-launch: scoring {len(entries)} responses with the reward model {self.path}", file=sys.stderr,
              flush=True)
        request = {"model": self.model, "kind": self.kind, "items": entries, "batch_size": 16}
        return run_worker(WorkerJob("score", request, self.folder))["scores"]

    def compare(self, items: list[Item]) -> list[Verdict]:
        entries = [{"key": f"{item.key}\t{side}", "messages": list(item.messages), "system": item.system,
                    "response": getattr(item, side)} for item in items for side in ("a", "b")]
        scores = self.score(entries)
        verdicts = []
        for item in items:
            a, b = scores[f"{item.key}\ta"], scores[f"{item.key}\tb"]
            verdicts.append(Verdict(item.key, from_scores(a, b), {"scores": {"a": a, "b": b}}))
        return verdicts
