"""`dpo-launch plan` for people: the plan dict (commands/plan.py build_plan) rendered as text.

Rich draws the memory tables; without a terminal it prints plain text at a fixed width, so logs and tests
see the same output every time.
"""

from __future__ import annotations

import shlex
from typing import Any, TextIO

from launcher.check.diagnostics import Diagnostic

PLAIN_WIDTH = 110


def render_plan(plan: dict[str, Any], stream: TextIO) -> None:
    from rich.console import Console

    terminal = hasattr(stream, "isatty") and stream.isatty()
    console = Console(file=stream, width=None if terminal else PLAIN_WIDTH, highlight=False, no_color=not terminal,
                      emoji=False)

    def say(*lines: str) -> None:  # plain lines: never wrapped, never parsed as rich markup
        for line in lines:
            console.print(line, markup=False, soft_wrap=True)

    say(f"dpo-launch plan for {plan['config']} (nothing is launched; memory is an estimate)")
    for section in (_reference, _loss, _batch):
        say("", *section(plan))
    say("")
    _memory(plan["memory"], plan["launch"]["world_size"], console, say)
    fit = fit_lines(plan["memory"])
    if fit:
        say("", *fit)
    say("", *_launch(plan["launch"]))
    diagnostics = [Diagnostic(**d) for d in plan["diagnostics"]]
    if diagnostics:
        say("", *(d.render() for d in diagnostics))
    warnings = sum(d.severity == "warning" for d in diagnostics)
    say("", *train_lines(plan, warnings))


def train_lines(plan: dict[str, Any], warnings: int) -> list[str]:
    """The last lines: what `train` would refuse here (its own checks: launcher.run.readiness) and the exact
    command, with the overrides and launch flags `plan` was given."""
    train = plan.get("train") or {}
    command = shlex.join(train.get("command") or ["dpo-launch", "train", plan["config"]])
    counted = f"{warnings} warning{'s' * (warnings != 1)}"
    refusals = [Diagnostic(**d) for d in train.get("refusals", [])]
    if not refusals:
        return [f"✓ plan ready, {counted}; run it with: {command}"]
    return ["`dpo-launch train` would refuse this on this machine, before starting anything:",
            *(d.render() for d in refusals),
            f"✗ not ready here: {len(refusals)} error{'s' * (len(refusals) != 1)} above, {counted}; once they are "
            f"fixed, run: {command}"]


def _reference(plan: dict[str, Any]) -> list[str]:
    reference = plan["reference"]
    return [f"Reference model: {reference['kind']}", f"  {reference['description']}"]


def _loss(plan: dict[str, Any]) -> list[str]:
    loss = plan["loss"]
    parameters = ", ".join(f"{name}={_value(value)}" for name, value in loss["parameters"].items())
    lines = [f"Loss: {loss['name']} (stage {loss['stage']})", f"  {loss['formula']}", f"  parameters: {parameters}"]
    if loss["first_step_checked"]:
        lines.append(f"  first-step loss (policy = reference): {loss['first_step_loss']:.4f}, checked by the worker")
    else:
        lines.append(f"  first-step loss: not checked by the worker: {loss['first_step_skipped_because']}")
    if loss["silently_sigmoid_under_llamafactory_cli"]:
        lines.append("  llamafactory-cli train would silently run sigmoid instead; dpo-launch train runs "
                     f"{loss['name']}")
    return lines


def _batch(plan: dict[str, Any]) -> list[str]:
    batch, topology = plan["batch"], plan["launch"]["topology"]
    lines = [
        "Batch and steps",
        (f"  world size: {batch['world_size']} = {topology['nnodes']} node(s) × {topology['nproc_per_node']} "
         "process(es) per node"),
        (f"  effective batch: {batch['effective_batch']} = {batch['per_device_batch']} per device × "
         f"{batch['gradient_accumulation_steps']} accumulation × {batch['world_size']} processes "
         f"({batch['sequences_per_forward']} sequences per forward)"),
    ]
    if batch["steps_per_epoch"] is not None:
        lines.append(f"  data: {batch['train_examples']} training examples ({batch['eval_examples']} held out for "
                     f"evaluation): {batch['steps_per_epoch']} optimizer steps per epoch, {batch['total_steps']} "
                     f"in all ({batch['epochs']:g} epochs)")
    lines += [f"  {note}" for note in batch["notes"]]
    if batch["steps_per_epoch"] is None and batch["total_steps"] is not None:
        lines.append(f"  total: {batch['total_steps']} optimizer steps (max_steps)")
    return lines


def _memory(memory: dict[str, Any], world_size: int, console, say) -> None:
    from rich import box
    from rich.table import Table

    say(f"Memory per GPU ({memory['zero']}, {world_size} GPU{'s' * (world_size != 1)}): "
        f"{_count(memory['parameters'])} parameters, {_count(memory['trainable_parameters'])} trainable; "
        f"model size from {memory['model_source']}")
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("term", justify="left", overflow="fold")
    table.add_column("GiB", justify="right", overflow="fold")
    table.add_column("formula", justify="left", overflow="fold")
    for term in memory["terms"]:
        table.add_row(term["name"], _gib(term["gib"]), term["formula"])
    table.add_row("total", _gib(memory["total_gib"]), "an estimate; CUDA context and fragmentation not counted")
    console.print(table)
    if memory.get("precomputed_ref_total_gib") is not None:
        say(f"With train --precompute-ref: {_gib(memory['precomputed_ref_total_gib'])} GiB per GPU (cached reference "
            "log-probs: no reference model, no reference forward; the one-off pass before training holds the "
            "reference alone)")
    choices = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    choices.add_column("DeepSpeed choice (same model and batch)")
    choices.add_column("total GiB per GPU", justify="right")
    choices.add_column("")
    for choice in memory["by_zero_stage"]:
        mark = "<- this config" if choice["zero"] == memory["zero"] else ""
        choices.add_row(choice["zero"], _gib(choice["total_gib"]), mark)
    say("")
    console.print(choices)
    say(*(f"  note: {note}" for note in memory["notes"]))


def fit_lines(memory: dict[str, Any]) -> list[str]:
    """Whether the estimate fits the GPU memory planned against, and if not, each way out with its estimate."""
    gpu, total = memory.get("gpu_memory"), memory["total_gib"]
    if gpu is None or memory.get("fits") is None:
        return []
    against = f"{gpu['gib']:.2f} GiB ({gpu['source']})"
    if memory["fits"]:
        return [f"GPU memory: the estimate, {total:.2f} GiB per GPU, fits in {against}"]
    lines = [f"Out of GPU memory: the estimate, {total:.2f} GiB per GPU, is more than {against}. "
             "Ways out, each on its own, with this config's estimate per GPU:"]
    width = max(len(way["change"]) for way in memory["ways_out"]) if memory["ways_out"] else 0
    for way in memory["ways_out"]:
        verdict = "fits" if way["fits"] else "still too much"
        lines.append(f"  {way['change']:<{width}}  {_gib(way['total_gib']):>8} GiB  {verdict}: {way['why']}")
    return lines


def _launch(launch: dict[str, Any]) -> list[str]:
    lines = []
    for node in launch["nodes"]:
        lines.append(f"Launch on node {node['node_rank']} of {len(launch['nodes'])} "
                     f"({'torchrun' if node['distributed'] else 'one process'}, {launch['device']}):")
        lines += [f"  {key}={shlex.quote(value)}" for key, value in sorted(node["env_set"].items())]
        lines += [f"  unset {key}" for key in node["env_unset"]]
        lines.append(f"  {shlex.join(node['argv'])}")
    if launch.get("free_port_at_launch"):
        lines.append("  (on one node `train` picks a free --master_port at launch unless --master-port is given)")
    return lines


def _value(value: Any) -> str:
    return "unset" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _gib(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"


def _count(n: int | None) -> str:
    if n is None:
        return "unknown"
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.2f}{suffix}"
    return str(n)
