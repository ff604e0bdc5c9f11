"""A plan-ready workspace: a config.json-only Llama model, a ShareGPT preference file and a DPO config."""

from __future__ import annotations

import json
from pathlib import Path

# A config read without its data (--no-data, or rules only): a hub model id, no dataset_info.json.
CONFIG_ONLY = """\
model_name_or_path: org/model
stage: dpo
do_train: true
dataset: prefs
output_dir: out
report_to: tensorboard
learning_rate: 5.0e-6
"""

# A Llama-shaped model (config.json only: plan never loads weights): hidden 64, intermediate 256, 2 layers,
# 4 heads, 2 KV heads, vocab 1000, untied -> 251200 parameters (worked out in test_memory.py).
MODEL = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
         "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "vocab_size": 1000, "tie_word_embeddings": False}
RECORD = {"conversations": [{"from": "human", "value": "What is 2+2?"}],
          "chosen": {"from": "gpt", "value": "2+2=4"}, "rejected": {"from": "gpt", "value": "2+2=5"}}
INFO = {"prefs": {"file_name": "prefs.jsonl", "formatting": "sharegpt", "ranking": True,
                  "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}}}
CONFIG = """\
model_name_or_path: model
stage: dpo
do_train: true
finetuning_type: full
pref_loss: sigmoid
pref_beta: 0.5
dataset: prefs
dataset_dir: data
template: default
cutoff_len: 64
output_dir: runs/demo
per_device_train_batch_size: 4
gradient_accumulation_steps: 2
num_train_epochs: 3.0
learning_rate: 5.0e-6
report_to: tensorboard
"""


def write_workspace(root: Path, config: str = CONFIG, records: int = 100) -> Path:
    """model/config.json, data/dataset_info.json + data/prefs.jsonl (records pairs) and config.yaml."""
    (root / "model").mkdir(parents=True)
    (root / "model" / "config.json").write_text(json.dumps(MODEL))
    (root / "data").mkdir()
    (root / "data" / "dataset_info.json").write_text(json.dumps(INFO))
    (root / "data" / "prefs.jsonl").write_text("".join(json.dumps(RECORD) + "\n" for _ in range(records)))
    (root / "config.yaml").write_text(config)
    return root
