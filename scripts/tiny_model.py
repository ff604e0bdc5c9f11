"""Build a tiny random-init causal LM and a locally trained tokenizer, with no model hub.

    python scripts/tiny_model.py OUT_DIR [--arch llama|qwen2] [--seed 0]

The demo, the tests and the benchmarks train this model on CPU in seconds (docs/upstream-notes.md#tiny-model):
hidden 64, intermediate 128, 2 layers, 4 heads, 256 positions, untied embeddings, about 148k parameters
(vocabulary 512). The tokenizer is a byte-level BPE trained on lines in LLaMA-Factory's `default` template style,
so `template: default` works.
Heavy packages (torch, transformers, tokenizers) are imported inside the functions that need them.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
from pathlib import Path

EOS, PAD = "<|endoftext|>", "<|pad|>"
SPECIAL_TOKENS = [EOS, PAD, "<|im_start|>", "<|im_end|>"]
VOCAB_TARGET = 512
MAX_LENGTH = 256
# Written last: a directory holding it is complete, so a rerun can skip the build.
COMPLETE_MARKER = ".tiny-model-complete"
FILLER = ["You are a careful calculator.", "Answer with the sum only.", "Think, then answer.",
          "The quick brown fox jumps over the lazy dog.", "Numbers add up; words do not."]


def corpus_lines(seed: int = 0, count: int = 8000) -> list[str]:
    """Seeded training text in `default`-template style: `Human: What is a+b?<eos>\\nAssistant:a+b=c`."""
    rng = random.Random(seed)
    lines = []
    for _ in range(count):
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        answer = a + b + rng.choice([0, 0, 0, -3, -2, -1, 1, 2, 3])  # wrong answers appear too, as in the data
        system = f"System: {rng.choice(FILLER)}{EOS}\n" if rng.random() < 0.1 else ""
        lines.append(f"{system}Human: What is {a}+{b}?{EOS}\nAssistant:{a}+{b}={answer}{EOS}\n")
    return lines + FILLER


def train_tokenizer(seed: int = 0):
    """A byte-level BPE (no prefix space) wrapped in PreTrainedTokenizerFast, right padding."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_TARGET, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(corpus_lines(seed), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token=EOS, pad_token=PAD,
                                   additional_special_tokens=SPECIAL_TOKENS[2:], model_max_length=MAX_LENGTH,
                                   padding_side="right")


def build_model(tokenizer, arch: str = "llama", seed: int = 0):
    """A random-init LlamaForCausalLM (or Qwen2ForCausalLM) sized for a CPU demo."""
    import torch
    import transformers

    config_class, model_class = {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
    }[arch]
    config = config_class(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=MAX_LENGTH,
                          tie_word_embeddings=False, bos_token_id=None,
                          eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    return model_class(config)


def is_complete(out_dir: Path) -> bool:
    return (Path(out_dir) / COMPLETE_MARKER).is_file()


def build_tiny_model(out_dir: str | Path, arch: str = "llama", seed: int = 0) -> Path:
    """Build the model and tokenizer into `out_dir` unless a complete build is already there.

    The build goes to a sibling temporary directory that is renamed into place, so an interrupted build never
    leaves a half-written model behind. A non-empty `out_dir` without the marker is refused, not overwritten.
    """
    out_dir = Path(out_dir)
    if is_complete(out_dir):
        return out_dir
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists and is not a tiny-model build; remove it or pick another path")
    if arch not in ("llama", "qwen2"):
        raise ValueError(f"arch: expected one of llama, qwen2 but got {arch!r}")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        tokenizer = train_tokenizer(seed)
        build_model(tokenizer, arch, seed).save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / COMPLETE_MARKER).write_text(f"arch={arch} seed={seed}\n", encoding="utf-8")
        _move_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _move_into_place(staging: Path, out_dir: Path) -> None:
    """Rename the finished build to `out_dir`; a concurrent build that got there first wins."""
    staging.chmod(0o755)
    try:
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked by the caller
        staging.rename(out_dir)
    except OSError:
        if not is_complete(out_dir):
            raise
        shutil.rmtree(staging, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="python scripts/tiny_model.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="where to write the model and tokenizer")
    parser.add_argument("--arch", choices=("llama", "qwen2"), default="llama")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    already = is_complete(args.out_dir)
    try:
        path = build_tiny_model(args.out_dir, args.arch, args.seed)
    except (FileExistsError, OSError) as exc:
        print(f"tiny_model: error: {exc}", file=sys.stderr)
        return 1
    print(f"tiny model {'already built' if already else 'built'} at {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
