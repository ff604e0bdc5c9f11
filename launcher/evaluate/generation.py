"""`dpo-launch generate`: K sampled responses per prompt through LLaMA-Factory's ChatModel, resumable.

The candidates file (OUT, JSON Lines) has one record per prompt, in the prompts' order:
`{"index", "id", "messages", "system", "responses": [K texts], "tokens": [K counts], "finish": [K reasons]}`;
`OUT.meta.json` beside it records the model, backend, sampling settings, seed, the prompts file's sha256 and the
throughput. While it runs, workers write whole chunks (C prompts each, atomically) into `OUT.parts/`; a rerun with
the same settings skips every prompt already in a chunk, a rerun with other settings is refused (--force starts
over), and at the end the chunks are merged into OUT in one atomic write and the parts removed.

Data-parallel: `--data-parallel N` workers (default: one per visible GPU, one on CPU), each with one GPU
(CUDA_VISIBLE_DEVICES) and every N-th block of prompts. The backend is `huggingface`, or `vllm` where vLLM is
installed (`--backend auto` picks vLLM when it is importable and a GPU is visible).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from launcher import __version__
from launcher.atomic import atomic_write, write_text_atomic
from launcher.errors import UsageError, UserError
from launcher.evaluate.models import ModelSpec
from launcher.evaluate.process import WorkerJob, run_workers
from launcher.evaluate.progress import Progress
from launcher.evaluate.prompts import Prompt
from launcher.fingerprint import file_sha256
from launcher.plan.topology import visible_gpus

BACKENDS = ("auto", "huggingface", "vllm")
VLLM_IN_FLIGHT = 64  # prompts handed to one vLLM engine at once; it schedules them as one continuous batch


@dataclass(frozen=True)
class Sampling:
    """Generation settings, LLaMA-Factory's GeneratingArguments defaults unless given."""

    n: int = 1
    temperature: float = 0.95
    top_p: float = 0.7
    top_k: int = 50
    max_new_tokens: int = 1024
    repetition_penalty: float = 1.0
    seed: int = 42

    def __post_init__(self) -> None:
        if self.n < 1:
            raise UsageError(f"-n must be at least 1, got {self.n}")
        if self.n > 1 and self.temperature <= 0:
            raise UsageError("-n above 1 needs sampling (--temperature above 0): LLaMA-Factory samples whenever it "
                             "returns several sequences, so greedy decoding cannot give K different responses")
        if self.max_new_tokens < 1:
            raise UsageError(f"--max-new-tokens must be at least 1, got {self.max_new_tokens}")

    def call_kwargs(self) -> dict:
        """What each ChatModel.chat call gets (temperature 0: greedy, as LLaMA-Factory reads it)."""
        return {"do_sample": self.temperature > 0, "temperature": self.temperature, "top_p": self.top_p,
                "top_k": self.top_k, "max_new_tokens": self.max_new_tokens,
                "repetition_penalty": self.repetition_penalty}


@dataclass
class Generation:
    """What to generate and where."""

    model: ModelSpec
    prompts: list[Prompt]
    prompts_file: Path
    out: Path
    sampling: Sampling
    backend: str = "auto"
    data_parallel: int | None = None
    chunk_size: int = 8

    @property
    def parts(self) -> Path:
        return self.out.with_name(self.out.name + ".parts")

    @property
    def meta_file(self) -> Path:
        return self.out.with_name(self.out.name + ".meta.json")

    def identity(self, backend: str) -> dict:
        """What makes two generations the same (the number of workers does not)."""
        return {"model": self.model.to_dict(), "backend": backend, "sampling": asdict(self.sampling),
                "prompts_file": str(self.prompts_file), "prompts_sha256": file_sha256(self.prompts_file),
                "prompts": len(self.prompts)}


def choose_backend(requested: str, gpus: int) -> str:
    vllm = importlib.util.find_spec("vllm") is not None
    if requested == "vllm" and not vllm:
        raise UserError("--backend vllm: vLLM is not installed here (pip install vllm on a GPU machine); "
                        "--backend huggingface works everywhere")
    if requested == "auto":
        return "vllm" if vllm and gpus else "huggingface"
    return requested


def device_ids(env: Mapping[str, str], gpus: int) -> list[str]:
    """The visible GPUs by the ids a worker's CUDA_VISIBLE_DEVICES takes."""
    selection = env.get("CUDA_VISIBLE_DEVICES")
    if selection is not None:
        return [d.strip() for d in selection.split(",") if d.strip()][:gpus]
    return [str(i) for i in range(gpus)]


@dataclass
class _Planned:
    job: Generation
    identity: dict
    done: int
    pending: int
    workers: list[WorkerJob]


def generate(job: Generation, force: bool = False, env: Mapping[str, str] | None = None) -> dict:
    """Run (or resume, or find complete) the generation; the meta record of OUT."""
    return generate_all([job], force, env)[0]


def generate_all(jobs: list[Generation], force: bool = False, env: Mapping[str, str] | None = None) -> list[dict]:
    """Several generations; on CPU their workers run at the same time (their imports and model loads overlap),
    on GPUs one generation after the other (each takes every GPU for its data-parallel workers)."""
    env = dict(os.environ if env is None else env)
    gpus = visible_gpus(env)
    results: list[dict | None] = []
    planned: list[_Planned] = []
    for job in jobs:
        backend = choose_backend(job.backend, gpus)
        identity = job.identity(backend)
        finished = _finished(job, identity, force)
        results.append(finished)
        if finished is None:
            _claim_parts(job, identity, force)
            done = read_chunks(job.parts)
            pending = [p for p in job.prompts if p.index not in done]
            workers = _plan_workers(job, pending, backend, device_ids(env, gpus))
            planned.append(_Planned(job, identity, len(done), len(pending), workers))
    batches = [planned] if not gpus else [[p] for p in planned]
    merged = iter([meta for batch in batches for meta in _run(batch)])
    return [result if result is not None else next(merged) for result in results]


def _run(batch: list[_Planned]) -> list[dict]:
    if not batch:
        return []
    total = sum(len(p.job.prompts) for p in batch)
    progress = Progress("generate", total, "prompts", done=sum(p.done for p in batch))
    started = time.monotonic()
    workers = [w for p in batch for w in p.workers]
    if workers:
        run_workers(workers, tick=lambda: progress.update(sum(count_done(p.job.parts) for p in batch)))
    progress.close()
    seconds = time.monotonic() - started
    return [_merge(p.job, p.identity, p.pending, seconds, len(p.workers)) for p in batch]


def _finished(job: Generation, identity: dict, force: bool) -> dict | None:
    """The meta of a complete OUT with these settings; refuse to replace anything else without --force."""
    if not job.out.exists():
        return None
    meta = _read_json(job.meta_file)
    if meta is not None and meta.get("identity") == identity:
        return {**meta, "resumed": 0, "already_complete": True}
    if not force:
        why = "was generated with other settings" if meta is not None else "exists and is not a dpo-launch output"
        raise UserError(f"{job.out} {why}; pass --force to replace it, or choose another --out")
    job.out.unlink()
    job.meta_file.unlink(missing_ok=True)
    return None


def _claim_parts(job: Generation, identity: dict, force: bool) -> None:
    settings = job.parts / "settings.json"
    previous = _read_json(settings)
    if previous is not None and previous != identity:
        if not force:
            raise UserError(f"{job.parts} holds an unfinished generation with other settings; rerun it with those "
                            "settings to finish it, or pass --force to discard it")
        shutil.rmtree(job.parts)
    job.parts.mkdir(parents=True, exist_ok=True)
    if previous != identity:
        write_text_atomic(settings, json.dumps(identity, indent=2, ensure_ascii=False) + "\n")


def _plan_workers(job: Generation, pending: list[Prompt], backend: str, devices: list[str]) -> list[WorkerJob]:
    count = job.data_parallel or max(1, len(devices))
    if devices and count > len(devices):
        raise UsageError(f"--data-parallel {count} needs {count} GPUs; {len(devices)} are visible")
    blocks = [pending[i:i + job.chunk_size] for i in range(0, len(pending), job.chunk_size)]
    shards = [[p for block in blocks[s::count] for p in block] for s in range(count)]
    model = {**job.model.lf_args(), "infer_backend": backend}
    jobs = []
    for shard, prompts in enumerate(shards):
        if not prompts:
            continue
        request = {"model": model, "sampling": job.sampling.call_kwargs(), "n": job.sampling.n,
                   "seed": job.sampling.seed, "prompts": [p.to_dict() for p in prompts], "chunk_size": job.chunk_size,
                   "parts_dir": str(job.parts), "concurrency": VLLM_IN_FLIGHT if backend == "vllm" else 1}
        env = {"CUDA_VISIBLE_DEVICES": devices[shard]} if devices else {}
        jobs.append(WorkerJob("generate", request, job.parts / f"worker-{shard}", env))
    return jobs


def read_chunks(parts: Path) -> dict[int, dict]:
    """Prompt index -> record, from every complete chunk file."""
    records: dict[int, dict] = {}
    for path in sorted(parts.glob("chunk-*.jsonl")):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                records[record["index"]] = record
    return records


def count_done(parts: Path) -> int:
    total = 0
    for path in parts.glob("chunk-*.jsonl"):
        with open(path, "rb") as handle:
            total += sum(1 for _ in handle)
    return total


def _merge(job: Generation, identity: dict, generated: int, seconds: float, workers: int) -> dict:
    records = read_chunks(job.parts)
    missing = [p.id for p in job.prompts if p.index not in records]
    if missing:  # the workers ended without error, so this is ours
        raise RuntimeError(f"generation finished with {len(missing)} prompts unanswered: {missing[:5]}")
    with atomic_write(job.out) as handle:
        for prompt in job.prompts:
            handle.write(json.dumps(records[prompt.index], ensure_ascii=False) + "\n")
    responses = generated * job.sampling.n
    tokens = sum(sum(records[p.index]["tokens"]) for p in job.prompts)
    meta = {"identity": identity, "dpo_launch": __version__, "data_parallel": workers, "generated": generated,
            "seconds": round(seconds, 3), "responses_per_second": round(responses / seconds, 3) if seconds else None,
            "tokens": tokens, "already_complete": False}
    write_text_atomic(job.meta_file, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    shutil.rmtree(job.parts)
    return meta


def read_candidates(path: Path) -> list[dict]:
    """The records of a candidates file (the output of `generate`)."""
    try:
        with open(path, encoding="utf-8") as handle:
            records = [json.loads(line) for line in handle if line.strip()]
    except FileNotFoundError:
        raise UserError(f"{path}: no such candidates file (write one with `dpo-launch generate`)") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the candidates {path}: {exc}") from None
    bad = [i for i, r in enumerate(records) if not (isinstance(r, dict) and isinstance(r.get("responses"), list)
                                                     and isinstance(r.get("messages"), list))]
    if bad:
        raise UserError(f"{path}: record {bad[0]} is not a candidates record (messages and responses); "
                        "write the file with `dpo-launch generate`")
    return records


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
