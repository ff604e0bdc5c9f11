"""Build a small real architecture with random init (about 250M or 500M parameters, bf16), with no model hub.

    python scripts/small_model.py OUT_DIR [--arch llama|qwen2] [--size 250m|500m] [--layers 16] [--seed 0]

For GPU benchmarks (bench/gpu_throughput.py, bench/gpu/check.py): the shapes of a real small model -- 16 layers,
GQA with 4 key/value heads, a 32000-row vocabulary; `250m` is hidden 1024 with 16 query heads, `500m` hidden
1536 with 12 query heads of 128 -- so a training step costs what it costs on a real checkpoint of that size,
while the weights are random and nothing is downloaded. The
tokenizer is scripts/tiny_model.py's locally trained BPE (512 tokens); the embedding and LM head are padded to
32000 rows, as many released models pad theirs, so the LM head's matmul and softmax cost what a Llama-2-sized
vocabulary costs. The build runs on CPU, is written in bf16, and is skipped when a complete one is there.
Heavy packages are imported inside the functions that need them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from tiny_model import COMPLETE_MARKER, _move_into_place, is_complete, train_tokenizer  # scripts/ is on sys.path

ARCHES = ("llama", "qwen2")
VOCAB_ROWS = 32000
MAX_POSITIONS = 4096
# Parameters with 16 layers and the 32000-row vocabulary, untied: 250m 245.9M, 500m 501.0M.
SHAPES = {
    "250m": {"hidden_size": 1024, "intermediate_size": 2816, "num_attention_heads": 16, "num_key_value_heads": 4},
    "500m": {"hidden_size": 1536, "intermediate_size": 4096, "num_attention_heads": 12, "num_key_value_heads": 4},
}


def model_config(tokenizer, arch: str = "llama", layers: int = 16, size: str = "250m"):
    """The transformers config of the small model; `layers` trades size (16: ~250M, 24: ~340M at 250m) for speed."""
    import transformers

    config_class = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config}[arch]
    return config_class(vocab_size=max(VOCAB_ROWS, len(tokenizer)), num_hidden_layers=layers,
                        max_position_embeddings=MAX_POSITIONS, tie_word_embeddings=False, bos_token_id=None,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **SHAPES[size])


def build_model(tokenizer, arch: str = "llama", layers: int = 16, seed: int = 0, size: str = "250m"):
    """A random-init causal LM in bf16 (initialised in fp32 on CPU, then cast, as released weights are)."""
    import torch
    import transformers

    model_class = {"llama": transformers.LlamaForCausalLM, "qwen2": transformers.Qwen2ForCausalLM}[arch]
    torch.manual_seed(seed)
    return model_class(model_config(tokenizer, arch, layers, size)).to(torch.bfloat16)


def build_small_model(out_dir: str | Path, arch: str = "llama", layers: int = 16, seed: int = 0,
                      size: str = "250m") -> Path:
    """Build model and tokenizer into `out_dir` unless a complete build is there; the build is staged in a
    sibling directory and renamed into place, so an interrupted build leaves nothing half-written."""
    out_dir = Path(out_dir)
    if is_complete(out_dir):
        return out_dir
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists and is not a model build; remove it or pick another path")
    if arch not in ARCHES:
        raise ValueError(f"arch: expected one of {', '.join(ARCHES)} but got {arch!r}")
    if size not in SHAPES:
        raise ValueError(f"size: expected one of {', '.join(SHAPES)} but got {size!r}")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        tokenizer = train_tokenizer(seed)
        tokenizer.model_max_length = MAX_POSITIONS  # the tiny model's 256 would warn on every long record
        model = build_model(tokenizer, arch, layers, seed, size)
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        summary = {"arch": arch, "size": size, "layers": layers, "seed": seed, "parameters": model.num_parameters()}
        (staging / COMPLETE_MARKER).write_text(json.dumps(summary) + "\n", encoding="utf-8")
        _move_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="python scripts/small_model.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="where to write the model and tokenizer")
    parser.add_argument("--arch", choices=ARCHES, default="llama")
    parser.add_argument("--size", choices=tuple(SHAPES), default="250m", help="hidden width and heads (see SHAPES)")
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    already = is_complete(args.out_dir)
    try:
        path = build_small_model(args.out_dir, args.arch, args.layers, args.seed, args.size)
    except (FileExistsError, OSError) as exc:
        print(f"small_model: error: {exc}", file=sys.stderr)
        return 1
    print(f"small model {'already built' if already else 'built'} at {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
