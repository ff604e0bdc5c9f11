"""Keys LLaMA-Factory does not accept but users write: its own old names, and the names of TRL and AutoTrain.

The DPO guides for TRL (`DPOConfig`, `KTOConfig`, `ORPOConfig`, TRL's `ModelConfig` and script arguments) and
AutoTrain (`LLMTrainingParams`, trainer `dpo`/`orpo`) name the same settings differently; a plain "did you
mean" from spelling alone sends `epochs` to `ppo_epochs`. Each entry here names where the key comes from and the
LLaMA-Factory key that means the same (`key`, shown as the did-you-mean), or what to do where there is none.
Sources: trl 0.24.0 trl/trainer/{dpo,kto,orpo,cpo}_config.py and trl/trainer/model_config.py;
autotrain-advanced src/autotrain/trainers/clm/params.py. A test checks that no entry is a LLaMA-Factory key and
that every `key` is one (AutoTrain's `mixed_precision` is a name transformers computes: not-settable).
"""

from __future__ import annotations

from dataclasses import dataclass

# Keys LF once had, or that transformers 5 dropped -> (message, hint). docs/upstream-notes.md#config-reading.
LEGACY_KEYS = {
    **{old: (f"'{old}' was renamed to 'pref_beta' in LLaMA-Factory 0.8.0", "rename it to pref_beta")
       for old in ("dpo_beta", "orpo_beta")},
    **{old: (f"'{old}' was renamed to 'pref_ftx' in LLaMA-Factory 0.8.0", "rename it to pref_ftx")
       for old in ("dpo_ftx", "kto_ftx")},
    "dpo_loss": ("'dpo_loss' was renamed to 'pref_loss' in LLaMA-Factory 0.8.0", "rename it to pref_loss"),
    "evaluation_strategy": ("'evaluation_strategy' was renamed to 'eval_strategy' in transformers",
                            "rename it to eval_strategy"),
    "checkpoint_dir": ("'checkpoint_dir' was renamed to 'adapter_name_or_path' in LLaMA-Factory",
                       "rename it to adapter_name_or_path"),
    **{old: (f"'{old}' was replaced by 'cutoff_len' in LLaMA-Factory, one length for prompt and response",
             "delete it and set cutoff_len to the longest prompt plus response in tokens; the default is 2048")
       for old in ("max_source_length", "max_target_length")},
    "neft_alpha": ("'neft_alpha' was renamed to 'neftune_noise_alpha' in LLaMA-Factory",
                   "rename it to neftune_noise_alpha"),
    "resume_lora_training": ("'resume_lora_training' was removed from LLaMA-Factory",
                             "delete it; to continue from an adapter set adapter_name_or_path"),
    "save_safetensors": ("'save_safetensors' was removed in transformers 5 (checkpoints are always safetensors)",
                         "delete it"),
    "no_cuda": ("'no_cuda' was renamed to 'use_cpu' in transformers", "rename it to use_cpu"),
    **{f"per_gpu_{split}_batch_size": ((f"'per_gpu_{split}_batch_size' was renamed to "
                                        f"'per_device_{split}_batch_size' in transformers"),
                                       f"rename it to per_device_{split}_batch_size")
       for split in ("train", "eval")},
}

TRL = "a TRL DPOConfig/KTOConfig name"
TRL_MODEL = "a TRL ModelConfig or script argument"
AUTOTRAIN = "an AutoTrain LLM parameter"
BOTH = "a TRL and AutoTrain name"

ONE_LENGTH = "LLaMA-Factory has one length for prompt and response"
NO_EQUIVALENT = "LLaMA-Factory has no equivalent; delete it"
DATASET_INFO = ("LLaMA-Factory maps columns in data/dataset_info.json (`columns: {prompt, chosen, rejected}`); "
                "delete it, or convert the data with `dpo-launch convert`")


@dataclass(frozen=True)
class OtherName:
    """A key from another tool: where it comes from, the LF key that means the same, and advice."""

    origin: str
    key: str | None = None
    advice: str | None = None

    def message(self, name: str) -> str:
        return f"'{name}' is {self.origin}, not a LLaMA-Factory key"

    def hint(self) -> str:
        mean = f"did you mean '{self.key}'?" if self.key else ""
        return " ".join(part for part in (mean, self.advice) if part)


OTHER_NAMES: dict[str, OtherName] = {
    # TRL DPOConfig / KTOConfig / ORPOConfig / CPOConfig
    "beta": OtherName(TRL, "pref_beta"),
    "loss_type": OtherName(TRL, "pref_loss"),
    "label_smoothing": OtherName(TRL, "dpo_label_smoothing"),
    "max_prompt_length": OtherName(BOTH, "cutoff_len", ONE_LENGTH),
    "max_completion_length": OtherName(BOTH, "cutoff_len", ONE_LENGTH),
    "rpo_alpha": OtherName(TRL, "pref_ftx", "the closest key: an SFT loss on the chosen response"),
    "desirable_weight": OtherName(TRL, "kto_chosen_weight"),
    "undesirable_weight": OtherName(TRL, "kto_rejected_weight"),
    "reference_free": OtherName(TRL, None, "for training without a reference model use pref_loss: simpo or orpo"),
    "use_liger_loss": OtherName(TRL, "enable_liger_kernel"),
    "dataset_num_proc": OtherName(TRL, "preprocessing_num_workers"),
    "ref_adapter_name": OtherName(TRL, "ref_model_adapters"),
    "model_adapter_name": OtherName(TRL, "adapter_name_or_path"),
    "padding_value": OtherName(TRL, None, "LLaMA-Factory pads with the tokenizer's pad token; delete it"),
    "pad_token": OtherName(TRL, None, "LLaMA-Factory pads with the tokenizer's pad token; delete it"),
    "label_pad_token_id": OtherName(TRL, None, "LLaMA-Factory masks labels with -100 itself; delete it"),
    "tools": OtherName(TRL, None, "tools go in the data: a `tools` column mapped in dataset_info.json"),
    "loss_weights": OtherName(TRL, "pref_ftx", "LLaMA-Factory adds one SFT term to the preference loss"),
    "cpo_alpha": OtherName(TRL, None, "LLaMA-Factory has no CPO; the reference-free losses are pref_loss: orpo, simpo"),
    **{name: OtherName(TRL, None, NO_EQUIVALENT) for name in (
        "precompute_ref_log_probs", "precompute_ref_batch_size", "sync_ref_model", "ref_model_mixup_alpha",
        "ref_model_sync_steps", "truncation_mode", "model_init_kwargs", "ref_model_init_kwargs",
        "generate_during_eval", "use_weighting", "force_use_ref_model", "disable_dropout", "use_logits_to_keep",
        "padding_free", "base_model_attribute_name", "f_divergence_type", "f_alpha_divergence_coef", "discopop_tau",
        "is_encoder_decoder")},
    # TRL ModelConfig and script arguments (trl/scripts/dpo.py)
    "model_name": OtherName(TRL_MODEL, "model_name_or_path"),
    "dataset_name": OtherName(TRL_MODEL, "dataset", "it names entries of dataset_info.json"),
    "dataset_train_split": OtherName(TRL_MODEL, None, "the split is the `split` of the dataset_info.json entry"),
    "dataset_test_split": OtherName(TRL_MODEL, "eval_dataset", "or val_size, a fraction held out of dataset"),
    "use_peft": OtherName(TRL_MODEL, "finetuning_type", "write finetuning_type: lora"),
    "lora_target_modules": OtherName(TRL_MODEL, "lora_target"),
    "lora_modules_to_save": OtherName(TRL_MODEL, "additional_target"),
    "load_in_4bit": OtherName(TRL_MODEL, "quantization_bit", "write quantization_bit: 4"),
    "load_in_8bit": OtherName(TRL_MODEL, "quantization_bit", "write quantization_bit: 8"),
    "bnb_4bit_quant_type": OtherName(TRL_MODEL, "quantization_type"),
    "use_bnb_nested_quant": OtherName(TRL_MODEL, "double_quantization"),
    "torch_dtype": OtherName(TRL_MODEL, "bf16", "write bf16: true (or fp16: true) for the training precision"),
    "dtype": OtherName(TRL_MODEL, "bf16", "write bf16: true (or fp16: true) for the training precision"),
    "attn_implementation": OtherName(TRL_MODEL, "flash_attn", "it takes auto, disabled, sdpa or fa2"),
    "max_seq_length": OtherName(TRL_MODEL, "cutoff_len"),
    # AutoTrain LLMTrainingParams (trainer: dpo / orpo)
    "model": OtherName(AUTOTRAIN, "model_name_or_path"),
    "model_ref": OtherName(AUTOTRAIN, "ref_model"),
    "project_name": OtherName(AUTOTRAIN, "output_dir"),
    "data_path": OtherName(AUTOTRAIN, "dataset_dir",
                           "the folder holding dataset_info.json; name the dataset in dataset"),
    "train_split": OtherName(AUTOTRAIN, None, "the split is the `split` of the dataset_info.json entry"),
    "valid_split": OtherName(AUTOTRAIN, "eval_dataset", "or val_size, a fraction held out of dataset"),
    "trainer": OtherName(AUTOTRAIN, "stage", "write stage: dpo (with pref_loss: orpo for ORPO) or stage: kto"),
    "lr": OtherName(AUTOTRAIN, "learning_rate"),
    "epochs": OtherName(AUTOTRAIN, "num_train_epochs"),
    "batch_size": OtherName(AUTOTRAIN, "per_device_train_batch_size"),
    "gradient_accumulation": OtherName(AUTOTRAIN, "gradient_accumulation_steps"),
    "optimizer": OtherName(AUTOTRAIN, "optim"),
    "scheduler": OtherName(AUTOTRAIN, "lr_scheduler_type"),
    "peft": OtherName(AUTOTRAIN, "finetuning_type", "write finetuning_type: lora"),
    "lora_r": OtherName(BOTH, "lora_rank"),
    "target_modules": OtherName(AUTOTRAIN, "lora_target"),
    "quantization": OtherName(AUTOTRAIN, "quantization_bit", "write quantization_bit: 4 for int4, 8 for int8"),
    "block_size": OtherName(AUTOTRAIN, "cutoff_len"),
    "chat_template": OtherName(AUTOTRAIN, "template"),
    "log": OtherName(AUTOTRAIN, "report_to"),
    "use_flash_attention_2": OtherName(AUTOTRAIN, "flash_attn", "write flash_attn: fa2 (or auto)"),
    "unsloth": OtherName(AUTOTRAIN, "use_unsloth"),
    "repo_id": OtherName(AUTOTRAIN, "hub_model_id"),
    "token": OtherName(AUTOTRAIN, "hub_token"),
    "username": OtherName(AUTOTRAIN, None, "delete it; hub_model_id names the repository"),
    "merge_adapter": OtherName(AUTOTRAIN, None, "LLaMA-Factory merges adapters with `llamafactory-cli export`; "
                                                "delete it"),
    "add_eos_token": OtherName(AUTOTRAIN, None, "LLaMA-Factory's template adds the EOS token; delete it"),
    "padding": OtherName(AUTOTRAIN, None, "LLaMA-Factory pads batches itself; delete it"),
    "distributed_backend": OtherName(
        AUTOTRAIN, "deepspeed", "it names a DeepSpeed JSON; DDP needs no key (dpo-launch train --nproc-per-node N)"),
    **{name: OtherName(AUTOTRAIN, None, DATASET_INFO)
       for name in ("prompt_text_column", "text_column", "rejected_text_column")},
}
