"""The judges' shared rules (answers read strictly, both orders combined) and the OpenAI-compatible judge over
real HTTP: retries on 429/5xx with Retry-After, the concurrency limit, the key sent but never written, a refused
request stopping with the endpoint's reason. The endpoint here is a small local server that plays a hosted API
(rate limits and failures cannot be provoked from `llamafactory-cli api`; test_judge_live.py uses that one)."""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from launcher.errors import UsageError
from launcher.evaluate.judge_http import parse_answer
from launcher.evaluate.judging import JudgeSpec, combine_orders, parse_judge

from support.cli import run_main

KEY = "sk-test-0123456789"


@pytest.mark.parametrize(("answer", "parsed"), [
    ("A", "A"), (" b ", None), ("B.", "B"), ("[[A]]", "A"), ('"B"', "B"),
    ("Both are fine.\nVerdict: B", "B"), ("Final answer: [[A]]", "A"),
    ("A is better because B is wrong", None), ("AB", None), ("", None), (None, None), ("The answer is A or B", None),
])
def test_only_the_accepted_answer_forms_are_read_and_nothing_is_guessed(answer, parsed):
    assert parse_answer(answer) == parsed


def test_both_orders_agree_or_make_a_counted_tie():
    assert combine_orders("A", "B") == ("a", False)  # A first, then (b, a) answered B: a both times
    assert combine_orders("B", "A") == ("b", False)
    assert combine_orders("A", "A") == ("tie", True)  # position bias: always the first
    assert combine_orders("A", None) == ("invalid", False)


def test_judge_names_are_parsed_and_wrong_ones_explained():
    assert parse_judge("rm:/models/rm") == JudgeSpec("rm", "/models/rm")
    assert parse_judge("openai:http://h:8000/v1/", "m") == JudgeSpec("openai", "http://h:8000/v1", "m")
    assert parse_judge("human") == JudgeSpec("human")
    for text, model, message in [
        ("gpt4", None, "--judge: expected rm:PATH, openai:BASE_URL or human but got 'gpt4'"),
        ("openai:h:8000", "m", "--judge openai:h:8000: expected openai:http(s)://HOST[:PORT]/v1"),
        ("openai:http://h", None, "--judge openai:... needs --judge-model NAME (the model the endpoint serves)")]:
        with pytest.raises(UsageError) as caught:
            parse_judge(text, model)
        assert str(caught.value) == message


class Endpoint:
    """A chat-completions endpoint that fails the first requests (429, then 503), checks the key, answers like a
    consistent judge (the response holding the right sum wins, whatever its position), and records how many
    requests were in flight at once."""

    def __init__(self, failures=("429", "503"), delay=0.05):
        self.failures, self.delay = list(failures), delay
        self.lock, self.in_flight, self.max_in_flight, self.requests = threading.Lock(), 0, 0, 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with endpoint.lock:
                    endpoint.requests += 1
                    endpoint.in_flight += 1
                    endpoint.max_in_flight = max(endpoint.max_in_flight, endpoint.in_flight)
                    failure = endpoint.failures.pop(0) if endpoint.failures else None
                time.sleep(endpoint.delay)
                with endpoint.lock:
                    endpoint.in_flight -= 1
                if self.headers.get("Authorization") != f"Bearer {KEY}":
                    return self._send(401, {"error": {"message": "invalid api key"}})
                if failure:
                    return self._send(int(failure), {"error": "busy"}, {"Retry-After": "0"})
                prompt = body["messages"][0]["content"]
                first = prompt.split("[Response A]\n", 1)[1].split("\n[End of Response A]")[0]
                answer = "A" if first.endswith("=31") or first.endswith("=26") else "B"
                self._send(200, {"choices": [{"message": {"role": "assistant", "content": answer}}]})

            def _send(self, code, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(code)
                for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


CANDIDATES = [
    {"id": "p1", "messages": [{"role": "user", "content": "What is 18+13?"}], "system": None,
     "responses": ["18+13=33", "18+13=31", "18+13=29"]},
    {"id": "p2", "messages": [{"role": "user", "content": "What is 19+7?"}], "system": "Sum only.",
     "responses": ["19+7=26", "19+7=25"]},
]


def write_candidates(tmp_path: Path) -> Path:
    path = tmp_path / "cands.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in CANDIDATES))
    return path


def test_the_http_judge_retries_limits_concurrency_and_never_writes_the_key(tmp_path):
    endpoint = Endpoint(delay=0.1)
    try:
        result = run_main("pairs", write_candidates(tmp_path), "--judge", f"openai:{endpoint.url}", "--judge-model",
                          "judge", "--judge-concurrency", "3", "--out", "pairs.jsonl", "--format", "json",
                          cwd=tmp_path, env={**_env(), "OPENAI_API_KEY": KEY})
    finally:
        endpoint.close()
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    # 3 + 1 comparisons, each asked in both orders, plus the two failed attempts retried
    assert summary["judge_stats"] == {"requests": 10, "retries": 2, "unparseable": 0, "errors": 0,
                                      "max_in_flight": 3}
    assert endpoint.requests == 10 and endpoint.max_in_flight == 3
    rows = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert [(r["chosen"]["value"], r["rejected"]["value"]) for r in rows] == [
        ("18+13=31", "18+13=33"), ("19+7=26", "19+7=25")]
    assert rows[1]["conversations"] == [{"from": "system", "value": "Sum only."},
                                        {"from": "human", "value": "What is 19+7?"}]
    audit = [json.loads(line) for line in (tmp_path / "pairs.audit.jsonl").read_text().splitlines()]
    assert audit[0]["verdicts"][0] == {"a": 0, "b": 1, "key": "p1:0-1", "winner": "b", "answers": ["B", "A"],
                                       "parsed": ["B", "A"], "order_disagreement": False}
    written = "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())
    assert KEY not in written + result.stdout + result.stderr


def test_a_refused_request_stops_with_the_endpoints_reason_and_no_key(tmp_path):
    endpoint = Endpoint(failures=())
    try:
        result = run_main("pairs", write_candidates(tmp_path), "--judge", f"openai:{endpoint.url}", "--judge-model",
                          "judge", "--judge-api-key-env", "MY_KEY", "--out", "pairs.jsonl", cwd=tmp_path,
                          env={**_env(), "MY_KEY": "nope"})
    finally:
        endpoint.close()
    assert result.returncode == 1
    assert result.stderr == (f"dpo-launch pairs: error: the judge endpoint {endpoint.url}/chat/completions refused "
                             'the request: HTTP 401 Unauthorized: {"error": {"message": "invalid api key"}} '
                             "(set $MY_KEY)\n")
    assert not (tmp_path / "pairs.jsonl").exists()


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "MY_KEY")}
