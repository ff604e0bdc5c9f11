"""Differential against LLaMA-Factory over generated values: what it refuses, validate refuses.

"It refuses" covers its parser, its argument `__post_init__`s and transformers' TrainingArguments checks
(`get_train_args`), plus the library calls that receive a config value only once training starts: `datasets`'
map (preprocessing_num_workers), torch's DataLoader (dataloader_num_workers), RandomSampler (an empty dataset after
max_samples), AdamW (betas, epsilon, weight decay) and the Trainer's checkpoint loader (resume_from_checkpoint).
Values come from the schema: for every key, 0, -1, 1 and 2**33 for integers, 0, -1, -0.5, 0.5, 1.5 for numbers,
true for booleans and each choice of a short enum, each alone on a DPO config and in a few contexts (evaluation
by steps, load_best_model_at_end, dataloader workers). The direction is one way: validate is stricter where
LLaMA-Factory accepts nonsense (pref_beta: 0 trains, badly).

A refusal that depends on the machine (bf16 without a GPU, a package this environment lacks) must be a
`machine-*` note in validate, enforced by `train` where the job runs (tests/run/test_preflight.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.check.config import LoadedConfig
from launcher.check.config_schema import check_config_schema
from launcher.check.diagnostics import ERROR, Diagnostic
from launcher.check.rules.registry import check_rules
from launcher.check.schemas import lf_properties

from support.cli import cli_env

BASE = {"model_name_or_path": "org/tiny-model", "stage": "dpo", "do_train": True, "finetuning_type": "lora",
        "dataset": "demo", "output_dir": "out", "report_to": "none", "template": "default"}
CONTEXTS = {
    "alone": {},
    "eval-steps": {"eval_strategy": "steps", "val_size": 0.1, "eval_steps": 10},
    "best-model": {"eval_strategy": "steps", "val_size": 0.1, "eval_steps": 10, "save_steps": 20,
                   "load_best_model_at_end": True},
    "workers": {"dataloader_num_workers": 2},
}
# Keys whose values are not a config's business here: what BASE fixes, hub credentials and pushes, and launches
# that `dpo-launch train` owns (deepspeed, fsdp, torch.compile need the distributed or compiled run to test).
FIXED = {"model_name_or_path", "stage", "do_train", "dataset", "output_dir", "template", "report_to", "hub_token",
         "push_to_hub", "deepspeed", "fsdp", "fsdp_config", "torch_compile", "torchdynamo", "use_ray",
         "ray_num_workers"}
# Refusals that only the machine or the launch decides, with the reason validate does not call them errors.
NOT_CONFIG_ERRORS = {
    "ddp_backend": "the parser runs without a process group; `dpo-launch train` starts torchrun, which makes one",
    "use_kt": "KTransformers is another launcher (USE_KT); dpo-launch clears it and runs the v0 DPO/KTO path",
}
RUNTIME = {
    "preprocessing_num_workers": (0, -1, 1),
    "dataloader_num_workers": (-1, 0, 2),
    "max_samples": (0, -1, 1),
    "adam_beta1": (-0.1, 0.0, 0.9, 1.0), "adam_beta2": (-0.1, 0.999, 1.0),
    "adam_epsilon": (-1e-8, 0.0), "weight_decay": (-0.01, 0.0, 0.1),
    "resume_from_checkpoint": ("missing/checkpoint-8", "empty", "weights-only", "complete"),
}

PROBE = r"""
import contextlib, io, json, logging, os, sys, types
os.environ["DISABLE_VERSION_CHECK"] = "1"
from llamafactory.hparams import get_train_args
import datasets, torch
from transformers import Trainer
logging.disable(logging.CRITICAL)
datasets.disable_progress_bars()
cases = json.load(open(sys.argv[1]))

def refusal(call):
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            call()
    except Exception as exc:
        return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
    return None

def runtime(key, value):
    if key == "preprocessing_num_workers":
        return lambda: datasets.Dataset.from_dict({"a": [1, 2]}).map(lambda row: row, num_proc=value)
    if key == "dataloader_num_workers":
        return lambda: torch.utils.data.DataLoader(list(range(4)), num_workers=value)
    if key == "max_samples":  # LLaMA-Factory: dataset.select(range(min(max_samples, len(dataset))))
        return lambda: torch.utils.data.RandomSampler(list(range(max(min(value, 4), 0))))
    if key == "resume_from_checkpoint":
        def load():
            try:
                Trainer._load_from_checkpoint(types.SimpleNamespace(model=None), value)
            except ValueError as exc:
                if "valid checkpoint" in str(exc):
                    raise
            except AttributeError:  # past the check: loading weights into the missing model
                pass
        return load
    settings = {"lr": 1e-5, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}
    name = {"adam_beta1": "betas", "adam_beta2": "betas", "adam_epsilon": "eps", "weight_decay": "weight_decay"}[key]
    settings[name] = (value, 0.999) if key == "adam_beta1" else (0.9, value) if key == "adam_beta2" else value
    return lambda: torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], **settings)

results = {name: refusal(lambda: get_train_args(dict(config))) for name, config in cases["parse"].items()}
results.update({name: refusal(runtime(key, value)) for name, (key, value) in cases["runtime"].items()})
print("RESULTS " + json.dumps(results))
"""


def generated_values(schema: dict) -> list:
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    values: list = [value for value in schema.get("enum", []) if value is not None] if len(schema.get(
        "enum", [])) <= 12 else []
    if "integer" in types:
        values += [0, -1, 1, 2 ** 33]
    elif "number" in types:
        values += [0, -1, -0.5, 0.5, 1.5]
    if "boolean" in types:
        values.append(True)
    return values


def parse_cases() -> dict[str, dict]:
    cases = {}
    for context, settings in CONTEXTS.items():
        for key, schema in lf_properties().items():
            if key in FIXED or key in settings:
                continue
            for value in generated_values(schema):
                cases[f"{context}: {key}={json.dumps(value)}"] = {**BASE, **settings, key: value}
    return cases


def runtime_cases(workspace: Path) -> dict[str, tuple[str, object]]:
    for name, files in (("empty", ()), ("weights-only", ("model.safetensors",)),
                        ("complete", ("model.safetensors", "trainer_state.json"))):
        (workspace / name).mkdir()
        for file in files:
            (workspace / name / file).write_text("{}")
    return {f"runtime: {key}={json.dumps(value)}": (key, value) for key, values in RUNTIME.items() for value in values}


def validate(values: dict, cwd: Path) -> list[Diagnostic]:
    loaded = LoadedConfig(cwd / "config.yaml", dict(values))
    return check_config_schema(loaded) + check_rules(loaded, cwd)


@pytest.mark.slow
@pytest.mark.subprocess
def test_every_value_llamafactory_or_the_libraries_it_calls_refuse_is_an_error_in_validate(tmp_path):
    pytest.importorskip("llamafactory")
    parse, runtime = parse_cases(), runtime_cases(tmp_path)
    (tmp_path / "cases.json").write_text(json.dumps({"parse": parse, "runtime": runtime}))

    probe = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "cases.json")], cwd=tmp_path,
                           capture_output=True, text=True, timeout=1200, env=cli_env())
    marker = next((line for line in probe.stdout.splitlines() if line.startswith("RESULTS ")), None)
    assert marker is not None, probe.stderr[-3000:]
    refused = {name: why for name, why in json.loads(marker.removeprefix("RESULTS ")).items() if why}

    configs = {**parse, **{name: {**BASE, key: value} for name, (key, value) in runtime.items()}}
    missed = []
    for name, why in refused.items():
        key = name.split(": ", 1)[1].split("=")[0]
        found = validate(configs[name], tmp_path)
        if any(d.severity == ERROR for d in found) or key in NOT_CONFIG_ERRORS:
            continue
        if not any(d.code.startswith("machine-") and d.path == key for d in found):
            missed.append(f"{name}: {why}")
    assert missed == []
    # The sweep is not vacuous: LLaMA-Factory refused values in every part of it.
    assert {name.split(":")[0] for name in refused} == {*CONTEXTS, "runtime"}
    assert len(refused) > 100
