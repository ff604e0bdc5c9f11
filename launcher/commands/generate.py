"""`dpo-launch generate MODEL_OR_RUN --prompts FILE [-n K] [--out FILE]`: K sampled responses per prompt through
LLaMA-Factory's ChatModel (HF backend, or vLLM where installed), with the run's or config's template; resumable
(a rerun skips prompts already answered), written atomically per chunk, settings recorded in OUT.meta.json."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from launcher.errors import EXIT_OK
from launcher.evaluate.generation import BACKENDS, Generation, Sampling, generate
from launcher.evaluate.models import model_source
from launcher.evaluate.prompts import read_prompts


def add_sampling_arguments(parser: argparse.ArgumentParser, n: bool = True) -> None:
    """Sampling flags shared by generate, eval and pairs (LLaMA-Factory's generation defaults)."""
    group = parser.add_argument_group("sampling", "LLaMA-Factory's GeneratingArguments defaults unless given")
    if n:
        group.add_argument("-n", dest="n", type=int, default=1, metavar="K", help="responses per prompt (default 1)")
    group.add_argument("--temperature", type=float, default=0.95, help="0 decodes greedily (default 0.95)")
    group.add_argument("--top-p", dest="top_p", type=float, default=0.7, help="default 0.7")
    group.add_argument("--top-k", dest="top_k", type=int, default=50, help="default 50")
    group.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=1024, help="default 1024")
    group.add_argument("--repetition-penalty", dest="repetition_penalty", type=float, default=1.0)
    group.add_argument("--seed", type=int, default=42, help="prompt i is sampled with seed+i (HF backend)")
    group.add_argument("--backend", choices=BACKENDS, default="auto",
                       help="auto: vLLM when installed and a GPU is visible, else huggingface")
    group.add_argument("--data-parallel", dest="data_parallel", type=int, metavar="N",
                       help="worker processes, one GPU each (default: one per visible GPU; 1 on CPU)")


def sampling_from(arguments: dict) -> Sampling:
    return Sampling(arguments.pop("n", 1), arguments.pop("temperature"), arguments.pop("top_p"),
                    arguments.pop("top_k"), arguments.pop("max_new_tokens"), arguments.pop("repetition_penalty"),
                    arguments.pop("seed"))


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("generate", help="sample K responses per prompt with LLaMA-Factory's ChatModel",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="MODEL_OR_RUN",
                        help="a dpo-launch run directory, a LLaMA-Factory config, a model or adapter folder")
    parser.add_argument("--prompts", required=True, metavar="FILE",
                        help="ShareGPT, alpaca or plain JSON Lines; AlpacaEval or MT-Bench question files")
    parser.add_argument("--out", metavar="FILE", help="candidates JSON Lines (default: <prompts>.candidates.jsonl)")
    parser.add_argument("--template", help="LLaMA-Factory template (default: the run's or config's)")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N prompts")
    parser.add_argument("--chunk-size", dest="chunk_size", type=int, default=8, metavar="C",
                        help="prompts per chunk file, the unit of resumption (default 8)")
    parser.add_argument("--force", action="store_true", help="replace OUT (or unfinished parts) made otherwise")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    add_sampling_arguments(parser)
    parser.set_defaults(handler=run)


def run(model: str, prompts: str, out: str | None, template: str | None, limit: int | None, chunk_size: int,
        force: bool, format: str, backend: str, data_parallel: int | None, **sampling: object) -> int:
    settings = sampling_from(dict(sampling))
    prompts_file = Path(prompts).absolute()
    target = Path(out) if out else Path(prompts_file.name.split(".")[0] + ".candidates.jsonl")
    job = Generation(model_source(model, template), read_prompts(prompts_file, limit), prompts_file,
                     target.absolute(), settings, backend, data_parallel, max(1, chunk_size))
    if format == "text":
        print(f"dpo-launch generate: {len(job.prompts)} prompts x {settings.n} from {job.model.describe()} "
              f"(template {job.model.template or 'from the tokenizer'})", file=sys.stderr, flush=True)
    meta = generate(job, force=force)
    if format == "json":
        print(json.dumps({"out": str(job.out), **meta}, indent=2))
    elif meta.get("already_complete"):
        print(f"{target} is already complete with these settings ({len(job.prompts)} prompts); nothing to do")
    else:
        rate = meta["responses_per_second"]
        print(f"wrote {target}: {len(job.prompts)} prompts, {len(job.prompts) * settings.n} responses "
              f"({meta['generated']} prompts generated now in {meta['seconds']:.1f} s"
              f"{f', {rate:.2f} responses/s' if rate else ''}); settings in {job.meta_file.name}")
    return EXIT_OK
