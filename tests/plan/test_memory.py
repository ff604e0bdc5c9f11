"""The per-GPU memory estimate, checked against numbers worked out by hand.

The hand-checked model (config.json below): hidden 64, intermediate 256, 2 layers, 4 heads, 2 KV heads
(head_dim 16, kv_dim 32), vocab 1000, untied.
  linear per layer: q 64·64 + k 64·32 + v 64·32 + o 64·64 + gate/up/down 3·64·256
                    = 4096 + 2048 + 2048 + 4096 + 49152 = 61440
  layer = 61440 + 2 norms · 64 = 61568; 2 layers = 123136
  embeddings 1000·64 + lm_head 1000·64 + final norm 64 = 128064;  total P = 251200
  LoRA rank 4, all linear layers: 4·[(64+64) + (64+32)·2 + (64+64) + (64+256)·3] = 4·1408 = 5632 per layer -> 11264
Activations for batch 1, cutoff_len 128: T = 2·1·128 = 256 tokens;
  per block 7·64 + 2·32 + 4·256 = 1536;
  checkpointed: 256 · (2 layers · 64 + 1536) · 2 B = 851968 B
Logits with a reference: 256 · 1000 · (8 + 2 + 8) B = 4608000 B; without (orpo/simpo): 256 · 1000 · 10 B = 2560000 B
"""

from __future__ import annotations

import json

import pytest

from launcher.lf.deepspeed import ZeroSettings, zero_settings
from launcher.lf.resolve import resolve_reference
from launcher.plan.memory import GIB, estimate_memory
from launcher.plan.model_size import model_size

SHAPE = {"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "vocab_size": 1000, "tie_word_embeddings": False}
P, LORA, ACTIVATIONS = 251200, 11264, 851968


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-cache"))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps(SHAPE))
    return tmp_path


def config(**changes):
    return {"model_name_or_path": "model", "stage": "dpo", "do_train": True, "finetuning_type": "full",
            "bf16": True, "per_device_train_batch_size": 1, "cutoff_len": 128, **changes}


def bytes_by_term(settings, cwd, world=1, zero=None):
    estimate = estimate_memory(settings, resolve_reference(settings), world, cwd, zero)
    return {term.name: round(term.gib * GIB) for term in estimate.terms}, estimate


def test_full_dpo_without_deepspeed_holds_fp32_weights_grads_adam_and_a_half_precision_reference(workspace):
    terms, estimate = bytes_by_term(config(), workspace)
    assert terms == {"policy weights": P * 4, "gradients": P * 4, "optimizer states": P * 8,
                     "reference model": P * 2, "activations": ACTIVATIONS, "logits": 4608000}
    assert (estimate.parameters, estimate.trainable_parameters, estimate.zero) == (P, P, "no DeepSpeed")
    assert estimate.total_gib * GIB == pytest.approx(sum(terms.values()))


def test_zero3_shards_everything_including_the_reference(workspace):
    terms, estimate = bytes_by_term(config(), workspace, world=4, zero=ZeroSettings(3))
    assert [terms[name] for name in ("policy weights", "gradients", "optimizer states", "reference model")] == [
        P * 2 // 4, P * 2 // 4, P * 12 // 4, P * 2 // 4]
    assert estimate.terms[3].formula == "251K × 2 B / 4 GPUs (ZeRO-3 shards it)"


def test_zero2_shards_grads_and_optimizer_but_trl_replicates_the_reference(workspace):
    terms, _ = bytes_by_term(config(), workspace, world=4, zero=ZeroSettings(2))
    assert [terms[name] for name in ("policy weights", "gradients", "optimizer states", "reference model")] == [
        P * 2, P * 2 // 4, P * 12 // 4, P * 2]


def test_offload_moves_optimizer_and_params_off_the_gpu(workspace):
    terms, _ = bytes_by_term(config(), workspace, world=4, zero=ZeroSettings(3, True, True))
    assert [terms[name] for name in ("policy weights", "gradients", "optimizer states", "reference model")] == [
        0, P * 2 // 4, 0, 0]


def test_lora_trains_only_the_adapters_and_needs_no_reference_copy(workspace):
    terms, estimate = bytes_by_term(config(finetuning_type="lora", lora_rank=4), workspace)
    assert estimate.trainable_parameters == LORA
    assert [terms[name] for name in ("policy weights", "gradients", "optimizer states", "reference model")] == [
        P * 2 + LORA * 4, LORA * 4, LORA * 8, 0]


def test_qlora_stores_linear_layers_in_4_bits_and_the_rest_in_half_precision(workspace):
    terms, _ = bytes_by_term(config(finetuning_type="lora", lora_rank=4, quantization_bit=4), workspace)
    linear = 2 * 61440
    assert terms["policy weights"] == linear // 2 + (P - linear) * 2 + LORA * 4


def test_explicit_quantized_reference_is_a_replica_even_under_zero3(workspace):
    settings = config(finetuning_type="lora", lora_rank=4, ref_model="model", ref_model_quantization_bit=8)
    terms, estimate = bytes_by_term(settings, workspace, world=4, zero=ZeroSettings(3))
    assert terms["reference model"] == 2 * 61440 + (P - 2 * 61440) * 2
    assert estimate.terms[3].formula.endswith("quantized, a replica per GPU")


def test_reference_free_losses_skip_the_reference_forward_logits(workspace):
    terms, _ = bytes_by_term(config(pref_loss="orpo"), workspace)
    assert (terms["reference model"], terms["logits"]) == (0, 2560000)


def test_disabling_gradient_checkpointing_keeps_every_layer(workspace):
    terms, _ = bytes_by_term(config(disable_gradient_checkpointing=True), workspace)
    assert terms["activations"] == 256 * 2 * 1536 * 2


def test_every_zero_choice_gets_a_total(workspace):
    _, estimate = bytes_by_term(config(), workspace, world=4)
    labels = [label for label, _ in estimate.by_zero_stage]
    assert labels == ["no DeepSpeed", "ZeRO-0", "ZeRO-1", "ZeRO-2", "ZeRO-2 + offload optimizer", "ZeRO-3",
                      "ZeRO-3 + offload optimizer/params"]
    totals = dict(estimate.by_zero_stage)
    assert totals["ZeRO-3"] < totals["ZeRO-2"] < totals["ZeRO-0"]


def test_zero_settings_come_from_the_deepspeed_json(workspace):
    (workspace / "ds.json").write_text(json.dumps({"zero_optimization": {
        "stage": 3, "offload_optimizer": {"device": "cpu"}, "offload_param": {"device": "none"}}}))
    assert zero_settings({"deepspeed": "ds.json"}, workspace) == ZeroSettings(3, True, False)
    assert zero_settings({}, workspace) == ZeroSettings(None)


def test_llama3_8b_matches_its_published_parameter_counts(tmp_path, monkeypatch):
    # PEFT prints "trainable params: 20,971,520 || all params: 8,051,232,768" for Llama-3-8B, LoRA r8 on all linear.
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    size = model_size("meta-llama/Meta-Llama-3-8B-Instruct", tmp_path)
    assert size.parameters == 8_030_261_248
    settings = {"model_name_or_path": "meta-llama/Meta-Llama-3-8B-Instruct", "stage": "dpo", "do_train": True,
                "finetuning_type": "lora", "lora_rank": 8, "lora_target": "all", "bf16": True}
    estimate = estimate_memory(settings, resolve_reference(settings), 1, tmp_path)
    assert estimate.trainable_parameters == 20_971_520
    assert size.parameters + estimate.trainable_parameters == 8_051_232_768


def test_hub_ids_fall_back_to_the_size_in_their_name(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    size = model_size("Qwen/Qwen2.5-0.5B-Instruct", tmp_path)
    assert (size.parameters, size.shape, size.source) == (500_000_000, None, "the size in the name '0.5B'")
    assert model_size("org/mystery-model", tmp_path).parameters is None


def test_hub_cache_config_is_read_without_network(tmp_path, monkeypatch):
    snapshot = tmp_path / "models--org--tiny" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps(SHAPE))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert model_size("org/tiny", tmp_path).parameters == P


def test_unknown_model_size_leaves_the_total_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    settings = config(model_name_or_path="org/mystery-model")
    estimate = estimate_memory(settings, resolve_reference(settings), 1, tmp_path)
    assert estimate.total_gib is None
    assert estimate.terms[0].formula == "unknown model size"


def test_qwen2_counts_its_implicit_qkv_biases():
    # transformers' Qwen2ForCausalLM with these sizes has 25120 parameters (q/k/v carry biases; config.json
    # has no attention_bias key): linear 9216 + biases 64 + norms 64 = 9344 per layer, x2, + 2·100·32 + 32.
    from launcher.plan.model_size import shape_from_config

    shape = shape_from_config({"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64,
                               "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                               "vocab_size": 100, "tie_word_embeddings": False})
    assert shape.parameters() == 25120


def test_precomputed_reference_drops_the_reference_weights_and_its_forward(workspace):
    terms, estimate = bytes_by_term(config(), workspace)
    without_reference_forward = 256 * 1000 * 10  # T × vocab × (fp32 logits + log-softmax of the policy only)
    expected = sum(terms.values()) - terms["reference model"] - terms["logits"] + without_reference_forward
    assert estimate.precomputed_ref_gib * GIB == pytest.approx(expected)


def test_precomputed_reference_total_is_absent_for_a_reference_free_loss(workspace):
    _, estimate = bytes_by_term(config(pref_loss="simpo"), workspace)
    assert estimate.precomputed_ref_gib is None


def test_precomputed_reference_total_is_absent_for_kto_which_train_refuses_it_for(workspace):
    # KTO builds a reference, but `train --precompute-ref` refuses stage kto (launcher.run.ref_cache)
    _, estimate = bytes_by_term(config(stage="kto"), workspace)
    assert estimate.precomputed_ref_gib is None
