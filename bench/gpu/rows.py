"""The GPU check's table: one row per check, built from what the probe and the runs measured, rendered as
markdown. Statuses: `ok`; `FAIL` (the check's exit code is 1 when any row has it); `below goal` and `above plan`
(measured, and short of the issue's goal or above the plan's estimate: reported, not failed); `measured` (a
figure with no goal, as in the CPU smoke run); `skipped` (with why); `not available yet` (the feature does not
exist yet)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

OK, FAIL, SKIPPED, BELOW_GOAL, ABOVE_PLAN, MEASURED, NOT_YET = (
    "ok", "FAIL", "skipped", "below goal", "above plan", "measured", "not available yet")
THROUGHPUT_GOAL = 1.0  # dpo-launch tokens/s over llamafactory-cli tokens/s, same config (issue 15)
PRECOMPUTE_GOAL = 1.25  # full fine-tuning tokens/s with --precompute-ref over without (issue 15)
TRAIN_ROWS = {"lora": "train lora (dpo-launch)", "full": "train full (dpo-launch)",
              "full-zero2": "train full, DeepSpeed ZeRO-2 (dpo-launch)"}
MEMORY_ROWS = {"lora": "memory lora: plan vs peak", "full": "memory full: plan vs peak",
               "full-zero2": "memory full ZeRO-2: plan vs peak"}
VRAM_SOURCE = "peak = torch.cuda.max_memory_allocated on rank 0, from trainer_log.jsonl vram_allocated (RECORD_VRAM=1)"


@dataclass(frozen=True)
class Row:
    check: str
    status: str
    detail: str

    def as_dict(self) -> dict:
        return asdict(self)


def stack_row(probe: dict) -> Row:
    versions = "; ".join(f"{name} {found['version']}" + (" (carried)" if found["origin"] == "carried" else "")
                         for name, found in probe["versions"].items() if found)
    failed = [f"{module}: {error}" for module, error in probe["imports"].items() if error]
    if failed:
        return Row("stack imports", FAIL, f"python {probe['python']}; import fails: " + "; ".join(failed))
    return Row("stack imports", OK, f"python {probe['python']}; {versions}")


def device_row(probe: dict, smoke: bool) -> Row:
    found = probe.get("device")
    if found is None:
        return Row("device", FAIL, "torch does not import")
    if found["cuda"]:
        detail = (f"{found['name']}, compute capability {found['capability']}, {found['memory_gib']} GiB; "
                  f"torch {found['torch']}, CUDA {found['cuda_runtime']}; bf16 "
                  f"{'supported' if found['bf16'] else 'NOT supported'}, bf16 matmul "
                  f"{'ok' if found['bf16_matmul'] else 'NOT finite'}")
        return Row("device", OK if found["bf16"] and found["bf16_matmul"] else FAIL, detail)
    if smoke:
        return Row("device", OK, f"CPU (--cpu-smoke, fp32): torch {found['torch']}")
    return Row("device", FAIL, f"torch {found['torch']} sees no CUDA GPU (torch.cuda.is_available() is False); "
                               "without a GPU, run bash bench/gpu/check.sh --cpu-smoke")


def carried_row(probe: dict, site: str | None) -> Row:
    if site is None:
        return Row("carried wheels", SKIPPED, "--cpu-smoke: this Python's own packages, no wheels installed")
    if probe["unmet"]:
        return Row("carried wheels", FAIL, f"{probe['carried']} installed in {site}; unmet: "
                                           + "; ".join(probe["unmet"]))
    return Row("carried wheels", OK, f"{probe['carried']} installed in {site}, ahead of the preinstalled packages; "
                                     "every requirement of theirs is met by the installed versions (those "
                                     "left behind on purpose in bench/gpu/wheels.toml aside)")


def distributed_row(probe: dict) -> Row:
    found = probe.get("distributed")
    if found is None:
        return Row("distributed, 1 rank", FAIL, "torch does not import")
    nccl = f" {probe['device']['nccl']}" if found["backend"] == "nccl" else ""
    if not found["ok"]:
        return Row("distributed, 1 rank", FAIL, f"{found['backend']}{nccl}: {found['error'] or 'wrong sum'}")
    return Row("distributed, 1 rank", OK, f"{found['backend']}{nccl}: init_process_group + all_reduce ok")


def model_row(model: dict, parameters: int | None) -> Row:
    if model.get("error"):
        return Row("model", FAIL, model["error"])
    count = f"{parameters / 1e6:.1f}M parameters, " if parameters and parameters >= 1e6 else (
        f"{parameters / 1e3:.0f}K parameters, " if parameters else "")
    return Row("model", OK, f"{model['description']}, {count}random init, built locally ({model['seconds']:.0f} s)")


def _failed(run: dict) -> str:
    if run.get("skipped"):
        return run["skipped"]
    return f"{run['error']} (log: logs/{run['case']}.log)"


def train_row(case: str, run: dict, precision: str, steps: int) -> Row:
    name = TRAIN_ROWS[case]
    if not run.get("ok"):
        return Row(name, SKIPPED if run.get("skipped") else FAIL, _failed(run))
    test = run["self_test"]
    points = run["reward_points"]
    tags_ok = all(count > 0 for count in points.values())
    losses = ""
    if test["first_batch_loss"] is not None and test["expected"] is not None:
        losses = f" (first batch {test['first_batch_loss']:.4f}, expected {test['expected']:.4f})"
    detail = (f"{precision}, {steps} steps, {run['tokens_per_second']:,.0f} tokens/s; loss self-test "
              f"{test['self_test']}{losses}; reward tags {sum(c > 0 for c in points.values())}/{len(points)} "
              f"({min(points.values())} points each or more)")
    return Row(name, OK if test["self_test"] == "passed" and tags_ok else FAIL, detail)


def throughput_row(ours: dict, theirs: dict, smoke: bool) -> Row:
    name = "tokens/s dpo-launch vs llamafactory-cli (lora)"
    for run in (ours, theirs):
        if not run.get("ok"):
            return Row(name, SKIPPED if run.get("skipped") else FAIL, f"{run['case']}: {_failed(run)}")
    ratio = ours["tokens_per_second"] / theirs["tokens_per_second"]
    steady = ""
    if ours["steady_tokens_per_second"] and theirs["steady_tokens_per_second"]:
        steady = (f"; steady {ours['steady_tokens_per_second']:,.0f} vs {theirs['steady_tokens_per_second']:,.0f} "
                  f"= {ours['steady_tokens_per_second'] / theirs['steady_tokens_per_second']:.3f}x")
    detail = (f"{ours['tokens_per_second']:,.0f} vs {theirs['tokens_per_second']:,.0f} = {ratio:.3f}x "
              f"(goal >= {THROUGHPUT_GOAL:.1f}x){steady}; same config, same {ours['tokens']:,} tokens")
    if smoke:
        return Row(name, MEASURED, detail + "; CPU smoke: not a measurement")
    return Row(name, OK if ratio >= THROUGHPUT_GOAL else BELOW_GOAL, detail)


def precompute_row(without: dict, cached: dict, gpu: bool) -> Row:
    """Full fine-tuning with `--precompute-ref` against the same run without it: training tokens/s (HF's
    train_runtime, which the reference pass before training is not part of), the pass's cost in wall time, and
    the peak GPU memory (the reference copy is gone)."""
    name = "--precompute-ref: with vs without (full)"
    for run in (without, cached):
        if not run.get("ok"):
            return Row(name, SKIPPED if run.get("skipped") else FAIL, f"{run['case']}: {_failed(run)}")
    if cached.get("self_test", {}).get("self_test") != "passed":
        return Row(name, FAIL, f"the loss self-test on cached values: {cached.get('self_test', {}).get('self_test')} "
                               f"(log: logs/{cached['case']}.log)")
    ratio = cached["tokens_per_second"] / without["tokens_per_second"]
    detail = (f"{cached['tokens_per_second']:,.0f} vs {without['tokens_per_second']:,.0f} tokens/s = {ratio:.3f}x "
              f"(goal >= {PRECOMPUTE_GOAL:.2f}x); wall {cached['wall_s']:.0f} s with the pass vs "
              f"{without['wall_s']:.0f} s")
    if not gpu:
        return Row(name, MEASURED, detail + "; CPU smoke: not a measurement")
    peaks = cached.get("vram_peak_gib"), without.get("vram_peak_gib")
    if None not in peaks:
        detail += f"; peak {peaks[0]:.2f} vs {peaks[1]:.2f} GiB ({peaks[1] - peaks[0]:.2f} GiB less)"
    return Row(name, OK if ratio >= PRECOMPUTE_GOAL else BELOW_GOAL, detail)


def attention_row(sdpa: dict, fa2: dict | None, skipped: str | None) -> Row:
    name = "sdpa vs fa2 (lora, dpo-launch)"
    if skipped:
        return Row(name, SKIPPED, skipped)
    for run in (sdpa, fa2):
        if not run.get("ok"):
            return Row(name, SKIPPED if run.get("skipped") else FAIL, f"{run['case']}: {_failed(run)}")
    ratio = fa2["tokens_per_second"] / sdpa["tokens_per_second"]
    return Row(name, MEASURED, f"fa2 {fa2['tokens_per_second']:,.0f} vs sdpa {sdpa['tokens_per_second']:,.0f} "
                               f"tokens/s = {ratio:.3f}x; fa2 self-test {fa2['self_test']['self_test']}")


def memory_row(case: str, run: dict, plan: dict, gpu: bool) -> Row:
    name = MEMORY_ROWS[case]
    if plan.get("error"):
        return Row(name, FAIL, plan["error"])
    estimate = f"plan {plan['total_gib']:.2f} GiB ({plan['zero']})"
    if not gpu:
        return Row(name, SKIPPED, f"{estimate}; no CUDA device, so no peak to compare (CPU smoke)")
    if not run.get("ok") or run.get("vram_peak_gib") is None:
        why = _failed(run) if not run.get("ok") else "no vram_allocated in trainer_log.jsonl"
        return Row(name, SKIPPED if run.get("skipped") else FAIL, f"{estimate}; {why}")
    peak = run["vram_peak_gib"]
    detail = f"{estimate} vs peak {peak:.2f} GiB = {peak / plan['total_gib']:.2f}x of the plan; {VRAM_SOURCE}"
    return Row(name, OK if peak <= plan["total_gib"] else ABOVE_PLAN, detail)


def render(rows: list[Row], title: str) -> str:
    """A markdown table: the title, then one line per row (a '|' inside a cell is escaped)."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")
    lines = [title, "", "| check | status | detail |", "| --- | --- | --- |"]
    lines += [f"| {cell(row.check)} | {cell(row.status)} | {cell(row.detail)} |" for row in rows]
    return "\n".join(lines) + "\n"
