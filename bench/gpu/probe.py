"""What the GPU check's Python sees: the stack's versions and where each comes from, whether it imports, the
device, a one-rank collective, flash-attn, and the carried wheels' requirements as actually installed.

    python bench/gpu/probe.py --json-out FILE [--site DIR]

bench/gpu/check.py runs it in a subprocess with the check's environment (PYTHONPATH: the carried wheels in
`--site`, then the repository), so the check itself never holds a CUDA context. It writes one JSON object to
FILE (stdout is left to the libraries' own chatter) and exits 0 even when an import fails: the failure is data.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as metadata
import importlib.util
import json
import platform
import tempfile
from pathlib import Path

import wheels
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

DISTRIBUTIONS = ("torch", "transformers", "tokenizers", "trl", "peft", "accelerate", "datasets", "llamafactory",
                 "deepspeed", "huggingface-hub", "tensorboard")
# What a `dpo-launch train` rank imports, LLaMA-Factory's trainer entry point included.
IMPORTS = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "deepspeed", "tensorboard",
           "llamafactory.train.tuner", "launcher.worker.main")


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def imports() -> dict[str, str | None]:
    """Each module of IMPORTS: None when it imports, else the error in one line."""
    errors: dict[str, str | None] = {}
    for module in IMPORTS:
        try:
            importlib.import_module(module)
            errors[module] = None
        except Exception as exc:  # any failure to import is what this probe reports
            errors[module] = one_line(exc)
    return errors


def versions(site: Path | None) -> dict[str, dict[str, str] | None]:
    """{distribution: {version, origin}}: origin 'carried' when it is installed in `site`, else 'preinstalled'."""
    found: dict[str, dict[str, str] | None] = {}
    for name in DISTRIBUTIONS:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            found[name] = None
            continue
        location = Path(str(dist.locate_file(""))).resolve()
        carried = site is not None and location == site.resolve()
        found[name] = {"version": dist.version, "origin": "carried" if carried else "preinstalled"}
    return found


def device() -> dict:
    import torch

    info = {"torch": torch.__version__, "cuda_runtime": torch.version.cuda, "cuda": torch.cuda.is_available()}
    if info["cuda"]:
        props = torch.cuda.get_device_properties(0)
        a = torch.randn(256, 256, device="cuda", dtype=torch.bfloat16)
        nccl = torch.cuda.nccl.version()  # a tuple in torch 2.x, an int in older releases
        info.update(name=props.name, capability=f"{props.major}.{props.minor}",
                    memory_gib=round(props.total_memory / 2**30, 1), bf16=torch.cuda.is_bf16_supported(),
                    bf16_matmul=bool(torch.isfinite((a @ a).float()).all().item()),
                    nccl=".".join(map(str, nccl)) if isinstance(nccl, tuple) else str(nccl))
    return info


def one_rank_all_reduce(cuda: bool) -> dict:
    """A process group of one rank (NCCL on a GPU, gloo on CPU) and one all_reduce through it."""
    import torch
    import torch.distributed as dist

    backend = "nccl" if cuda else "gloo"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            dist.init_process_group(backend, init_method=f"file://{tmp}/store", rank=0, world_size=1)
            try:
                tensor = torch.ones(4, device="cuda" if cuda else "cpu")
                dist.all_reduce(tensor)
                ok = float(tensor.sum()) == 4.0
            finally:
                dist.destroy_process_group()
        return {"backend": backend, "ok": ok, "error": None}
    except Exception as exc:  # a broken backend is the finding
        return {"backend": backend, "ok": False, "error": one_line(exc)}


def flash_attn() -> dict:
    if importlib.util.find_spec("flash_attn") is None:
        return {"importable": False, "version": None, "why": "flash_attn is not installed"}
    try:
        module = importlib.import_module("flash_attn")
    except Exception as exc:  # an ABI mismatch with this torch shows up here
        return {"importable": False, "version": None, "why": f"import flash_attn fails: {one_line(exc)}"}
    return {"importable": True, "version": getattr(module, "__version__", "?"), "why": None}


def unmet_requirements(site: Path, left_behind: frozenset[str] = frozenset()) -> tuple[int, list[str]]:
    """(wheels installed in `site`, the requirements of theirs that the installed versions do not meet), leaving
    out the requirements left behind on purpose (wheels.toml's [left_behind], by canonical name)."""
    carried = list(metadata.distributions(path=[str(site)]))
    unmet = []
    for dist in carried:
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            if canonicalize_name(requirement.name) in left_behind:
                continue
            try:
                installed = metadata.version(requirement.name)
            except metadata.PackageNotFoundError:
                installed = None
            if installed is None or not requirement.specifier.contains(installed, prereleases=True):
                unmet.append(f"{dist.metadata['Name']} {dist.version} requires {requirement}, "
                             f"found {installed or 'nothing'}")
    return len(carried), sorted(set(unmet))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--json-out", type=Path, required=True)
    parser.add_argument("--site", type=Path, help="where check.sh installed the carried wheels")
    args = parser.parse_args(argv)
    report: dict = {"python": platform.python_version(), "imports": imports(), "versions": versions(args.site),
                    "flash_attn": flash_attn()}
    if report["imports"]["torch"] is None:
        report["device"] = device()
        report["distributed"] = one_rank_all_reduce(report["device"]["cuda"])
    if args.site is not None:
        report["carried"], report["unmet"] = unmet_requirements(args.site, frozenset(wheels.load_pins()[1]))
    args.json_out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
