"""The run directory: what `train` records in `<output_dir>/dpo-launch/` before training starts, and what it
finds in an `output_dir` that already holds a run.

Every file is written atomically (launcher.atomic: a temporary file in the same directory, then
`os.replace`), so a crash or a full disk leaves either the old file or the new one, never half of one.
No heavy imports: package versions come from installed metadata.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from launcher.atomic import write_text_atomic
from launcher.launch import run_dir

# Files LLaMA-Factory treats as a finished model in output_dir (llamafactory/extras/constants.py
# CHECKPOINT_NAMES): with one of them and no checkpoint it refuses to start.
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin", "model.safetensors",
                "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
# transformers' trainer_utils._re_checkpoint
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
VERSIONED_PACKAGES = ("dpo-launch", "llamafactory", "torch", "transformers", "trl", "peft", "accelerate",
                      "datasets", "deepspeed", "tensorboard", "tokenizers")
REMOTE_KEYS = ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")


def checkpoints(output_dir: Path) -> list[Path]:
    """The `checkpoint-N` directories in `output_dir`, by step."""
    if not Path(output_dir).is_dir():
        return []
    found = [p for p in Path(output_dir).iterdir() if CHECKPOINT_RE.match(p.name) and p.is_dir()]
    return sorted(found, key=lambda p: int(CHECKPOINT_RE.match(p.name).group(1)))


def weight_files(output_dir: Path) -> list[Path]:
    return [Path(output_dir) / name for name in WEIGHT_FILES if (Path(output_dir) / name).is_file()]


def dump_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def write_run_files(output_dir: Path, files: Mapping[str, str]) -> list[Path]:
    """Write each `name -> text` into `<output_dir>/dpo-launch/`, atomically; returns the paths written."""
    written = []
    for name, text in files.items():
        path = run_dir(output_dir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text)
        written.append(path)
    return written


def run_files(resolved_args: Mapping[str, Any], cwd: Path, plan: dict | None = None) -> dict[str, str]:
    """The contents of the run directory, as `file name -> text`."""
    files = {
        "resolved_config.json": dump_json(dict(resolved_args)),
        "resolved_config.yaml": yaml.safe_dump(dict(resolved_args), sort_keys=False, allow_unicode=True),
        "versions.json": dump_json(package_versions()),
        "datasets.json": dump_json(dataset_fingerprints(resolved_args, cwd)),
    }
    if plan is not None:
        files["plan.json"] = dump_json(plan)
    return files


def package_versions() -> dict[str, Any]:
    """Installed versions of the training stack, read from package metadata (nothing is imported)."""
    versions: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def dataset_fingerprints(config: Mapping[str, Any], cwd: Path) -> dict[str, Any]:
    """sha256 and size of each local file behind `dataset` and `eval_dataset`, as LLaMA-Factory resolves them."""
    dataset_dir = Path(cwd) / str(config.get("dataset_dir") or "data")
    info = _read_dataset_info(dataset_dir / "dataset_info.json")
    result: dict[str, Any] = {"dataset_dir": str(dataset_dir), "datasets": {}}
    for key in ("dataset", "eval_dataset"):
        for name in _names(config.get(key)):
            result["datasets"][name] = _fingerprint_entry(info.get(name), dataset_dir)
    return result


def _fingerprint_entry(entry: Any, dataset_dir: Path) -> dict[str, Any]:
    if not isinstance(entry, dict):
        return {"error": "not in dataset_info.json"}
    remote = {k: entry[k] for k in REMOTE_KEYS if entry.get(k)}
    if remote or not entry.get("file_name"):
        return {"remote": remote}
    path = dataset_dir / str(entry["file_name"])
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return {"files": [_fingerprint_file(p) for p in files]}


def _fingerprint_file(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        return {"path": str(path), "error": exc.strerror or str(exc)}
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _read_dataset_info(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _names(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value or "").split(",") if part.strip()]
