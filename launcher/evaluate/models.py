"""The models an evaluation talks about, read from a run directory without importing torch.

A `ModelSpec` is what LLaMA-Factory needs to load a model: a checkpoint, the adapters applied to it (merged for
inference), the finetuning type and the chat template. From a finished run (`<output_dir>/dpo-launch/
resolved_config.json`, written by `dpo-launch train`):

- the **policy**: the trained weights in output_dir (full/freeze), or the base with the run's own adapter
  output_dir on top of the adapters the run started from (lora/oft);
- the **reference** the run trained against (launcher.lf.resolve: an explicit ref_model with its adapters, the
  base with the merged adapters for LoRA, a frozen copy of the base otherwise, none for ORPO/SimPO);
- the **base**: the model the run started from (model_name_or_path with the config's adapters).

Relative paths in a run's config are relative to the directory `train` was started from; it is recovered from
datasets.json (the absolute dataset_dir the run recorded), else the current directory is used.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from launcher.errors import UserError
from launcher.layout import RESOLVED_CONFIG, run_dir, weight_files
from launcher.lf.resolve import ADAPTER_DISABLED, EXPLICIT, NONE, resolve_reference
from launcher.lf.settings import setting, split_arg

ADAPTER_TYPES = ("lora", "oft")  # what LLaMA-Factory saves as an adapter in output_dir


@dataclass(frozen=True)
class ModelSpec:
    """A model as LLaMA-Factory loads it for inference (`model_name_or_path` + adapters + template)."""

    model: str
    adapters: tuple[str, ...] = ()
    finetuning_type: str = "full"
    template: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # trust_remote_code, quantization_bit, ...

    def lf_args(self) -> dict[str, Any]:
        """ModelArguments for ChatModel/run_exp: adapters are merged at load time (is_trainable=False)."""
        args: dict[str, Any] = {"model_name_or_path": self.model, **self.extra}
        if self.adapters:
            args["adapter_name_or_path"] = ",".join(self.adapters)
            args["finetuning_type"] = self.finetuning_type
        if self.template:
            args["template"] = self.template
        return args

    def describe(self) -> str:
        return self.model + (f" + adapter {', '.join(self.adapters)}" if self.adapters else "")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"adapters": list(self.adapters)}


# Model keys carried from a run's config into inference and evaluation.
CARRIED_MODEL_KEYS = ("trust_remote_code", "quantization_bit", "quantization_method", "rope_scaling", "flash_attn",
                      "cache_dir", "model_revision", "hf_hub_token")


@dataclass(frozen=True)
class Run:
    """A finished (or stopped) training run: its directory, resolved config and launch directory."""

    output_dir: Path
    config: dict[str, Any]
    launch_dir: Path

    @classmethod
    def load(cls, path: str | Path) -> Run:
        output_dir = Path(path).absolute()
        manifest = run_dir(output_dir) / RESOLVED_CONFIG
        try:
            config = json.loads(manifest.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"{output_dir} is not a dpo-launch run directory: {manifest} is missing (pass the "
                            "output_dir of a run started with `dpo-launch train`)") from None
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read {manifest}: {exc}") from None
        return cls(output_dir, config, _launch_dir(output_dir, config))

    @property
    def stage(self) -> str:
        return str(setting(self.config, "stage"))

    @property
    def finetuning_type(self) -> str:
        return str(setting(self.config, "finetuning_type"))

    def path(self, value: str) -> str:
        """A path from the run's config, absolute when it names something under the launch directory."""
        candidate = Path(value).expanduser()
        if candidate.is_absolute():
            return str(candidate)
        local = self.launch_dir / candidate
        return str(local) if local.exists() else value  # else a hub id, as LLaMA-Factory would read it

    def spec(self, model: str, adapters: list[str] | tuple[str, ...] = ()) -> ModelSpec:
        extra = {key: self.config[key] for key in CARRIED_MODEL_KEYS if self.config.get(key) is not None}
        return ModelSpec(self.path(model), tuple(self.path(a) for a in adapters),
                         self.finetuning_type if adapters else "full", self.config.get("template"), extra)

    def base(self) -> ModelSpec:
        """The model the run started from."""
        return self.spec(str(self.config["model_name_or_path"]), split_arg(self.config.get("adapter_name_or_path")))

    def policy(self) -> ModelSpec:
        """The trained model: refuses a run that saved no final weights."""
        if self.finetuning_type in ADAPTER_TYPES:
            if not (self.output_dir / "adapter_config.json").is_file():
                raise UserError(self._no_model("an adapter (adapter_config.json)"))
            start = resolve_reference(self.config).adapters if self.finetuning_type == "lora" else \
                tuple(split_arg(self.config.get("adapter_name_or_path")))
            return self.spec(str(self.config["model_name_or_path"]), [*start, str(self.output_dir)])
        if not weight_files(self.output_dir):
            raise UserError(self._no_model("model weights (model.safetensors or pytorch_model.bin)"))
        return self.spec(str(self.output_dir))

    def reference(self) -> ModelSpec | None:
        """The reference the run trained against; None for reference-free losses (ORPO, SimPO)."""
        resolved = resolve_reference(self.config)
        if resolved.kind == NONE:
            return None
        if resolved.kind == EXPLICIT:
            return self.spec(str(self.config["ref_model"]), split_arg(self.config.get("ref_model_adapters")))
        if resolved.kind == ADAPTER_DISABLED:
            return self.spec(str(self.config["model_name_or_path"]), resolved.adapters)
        return self.base()

    def final_step(self) -> int:
        """The run's last global step (trainer_state.json), 0 when unknown."""
        try:
            state = json.loads((self.output_dir / "trainer_state.json").read_text(encoding="utf-8"))
            return int(state.get("global_step") or 0)
        except (OSError, ValueError, TypeError):
            return 0

    def _no_model(self, what: str) -> str:
        return (f"{self.output_dir} holds no final model ({what} is missing): the run has not finished; finish it "
                f"with `dpo-launch train CONFIG --resume`, or evaluate a checkpoint's weights as a MODEL")


def _launch_dir(output_dir: Path, config: dict[str, Any]) -> Path:
    """The directory `train` ran in: datasets.json has the absolute dataset_dir, the config the relative one."""
    try:
        recorded = json.loads((run_dir(output_dir) / "datasets.json").read_text(encoding="utf-8"))["dataset_dir"]
    except (OSError, ValueError, KeyError, TypeError):
        return Path.cwd()
    relative = Path(os.path.normpath(str(config.get("dataset_dir") or "data")))
    absolute = Path(recorded)
    if relative == Path("."):
        return absolute
    if relative.is_absolute() or absolute.parts[-len(relative.parts):] != relative.parts:
        return Path.cwd()
    return Path(*absolute.parts[:-len(relative.parts)]) if len(absolute.parts) > len(relative.parts) else Path.cwd()


def model_source(value: str, template: str | None = None, cwd: Path | None = None) -> ModelSpec:
    """MODEL_OR_RUN as the user named it: a dpo-launch run directory (its trained model and template), a
    LLaMA-Factory config (its model, adapters and template), an adapter folder (on the base its
    adapter_config.json names), a model folder or a hub id. `template` overrides the one found."""
    path = (cwd or Path.cwd()) / Path(value).expanduser()
    if (run_dir(path) / RESOLVED_CONFIG).is_file():
        spec = Run.load(path).policy()
    elif path.is_file() and path.suffix in (".yaml", ".yml", ".json"):
        spec = _config_model(path)
    elif (path / "adapter_config.json").is_file():
        spec = _adapter_model(path)
    elif path.is_dir():
        spec = ModelSpec(str(path.absolute()))
    elif path.exists():
        raise UserError(f"{value} is neither a run directory, a config, nor a model folder")
    else:
        spec = ModelSpec(value)  # a hub id: LLaMA-Factory resolves it (dpo-launch does not download)
    return replace(spec, template=template) if template else spec


def _config_model(path: Path) -> ModelSpec:
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    if not isinstance(config, dict) or not config.get("model_name_or_path"):
        raise UserError(f"{path} names no model_name_or_path")
    run = Run(path.parent, config, Path.cwd())
    return run.base()


def _adapter_model(path: Path) -> ModelSpec:
    try:
        base = json.loads((path / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path / 'adapter_config.json'}: {exc}") from None
    if not base:
        raise UserError(f"{path / 'adapter_config.json'} names no base_model_name_or_path; pass the base model and "
                        "the adapter in a LLaMA-Factory config instead")
    return ModelSpec(str(base), (str(path.absolute()),), "lora")
