"""Precomputed reference log-probs (`dpo-launch train --precompute-ref`), inside the worker.

DPO's reference costs a second model copy (full fine-tuning) or an adapter-disabled forward pass (LoRA) on every
step, and every run of a `pref_beta` / learning-rate sweep recomputes the same numbers. LLaMA-Factory declined to
precompute them (https://github.com/hiyouga/LlamaFactory/issues/4810, wontfix); trl's `precompute_ref_log_probs`
is bypassed by LF's `CustomDPOTrainer`, which sets it to False.

Before training, one pass (data-parallel over the ranks) runs the reference LF would build (an explicit
`ref_model`, the frozen copy `create_ref_model` makes for full fine-tuning, or the LoRA model with its adapter
disabled) over every training and eval pair, through LF's own dataset pipeline and pairwise collator, and stores
per pair the summed log-prob and the number of label tokens of the chosen and the rejected answer. A pair's entry
is keyed by a hash of its own unpadded token ids and labels, so shuffling, ranks, batch composition and truncation
(done in preprocessing, before the key) cannot pair a value with the wrong pair. The folder holding the values is
named by a hash of everything that determines them (`key_components`), so a sweep over `pref_beta`, the learning
rate or the loss reuses one pass; any change there is a new folder, and the worker says which component changed.

Training then builds no reference: `create_ref_model` as LF's DPO workflow sees it returns None and
`CustomDPOTrainer.compute_reference_log_probs` reads the cached values (dividing by the label count for
ipo/orpo/simpo, exactly as LF's `concatenated_forward` does). A batch pair without an entry is an error naming
the cache, never a silent fallback to a reference that is not there.

Layout: `<cache root>/<key>/ref_logps.json` (complete when present; written last and atomically by rank 0),
`manifest.json` (the key's components), `parts/rank-N.json` (each rank's share while the pass runs). Rank 0
decides hit or miss and writes the merged file, so on several nodes the cache root must be on a filesystem that
every node sees (another node's rank that cannot read it stops with an error naming the file).
The torch-free helpers here are testable alone; everything that imports torch does so inside functions.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from launcher.atomic import write_text_atomic
from launcher.fingerprint import file_sha256
from launcher.layout import PRECOMPUTE_REF_ENV
from launcher.versions import installed_version
from launcher.worker import console

PREFIX = "dpo-launch worker: reference log-probs"
VALUES_FILE = "ref_logps.json"
MANIFEST_FILE = "manifest.json"
FORMAT = 1
# LF divides the summed log-probs by the label count for these (train/dpo/trainer.py, concatenated_forward).
AVERAGED_LOSSES = ("ipo", "orpo", "simpo")
# LF arguments that change the tokens of a pair or the reference's numbers (the rest, e.g. pref_beta, do not).
DATA_KEYS = ("template", "cutoff_len", "max_samples", "train_on_prompt", "mask_history", "default_system",
             "enable_thinking", "tool_format", "ignore_pad_token_for_loss", "tokenized_path", "val_size")
MODEL_KEYS = ("finetuning_type", "quantization_bit", "ref_model_quantization_bit", "bf16", "fp16", "pure_bf16",
              "infer_dtype", "flash_attn", "upcast_layernorm", "rope_scaling", "model_revision", "trust_remote_code",
              "adapter_name_or_path", "ref_model_adapters", "lora_target", "lora_rank", "use_dora", "pissa_init")
STACK = ("torch", "transformers", "llamafactory", "trl", "peft", "accelerate", "deepspeed")
MODEL_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".pt", ".pth", ".txt", ".tiktoken")


class RefCacheError(Exception):
    """The cache cannot serve this run (a pair without an entry, an unreadable file); the message says why."""


def cache_root_from_env() -> Path | None:
    value = os.environ.get(PRECOMPUTE_REF_ENV)
    return Path(value) if value else None


def _file_identity(path: Path) -> list[Any]:
    stat = path.stat()
    return [path.name, stat.st_size, stat.st_mtime_ns]


def model_identity(name: str | None) -> Any:
    """A local model folder: each weight/config file's name, size and mtime; a hub id: the id itself."""
    if not name:
        return None
    path = Path(name)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in MODEL_SUFFIXES)
        return {"path": str(path.resolve()), "files": [_file_identity(p) for p in files]}
    return {"hub": name}


def dataset_fingerprints(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Every dataset the run reads (dataset and eval_dataset): its dataset_info.json entry and, for local files,
    the sha256 of their content."""
    dataset_dir = Path(cfg.get("dataset_dir") or "data")
    try:
        info = json.loads((dataset_dir / "dataset_info.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = {}
    fingerprints: dict[str, Any] = {}
    for field in ("dataset", "eval_dataset"):
        value = cfg.get(field) or []
        for name in ([part.strip() for part in value.split(",")] if isinstance(value, str) else list(value)):
            entry = info.get(name, {})
            files: dict[str, str] = {}
            local = dataset_dir / str(entry.get("file_name", ""))
            if entry.get("file_name") and local.is_file():
                files[local.name] = file_sha256(local)
            elif entry.get("file_name") and local.is_dir():
                files = {p.name: file_sha256(p) for p in sorted(local.iterdir()) if p.is_file()}
            fingerprints[name] = {"entry": entry, "files": files}
    return fingerprints


def key_components(cfg: Mapping[str, Any], device_type: str) -> dict[str, Any]:
    """Everything the reference log-probs of a pair depend on, besides the pair's tokens (which key the entries)."""
    reference = cfg.get("ref_model") or cfg.get("model_name_or_path")
    return {
        "format": FORMAT,
        "reference": "explicit ref_model" if cfg.get("ref_model") else (
            "base with the adapter disabled" if cfg.get("finetuning_type") == "lora" else "frozen copy of the model"),
        "reference_model": model_identity(reference),
        "model": model_identity(cfg.get("model_name_or_path")),
        **{key: cfg.get(key) for key in MODEL_KEYS},
        **{key: cfg.get(key) for key in DATA_KEYS},
        "datasets": dataset_fingerprints(cfg),
        "device": device_type,
        "versions": {name: installed_version(name) for name in STACK},
    }


def cache_key(components: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(components, sort_keys=True, default=str).encode()).hexdigest()[:20]


def describe_difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """'cutoff_len: 64 -> 32; datasets changed' for the components that differ."""
    changes = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if json.dumps(before, sort_keys=True, default=str) == json.dumps(after, sort_keys=True, default=str):
            continue
        simple = all(isinstance(value, (str, int, float, bool, type(None))) for value in (before, after))
        changes.append(f"{name}: {before!r} -> {after!r}" if simple else f"{name} changed")
    return "; ".join(changes) or "no component differs (an incomplete earlier pass)"


def nearest_entry(root: Path, key: str) -> tuple[str, dict[str, Any]] | None:
    """The most recently written other complete cache entry under root, with its components."""
    candidates = []
    for entry in root.iterdir() if root.is_dir() else ():
        if entry.name != key and (entry / VALUES_FILE).is_file() and (entry / MANIFEST_FILE).is_file():
            candidates.append(((entry / VALUES_FILE).stat().st_mtime_ns, entry))
    for _, entry in sorted(candidates, reverse=True):
        try:
            return entry.name, json.loads((entry / MANIFEST_FILE).read_text(encoding="utf-8"))["components"]
        except (OSError, ValueError, KeyError):
            continue
    return None


def miss_reason(root: Path, key: str, components: Mapping[str, Any]) -> str:
    if (root / key).is_dir():
        return f"{root / key} is incomplete (an earlier pass did not finish)"
    nearest = nearest_entry(root, key)
    if nearest is None:
        return f"no cache yet in {root}"
    difference = describe_difference(nearest[1], components)
    return f"no cache for this run in {root}; the latest ({nearest[0]}) differs in {difference}"


def load_values(path: Path) -> dict[str, list[float]]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))["pairs"]
    except (OSError, ValueError, KeyError) as exc:
        raise RefCacheError(f"cannot read the reference log-probs cache {path}: {exc}; delete the folder "
                            f"{path.parent} to recompute it") from None


# --- everything below runs with torch ------------------------------------------------------------------------


def pair_keys(batch: Mapping[str, Any]) -> list[str]:
    """One key per pair of a pairwise batch (rows i and i+B): a hash of the unpadded chosen and rejected token ids
    and labels, so the key follows the pair wherever the sampler puts it."""
    input_ids, labels = batch["input_ids"], batch["labels"]
    mask = batch.get("attention_mask")
    half = input_ids.size(0) // 2
    keys = []
    for i in range(half):
        digest = hashlib.blake2b(digest_size=16)
        for row in (i, i + half):
            keep = mask[row].bool() if mask is not None and mask.dim() == 2 else slice(None)
            digest.update(input_ids[row][keep].detach().cpu().numpy().tobytes())
            digest.update(b"|")
            digest.update(labels[row][keep].detach().cpu().numpy().tobytes())
            digest.update(b"#")
        keys.append(digest.hexdigest())
    return keys


def _distributed():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def _decide_on_rank0(value):
    dist = _distributed()
    if dist is None:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _barrier() -> None:
    dist = _distributed()
    if dist is not None:
        dist.barrier()


@contextmanager
def _whole_weights():
    """Load whole weights on every rank during the pass, also under DeepSpeed ZeRO-3: transformers partitions a
    model created while `is_deepspeed_zero3_enabled()` (transformers/integrations/deepspeed.py, a weak reference
    to the DeepSpeed config that TrainingArguments set), and a partitioned model cannot run a forward pass outside
    a DeepSpeed engine. The pass therefore holds one whole reference per rank; training is unaffected."""
    from transformers.integrations import deepspeed as hf_deepspeed

    reference = hf_deepspeed._hf_deepspeed_config_weak_ref
    config = reference() if reference is not None else None
    if config is None:
        yield
        return
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed.set_hf_deepspeed_config(config)


def _reference_model(tokenizer, model_args, finetuning_args, training_args):
    """(model, context) giving the reference LF's DPO workflow would use (train/dpo/workflow.py, trainer.py)."""
    with _whole_weights():
        return _load_reference(tokenizer, model_args, finetuning_args, training_args)


def _load_reference(tokenizer, model_args, finetuning_args, training_args):
    from contextlib import nullcontext

    from llamafactory.model import load_model
    from llamafactory.train.trainer_utils import create_ref_model
    from trl.trainer import disable_dropout_in_model

    if finetuning_args.ref_model is None and finetuning_args.finetuning_type == "lora":
        model = load_model(tokenizer, model_args, finetuning_args, training_args.do_train)
        context = model.disable_adapter()
    else:
        model = create_ref_model(model_args, finetuning_args)
        context = nullcontext()
    disable_dropout_in_model(model)
    model.eval()
    if not getattr(model, "is_loaded_in_8bit", False) and not getattr(model, "is_loaded_in_4bit", False):
        model.to(training_args.device)
    return model, context


def _datasets(dataset_module: Mapping[str, Any]) -> list:
    found = [dataset_module.get("train_dataset")]
    evaluation = dataset_module.get("eval_dataset")
    found += list(evaluation.values()) if isinstance(evaluation, dict) else [evaluation]
    return [dataset for dataset in found if dataset is not None]


def compute_values(parsed, rank: int, world: int) -> dict[str, list[float]]:
    """This rank's share (every world-th pair) of all train and eval pairs: key -> [chosen sum, rejected sum,
    chosen label count, rejected label count]."""
    import torch
    from llamafactory.data import PairwiseDataCollatorWithPadding, get_dataset, get_template_and_fix_tokenizer
    from llamafactory.extras.constants import IGNORE_INDEX
    from llamafactory.model import load_tokenizer
    from llamafactory.train.trainer_utils import get_batch_logps

    model_args, data_args, training_args, finetuning_args, _ = parsed
    tokenizer_module = load_tokenizer(model_args)
    tokenizer = tokenizer_module["tokenizer"]
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    dataset_module = get_dataset(template, model_args, data_args, training_args, stage="rm", **tokenizer_module)
    model, context = _reference_model(tokenizer, model_args, finetuning_args, training_args)
    collator = PairwiseDataCollatorWithPadding(
        template=template, model=model, pad_to_multiple_of=8,
        label_pad_token_id=IGNORE_INDEX if data_args.ignore_pad_token_for_loss else tokenizer.pad_token_id,
        **tokenizer_module)
    per_batch = max(1, int(training_args.per_device_train_batch_size))
    values: dict[str, list[float]] = {}
    device = training_args.device
    with torch.no_grad(), context:
        for dataset in _datasets(dataset_module):
            indices = list(range(rank, len(dataset), world))
            for start in range(0, len(indices), per_batch):
                batch = collator([dataset[i] for i in indices[start:start + per_batch]])
                batch = {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}
                keys = pair_keys(batch)
                labels = batch.pop("labels")
                logits = model(**batch, return_dict=True, use_cache=False).logits.to(torch.float32)
                logps, lengths = get_batch_logps(logits=logits, labels=labels, ld_alpha=None)
                half = len(keys)
                for i, key in enumerate(keys):
                    values[key] = [logps[i].item(), logps[i + half].item(), int(lengths[i]), int(lengths[i + half])]
    del model
    return values


def prepare(cfg: Mapping[str, Any], root: Path, rank: int) -> tuple[Path, dict[str, list[float]]]:
    """Make sure `<root>/<key>/ref_logps.json` exists for this run (computing it when missing); return it and its
    values. Called on every rank before training; rank 0 alone reads the model and data files for the key (the
    other ranks take its key, so that they write their shares where it merges them) and decides; every rank computes
    its share of a missing cache."""
    from llamafactory.hparams import get_train_args

    world = int(os.environ.get("WORLD_SIZE", "1"))
    parsed = get_train_args(dict(cfg))
    device_type = parsed[2].device.type  # also joins the process group under torchrun (TrainingArguments)
    components: dict[str, Any] = {}
    decision = None
    if rank == 0:
        components = key_components(cfg, device_type)
        key = cache_key(components)
        decision = (key, (root / key / VALUES_FILE).is_file())
    key, hit = _decide_on_rank0(decision)
    entry = root / key
    values_file = entry / VALUES_FILE
    if hit:
        values = load_values(values_file)
        if rank == 0:
            console.say(f"{PREFIX}: cache hit {entry} ({len(values)} pairs); skipping the pass, no reference model "
                        "is built for training")
        return values_file, values
    if rank == 0:
        console.say(f"{PREFIX}: computing them ({miss_reason(root, key, components)}); cache {entry}")
    started = time.monotonic()
    share = compute_values(parsed, rank, world)
    parts = entry / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    write_text_atomic(parts / f"rank-{rank}.json", json.dumps(share))
    _barrier()
    merged: dict[str, list[float]] = {}
    if rank == 0:
        for part in range(world):
            merged.update(json.loads((parts / f"rank-{part}.json").read_text(encoding="utf-8")))
        write_text_atomic(entry / MANIFEST_FILE, json.dumps({"key": key, "components": components}, indent=1,
                                                            default=str))
        write_text_atomic(values_file, json.dumps({"format": FORMAT, "pairs": merged}))
        shutil.rmtree(parts, ignore_errors=True)  # every rank wrote its share before the barrier
        console.say(f"{PREFIX}: {len(merged)} pairs computed in {time.monotonic() - started:.1f}s on {world} "
                    f"rank(s); saved {values_file}")
    _barrier()
    _release_memory()
    return values_file, merged if rank == 0 else load_values(values_file)


def _release_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def install(values_file: Path, values: Mapping[str, list[float]]) -> None:
    """Training reads the cache: LF's DPO workflow builds no reference model, and the trainer's reference
    log-probs are `values`, as `prepare` read them from `values_file`."""
    import torch
    from llamafactory.train.dpo import workflow
    from llamafactory.train.dpo.trainer import CustomDPOTrainer

    def no_reference_model(*args, **kwargs):
        return None

    def compute_reference_log_probs(self, model, batch):
        if not self.finetuning_args.use_ref_model:
            return None, None
        keys = pair_keys(batch)
        missing = [i for i, key in enumerate(keys) if key not in values]
        if missing:
            raise RefCacheError(
                f"the reference log-probs cache {values_file} has no entry for {len(missing)} of this batch's "
                f"{len(keys)} pairs: the pairs' tokens differ from those the cache was computed for; delete "
                f"{values_file.parent} (or use another --precompute-ref-cache) to recompute it")
        rows = torch.tensor([values[key] for key in keys], dtype=torch.float64)
        device = batch["input_ids"].device
        chosen = rows[:, 0].to(torch.float32).to(device)
        rejected = rows[:, 1].to(torch.float32).to(device)
        if self.loss_type in AVERAGED_LOSSES:  # as concatenated_forward: float32 sum / int64 label count
            chosen = chosen / rows[:, 2].to(torch.int64).to(device)
            rejected = rejected / rows[:, 3].to(torch.int64).to(device)
        return chosen, rejected

    workflow.create_ref_model = no_reference_model
    CustomDPOTrainer.compute_reference_log_probs = compute_reference_log_probs
    CustomDPOTrainer.dpo_launch_ref_cache = str(values_file)  # what runtime.json reports as the reference
