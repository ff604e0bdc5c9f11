"""The GPU check's rows for what only a GPU box produces, from the data the probe and the runs report there
(faked exactly at that boundary: the probe's JSON and a run's measurements), so the GPU-only wording and
statuses are checked before a GPU ever runs them."""

from __future__ import annotations

import sys

from support.cli import REPO

sys.path.insert(0, str(REPO / "bench" / "gpu"))
import rows  # noqa: E402

H100 = {"torch": "2.11.0+cu130", "cuda_runtime": "13.0", "cuda": True, "name": "NVIDIA H100 80GB HBM3",
        "capability": "9.0", "memory_gib": 79.2, "bf16": True, "bf16_matmul": True, "nccl": "2.27.7"}
RUN = {"ok": True, "case": "lora", "tokens_per_second": 41000.0, "steady_tokens_per_second": 43000.0,
       "tokens": 491520, "vram_peak_gib": 9.5,
       "reward_points": {f"train/rewards/{name}": 6 for name in ("chosen", "rejected", "accuracies", "margins")},
       "self_test": {"self_test": "passed", "first_batch_loss": 0.69315, "expected": 0.6931471805599453}}


def test_a_gpu_device_row_names_the_card_its_capability_and_bf16():
    assert rows.device_row({"device": H100}, smoke=False) == rows.Row(
        "device", "ok", "NVIDIA H100 80GB HBM3, compute capability 9.0, 79.2 GiB; torch 2.11.0+cu130, CUDA 13.0; "
                        "bf16 supported, bf16 matmul ok")


def test_without_a_gpu_outside_smoke_mode_the_device_row_fails_and_says_what_to_run():
    found = {"torch": "2.11.0+cu130", "cuda_runtime": "13.0", "cuda": False}
    assert rows.device_row({"device": found}, smoke=False) == rows.Row(
        "device", "FAIL", "torch 2.11.0+cu130 sees no CUDA GPU (torch.cuda.is_available() is False); without a "
                          "GPU, run bash bench/gpu/check.sh --cpu-smoke")


def test_the_distributed_row_gives_the_nccl_version():
    probe = {"device": H100, "distributed": {"backend": "nccl", "ok": True, "error": None}}
    assert rows.distributed_row(probe) == rows.Row("distributed, 1 rank", "ok",
                                                   "nccl 2.27.7: init_process_group + all_reduce ok")


def test_an_unmet_requirement_on_the_box_fails_the_carried_wheels_row():
    probe = {"carried": 23, "unmet": ["transformers 5.6.0 requires regex>=2025.10.22, found 2024.11.6"]}
    assert rows.carried_row(probe, "/tmp/site") == rows.Row(
        "carried wheels", "FAIL",
        "23 installed in /tmp/site; unmet: transformers 5.6.0 requires regex>=2025.10.22, found 2024.11.6")


def test_a_bf16_training_row_gives_steps_speed_self_test_and_reward_tags():
    assert rows.train_row("full", dict(RUN, case="full"), "bf16", 30) == rows.Row(
        "train full (dpo-launch)", "ok", "bf16, 30 steps, 41,000 tokens/s; loss self-test passed (first batch 0.6932, "
                                         "expected 0.6931); reward tags 4/4 (6 points each or more)")


def test_a_missing_runtime_report_fails_the_training_row_without_a_crash():
    run = dict(RUN, self_test={"self_test": "missing", "first_batch_loss": None, "expected": None})
    assert rows.train_row("lora", run, "bf16", 30).status == "FAIL"


def test_tokens_per_second_below_the_goal_is_reported_not_failed():
    ours, theirs = dict(RUN, tokens_per_second=39000.0), dict(RUN, case="lora-llamafactory-cli")
    assert rows.throughput_row(ours, theirs, smoke=False) == rows.Row(
        "tokens/s dpo-launch vs llamafactory-cli (lora)", "below goal",
        "39,000 vs 41,000 = 0.951x (goal >= 1.0x); steady 43,000 vs 43,000 = 1.000x; same config, same 491,520 "
        "tokens")


def test_a_peak_above_the_plans_estimate_is_flagged_with_where_the_peak_comes_from():
    plan = {"total_gib": 8.0, "zero": "no DeepSpeed", "parameters": 501007872}
    assert rows.memory_row("full", dict(RUN, case="full"), plan, gpu=True) == rows.Row(
        "memory full: plan vs peak", "above plan",
        "plan 8.00 GiB (no DeepSpeed) vs peak 9.50 GiB = 1.19x of the plan; peak = torch.cuda.max_memory_allocated "
        "on rank 0, from trainer_log.jsonl vram_allocated (RECORD_VRAM=1)")


def test_fa2_is_compared_with_the_sdpa_run_when_flash_attn_imports():
    fa2 = dict(RUN, case="lora-fa2", tokens_per_second=45100.0)
    assert rows.attention_row(RUN, fa2, None) == rows.Row(
        "sdpa vs fa2 (lora, dpo-launch)", "measured", "fa2 45,100 vs sdpa 41,000 tokens/s = 1.100x; fa2 self-test "
                                                      "passed")


def test_a_run_skipped_for_the_time_budget_says_so():
    skipped = {"ok": False, "case": "full-zero2", "skipped": "out of the time budget (450 s)"}
    assert rows.train_row("full-zero2", skipped, "bf16", 30) == rows.Row(
        "train full, DeepSpeed ZeRO-2 (dpo-launch)", "skipped", "out of the time budget (450 s)")


def test_the_table_escapes_a_pipe_inside_a_cell():
    table = rows.render([rows.Row("a|b", "ok", "x | y")], "# title")
    assert table == "# title\n\n| check | status | detail |\n| --- | --- | --- |\n| a\\|b | ok | x \\| y |\n"


def test_the_precompute_row_gives_the_speed_ratio_the_pass_and_the_memory_saved():
    without = dict(RUN, case="full", tokens_per_second=20000.0, wall_s=120.0, vram_peak_gib=30.0)
    cached = dict(RUN, case="full-precompute", tokens_per_second=26000.0, wall_s=110.0, vram_peak_gib=22.5)
    assert rows.precompute_row(without, cached, gpu=True) == rows.Row(
        "--precompute-ref: with vs without (full)", "ok",
        "26,000 vs 20,000 tokens/s = 1.300x (goal >= 1.25x); wall 110 s with the pass vs 120 s; peak 22.50 vs "
        "30.00 GiB (7.50 GiB less)")
    slow = dict(cached, tokens_per_second=22000.0)
    assert rows.precompute_row(without, slow, gpu=True).status == "below goal"


def test_the_precompute_row_fails_when_the_self_test_on_cached_values_does_not_pass():
    cached = dict(RUN, case="full-precompute", wall_s=1.0, self_test={"self_test": "failed"})
    assert rows.precompute_row(dict(RUN, case="full", wall_s=1.0), cached, gpu=True) == rows.Row(
        "--precompute-ref: with vs without (full)", "FAIL",
        "the loss self-test on cached values: failed (log: logs/full-precompute.log)")
