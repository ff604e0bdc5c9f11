"""The plan: what `train` would do with a validated config, as stable JSON data.

`dpo-launch plan --format json` prints it, `plan` renders it (launcher.plan.render) and `train` writes it to
`<output_dir>/dpo-launch/plan.json`. It combines the reference model and the loss (launcher.lf), batch and
steps, the memory estimate and the exact launch of every node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from launcher.check.data.datasets import local_dataset_sizes
from launcher.check.diagnostics import Diagnostic
from launcher.check.validation import ValidationResult
from launcher.lf.deepspeed import ZeroSettings, zero_settings
from launcher.lf.resolve import as_dict, resolve_loss_plan, resolve_reference
from launcher.plan.batch import resolve_batch
from launcher.plan.gpus import GpuMemory
from launcher.plan.launch import launch_for_node
from launcher.plan.memory import MemoryEstimate, estimate_memory
from launcher.plan.memory_advice import ways_out
from launcher.plan.topology import Topology, visible_gpus


def build_plan(result: ValidationResult, topology: Topology, cwd: Path, env: Mapping[str, str],
               check_data: bool = True, gpu_memory: GpuMemory | None = None) -> dict[str, Any]:
    """The plan as stable JSON data: what `--format json` prints and what `train` writes to plan.json.
    With `gpu_memory` (detected or --gpu-memory), an estimate above it lists the ways out."""
    loaded = result.config
    assert loaded is not None, "plan a config that loaded"  # callers refuse a result that is not ok
    values = loaded.values
    zero = zero_settings(values, cwd)
    reference = resolve_reference(values, zero.stage)
    loss = resolve_loss_plan(values)
    sizes = local_dataset_sizes(loaded, cwd, result.data_summary) if check_data else {}
    batch = resolve_batch(values, topology.world_size, sizes)
    memory = estimate_memory(values, reference, topology.world_size, cwd, zero)
    findings = [loaded.diagnostic(f.severity, f.code, f.message, f.key, hint=f.hint)
                for f in (*reference.warnings, *loss.findings)]
    diagnostics = _unique([*result.diagnostics, *findings])
    reference_data = as_dict(reference)
    reference_data.pop("warnings")
    loss_data = as_dict(loss)
    loss_data.pop("findings")
    return {
        "config": loaded.file,
        "reference": reference_data,
        "loss": loss_data,
        "batch": as_dict(batch),
        "memory": {**memory_data(memory), **fit_data(memory, gpu_memory, values, topology.world_size, cwd, zero)},
        "launch": launch_plan(values, topology, cwd, env),
        "diagnostics": [asdict(d) for d in diagnostics],
    }


def _unique(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """Validate may already report what resolve finds (e.g. the SFT-adapter trap): keep one per code and key."""
    seen, kept = set(), []
    for diagnostic in diagnostics:
        key = (diagnostic.code, diagnostic.path, diagnostic.file, diagnostic.record)
        if key not in seen:
            seen.add(key)
            kept.append(diagnostic)
    return kept


def memory_data(memory: MemoryEstimate) -> dict[str, Any]:
    return {
        "zero": memory.zero, "parameters": memory.parameters, "trainable_parameters": memory.trainable_parameters,
        "model_source": memory.model_source,
        "terms": [{"name": t.name, "gib": t.gib, "formula": t.formula} for t in memory.terms],
        "total_gib": memory.total_gib,
        "by_zero_stage": [{"zero": label, "total_gib": total} for label, total in memory.by_zero_stage],
        "precomputed_ref_total_gib": memory.precomputed_ref_gib,
        "notes": list(memory.notes),
        "estimate": True,
    }


def fit_data(memory: MemoryEstimate, gpu: GpuMemory | None, values: Mapping[str, Any], world: int, cwd: Path,
             zero: ZeroSettings) -> dict[str, Any]:
    """The GPU memory planned against, whether the estimate fits, and when it does not, the ways out."""
    if gpu is None or memory.total_gib is None:
        return {"gpu_memory": None if gpu is None else asdict(gpu), "fits": None, "ways_out": []}
    fits = memory.total_gib <= gpu.gib
    found = [] if fits else [{**asdict(way), "fits": way.total_gib is not None and way.total_gib <= gpu.gib}
                             for way in ways_out(values, world, cwd, zero)]
    return {"gpu_memory": asdict(gpu), "fits": fits, "ways_out": found}


def launch_plan(values: Mapping[str, Any], topology: Topology, cwd: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """argv and environment for every node, from the builder `train` runs (launch_for_node)."""
    gpus = visible_gpus(env)
    nodes = [launch_for_node(values, topology.for_node(rank), cwd, env, gpus=gpus)
             for rank in range(topology.nnodes)]
    return {"topology": asdict(topology), "world_size": topology.world_size, "device": "cuda" if gpus else "cpu",
            "free_port_at_launch": topology.nnodes == 1 and topology.world_size > 1,
            "nodes": [{"node_rank": rank, **spec.to_dict()} for rank, spec in enumerate(nodes)]}
