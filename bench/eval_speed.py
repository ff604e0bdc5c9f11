"""Speed of the evaluation commands, each as a ratio against a baseline measured in this same run.

1. Generation: `dpo-launch generate` (CLI + worker process, chunked atomic writes, progress) against calling
   LLaMA-Factory's ChatModel directly in a loop in one script (same model, prompts, sampling and per-prompt seeds,
   responses written to JSON Lines). Both are timed end to end, imports and model load included; the ratio is
   direct time / generate time (throughput of generate relative to the loop; the goal is >= 0.9). The outputs
   must be identical: the same work was done.
2. HTTP judge: the OpenAI-compatible judge against a real local `llamafactory-cli api` serving the tiny model
   (MAX_CONCURRENT=4), with --judge-concurrency 1 and 4: requests per second of each, the ratio, and the most
   requests the judge had in flight (it must reach the limit and never pass it). That server is CPU-bound on a
   small machine, so concurrency cannot speed it up; the same two runs against a local endpoint that answers
   after 100 ms (a hosted API's latency, played by a stdlib HTTP server) show what the limit buys there.

    .venv/bin/python bench/eval_speed.py [--prompts 64] [--n 4] [--max-new-tokens 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from launcher.evaluate.judge_http import HttpSettings, OpenAIJudge  # noqa: E402
from launcher.evaluate.judging import Item  # noqa: E402

DIRECT = """
import json, sys
from llamafactory.chat import ChatModel
from transformers import set_seed
model, prompts, out, n, tokens, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), 42
chat = ChatModel({"model_name_or_path": model, "template": "default", "infer_backend": "huggingface"})
with open(out, "w") as handle:
    for index, line in enumerate(open(prompts)):
        turns = json.loads(line)["conversations"]
        roles = {"human": "user", "gpt": "assistant"}
        messages = [{"role": roles[t["from"]], "content": t["value"]} for t in turns if t["from"] in roles]
        system = next((t["value"] for t in turns if t["from"] == "system"), None)
        set_seed(seed + index)
        responses = chat.chat(messages, system=system, num_return_sequences=n, do_sample=True, temperature=0.95,
                              top_p=0.7, top_k=50, max_new_tokens=tokens, repetition_penalty=1.0)
        handle.write(json.dumps([r.response_text for r in responses]) + "\\n")
"""


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}


def tiny_model(work: Path) -> Path:
    path = REPO / ".cache" / "tiny-llama"
    subprocess.run([sys.executable, str(REPO / "scripts" / "tiny_model.py"), str(path)], check=True, env=env(),
                   capture_output=True)
    return path


def prompts_file(work: Path, count: int) -> Path:
    lines = (REPO / "data" / "demo_dpo.jsonl").read_text(encoding="utf-8").splitlines()
    path = work / "prompts.jsonl"
    path.write_text("\n".join((lines * (count // len(lines) + 1))[:count]) + "\n", encoding="utf-8")
    return path


def time_generate(model: Path, prompts: Path, out: Path, n: int, tokens: int) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "launcher", "generate", str(model), "--template", "default", "--prompts",
                    str(prompts), "--out", str(out), "-n", str(n), "--max-new-tokens", str(tokens), "--backend",
                    "huggingface"], check=True, env=env(), cwd=out.parent, capture_output=True)
    return time.perf_counter() - started


def time_direct(model: Path, prompts: Path, out: Path, n: int, tokens: int) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", DIRECT, str(model), str(prompts), str(out), str(n), str(tokens)],
                   check=True, env=env(), capture_output=True)
    return time.perf_counter() - started


def generation(work: Path, model: Path, count: int, n: int, tokens: int, repeats: int) -> dict:
    prompts = prompts_file(work, count)
    ours, theirs, same = [], [], True
    for repeat in range(repeats):  # alternate, so a change in machine load hits both sides
        out = work / f"generate-{repeat}.jsonl"
        ours.append(time_generate(model, prompts, out, n, tokens))
        direct = work / f"direct-{repeat}.jsonl"
        theirs.append(time_direct(model, prompts, direct, n, tokens))
        generated = [json.loads(line)["responses"] for line in out.read_text(encoding="utf-8").splitlines()]
        same &= generated == [json.loads(line) for line in direct.read_text(encoding="utf-8").splitlines()]
    median_ours, median_theirs = statistics.median(ours), statistics.median(theirs)
    return {"prompts": count, "n": n, "max_new_tokens": tokens, "seconds": {"generate": ours, "chatmodel_loop": theirs},
            "identical_outputs": same, "ratio": round(median_theirs / median_ours, 3)}


def start_server(work: Path, model: Path, port: int) -> subprocess.Popen:
    config = work / "api.yaml"
    config.write_text(f"model_name_or_path: {model}\ntemplate: default\ninfer_backend: huggingface\n")
    server = subprocess.Popen([sys.executable, "-m", "llamafactory.cli", "api", str(config)],
                              env={**env(), "API_HOST": "127.0.0.1", "API_PORT": str(port), "MAX_CONCURRENT": "4"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5):
                return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError("llamafactory-cli api did not come up")


def judge_speed(work: Path, model: Path, comparisons: int, port: int) -> dict:
    server = start_server(work, model, port)
    items = [Item(str(i), [{"role": "user", "content": f"What is {i}+{i}?"}], None, f"{i}+{i}={2 * i}",
                  f"{i}+{i}={2 * i + 1}") for i in range(comparisons)]
    report = {"comparisons": comparisons, "requests": 2 * comparisons}
    try:
        for limit in (1, 4):
            judge = OpenAIJudge(f"http://127.0.0.1:{port}/v1", "tiny", HttpSettings(concurrency=limit, max_tokens=8))
            started = time.perf_counter()
            judge.compare(items)
            seconds = time.perf_counter() - started
            report[f"concurrency_{limit}"] = {"seconds": round(seconds, 3), "requests_per_second":
                                              round(judge.stats["requests"] / seconds, 2),
                                              "max_in_flight": judge.stats["max_in_flight"], **judge.stats}
    finally:
        server.terminate()
        server.wait(timeout=60)
    report["ratio"] = round(report["concurrency_4"]["requests_per_second"]
                            / report["concurrency_1"]["requests_per_second"], 3)
    return report


def latency_bound(comparisons: int, delay: float = 0.1) -> dict:
    """The judge against an endpoint whose answers take `delay` seconds (network latency, not CPU)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(delay)
            data = json.dumps({"choices": [{"message": {"role": "assistant", "content": "A"}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    items = [Item(str(i), [{"role": "user", "content": "q"}], None, "x", "y") for i in range(comparisons)]
    report = {"delay_seconds": delay, "requests": 2 * comparisons}
    try:
        for limit in (1, 4):
            judge = OpenAIJudge(f"http://127.0.0.1:{server.server_address[1]}/v1", "m", HttpSettings(concurrency=limit))
            started = time.perf_counter()
            judge.compare(items)
            seconds = time.perf_counter() - started
            report[f"concurrency_{limit}"] = {"requests_per_second": round(judge.stats["requests"] / seconds, 2),
                                              "max_in_flight": judge.stats["max_in_flight"]}
    finally:
        server.shutdown()
        server.server_close()
    report["ratio"] = round(report["concurrency_4"]["requests_per_second"]
                            / report["concurrency_1"]["requests_per_second"], 3)
    return report


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--comparisons", type=int, default=16)
    parser.add_argument("--port", type=int, help="for the local API server (default: a free one)")
    parser.add_argument("--work-dir", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work_dir or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        model = tiny_model(work)
        report = {"generation": generation(work, model, args.prompts, args.n, args.max_new_tokens, args.repeats),
                  "http_judge": judge_speed(work, model, args.comparisons, args.port or free_port()),
                  "http_judge_latency_bound": latency_bound(args.comparisons)}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
