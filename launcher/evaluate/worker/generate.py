"""Task `generate`: K responses per prompt through LLaMA-Factory's `ChatModel` (HF or vLLM backend).

Request: {"model": ChatModel arguments (model, adapters, template, infer_backend), "sampling": per-call
generation settings, "n": K, "seed": S, "prompts": [{"index", "id", "messages", "system"}, ...] (this worker's
share, in order), "chunk_size": C, "parts_dir": P, "concurrency": requests in flight}.

Every C prompts become one chunk file `P/chunk-<index of its first prompt>.jsonl`, written atomically: a rerun
finds the prompts already answered in the chunks and never repeats them, and an interrupted worker leaves whole
chunks only. With the HF backend each prompt is seeded with S + its index before it is generated, so a resumed run
samples what an uninterrupted one would have. The vLLM backend gets `concurrency` prompts at once (its engine
batches them); the HF backend handles one at a time, as its engine does (MAX_CONCURRENT, chat/hf_engine.py).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from launcher.atomic import atomic_write
from launcher.evaluate.worker.common import TaskError, load_failure


def load_chat_model(model_args: dict):
    from llamafactory.chat import ChatModel

    try:
        return ChatModel(dict(model_args))
    except ImportError as exc:  # vLLM asked for and not installed: ChatModel says so
        raise TaskError(str(exc).splitlines()[0]) from exc
    except (OSError, ValueError) as exc:
        raise load_failure(f"the model {model_args.get('model_name_or_path')!r}", exc,
                           "a local folder with weights and tokenizer, or a reachable hub id") from exc


def respond(chat_model, prompt: dict, sampling: dict, n: int, seed: int | None) -> dict:
    """One prompt's K responses, with their token counts and finish reasons."""
    if seed is not None:
        from transformers import set_seed

        set_seed(seed + prompt["index"])
    responses = chat_model.chat(prompt["messages"], system=prompt.get("system"), num_return_sequences=n,
                                **sampling)
    return record(prompt, responses)


def respond_concurrently(pool: ThreadPoolExecutor, chat_model, prompts: list[dict], sampling: dict,
                         n: int) -> list[dict]:
    """Several prompts in flight at once: each `chat` call submits to ChatModel's own event loop, where the vLLM
    engine batches the concurrent requests."""
    return list(pool.map(lambda p: respond(chat_model, p, sampling, n, None), prompts))


def record(prompt: dict, responses) -> dict:
    return {"index": prompt["index"], "id": prompt["id"], "messages": prompt["messages"],
            "system": prompt.get("system"), "responses": [r.response_text for r in responses],
            "tokens": [r.response_length for r in responses], "finish": [r.finish_reason for r in responses]}


def write_chunk(parts_dir: Path, records: list[dict]) -> None:
    path = parts_dir / f"chunk-{records[0]['index']:07d}.jsonl"
    with atomic_write(path) as handle:
        for item in records:
            handle.write(json.dumps(item, ensure_ascii=False) + "\n")


def run(request: dict) -> dict:
    chat_model = load_chat_model(request["model"])
    parts_dir, prompts = Path(request["parts_dir"]), request["prompts"]
    size, n, sampling = max(1, int(request["chunk_size"])), int(request["n"]), dict(request["sampling"])
    concurrency = max(1, int(request.get("concurrency") or 1))
    with ThreadPoolExecutor(concurrency) as pool:
        for start in range(0, len(prompts), size):
            chunk = prompts[start:start + size]
            if concurrency > 1:
                records = respond_concurrently(pool, chat_model, chunk, sampling, n)
            else:
                records = [respond(chat_model, p, sampling, n, request.get("seed")) for p in chunk]
            write_chunk(parts_dir, records)
    return {"prompts": len(prompts)}
