"""The OpenAI-compatible judge, `--judge openai:BASE_URL --judge-model NAME`: any chat-completions endpoint
(vLLM, `llamafactory-cli api`, a hosted API), asked about every pair in both orders.

- The API key comes only from an environment variable (--judge-api-key-env, default OPENAI_API_KEY); it is sent
  in the Authorization header and never written to a file, a log or a message.
- At most --judge-concurrency requests are in flight; each has a timeout; 429 and 5xx answers, timeouts and
  refused connections are retried with exponential backoff and jitter (Retry-After is honoured), up to
  --judge-retries times; any other HTTP error stops the command with the endpoint's reason.
- The answer must be the letter: "A", "B", "[[A]]", or a last line "Verdict: A"; anything else is counted as
  unparseable and the pair's verdict is invalid: the parser never guesses.
- The prompt is DEFAULT_PROMPT (helpfulness, accuracy, clarity, safety; answer A or B), or the text of
  --judge-prompt FILE, which must contain the placeholders {question}, {answer_a} and {answer_b}.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from launcher.errors import UserError
from launcher.evaluate.judging import DEFAULT_KEY_ENV, Item, Verdict, combine_orders

DEFAULT_PROMPT = """\
Please act as an impartial judge and compare the two responses an AI assistant gave to the user's question \
below. Judge helpfulness, accuracy, clarity and safety. Do not let the order of the responses, their length or \
their style sway you.

[User Question]
{question}

[Response A]
{answer_a}
[End of Response A]

[Response B]
{answer_b}
[End of Response B]

Which response is better? Answer with a single letter: A or B."""
PLACEHOLDERS = ("{question}", "{answer_a}", "{answer_b}")
RETRIED = (429, 500, 502, 503, 504)
LETTER = re.compile(r"^\W*(?:\[\[)?\s*([AB])\s*(?:\]\])?\W*$")
LAST_LINE = re.compile(r"^\W*(?:final\s+)?(?:verdict|answer)\s*[:\-]?\s*(?:\[\[)?\s*\"?([AB])\"?\s*(?:\]\])?\W*$",
                       re.IGNORECASE)


def parse_answer(text: str | None) -> str | None:
    """'A', 'B', or None when the answer is not one of the accepted forms."""
    if not text:
        return None
    match = LETTER.match(text.strip())
    if match:
        return match.group(1)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    match = LAST_LINE.match(lines[-1]) if lines else None
    return match.group(1) if match else None


def load_prompt(path: str | None) -> str:
    if path is None:
        return DEFAULT_PROMPT
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"--judge-prompt {path}: {exc.strerror or exc}") from None
    missing = [p for p in PLACEHOLDERS if p not in text]
    if missing:
        raise UserError(f"--judge-prompt {path}: the prompt must contain {', '.join(PLACEHOLDERS)}; "
                        f"missing {', '.join(missing)}")
    return text


@dataclass
class HttpSettings:
    concurrency: int = 4
    timeout: float = 120.0
    retries: int = 5
    backoff: float = 1.0  # seconds before the first retry; doubled each time
    max_tokens: int = 16
    key_env: str = DEFAULT_KEY_ENV


class OpenAIJudge:
    pointwise = False

    def __init__(self, base_url: str, model: str, settings: HttpSettings, prompt_file: str | None = None):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.settings = model, settings
        self.name = f"openai:{base_url} ({model})"
        self.prompt = load_prompt(prompt_file)
        self._key = os.environ.get(settings.key_env)  # only ever in the Authorization header
        self._lock = threading.Lock()
        self.stats = {"requests": 0, "retries": 0, "unparseable": 0, "errors": 0, "max_in_flight": 0}
        self._in_flight = 0

    def compare(self, items: list[Item]) -> list[Verdict]:
        asks = [(item.question, item.a, item.b) for item in items] + [(item.question, item.b, item.a)
                                                                      for item in items]
        with ThreadPoolExecutor(max(1, self.settings.concurrency)) as pool:
            answers = list(pool.map(self.ask, asks))
        verdicts = []
        for index, item in enumerate(items):
            (raw_1, parsed_1), (raw_2, parsed_2) = answers[index], answers[len(items) + index]
            winner, disagreed = combine_orders(parsed_1, parsed_2)
            verdicts.append(Verdict(item.key, winner, {"answers": [raw_1, raw_2], "parsed": [parsed_1, parsed_2],
                                                       "order_disagreement": disagreed}))
        return verdicts

    def ask(self, texts: tuple[str, str, str]) -> tuple[str | None, str | None]:
        """(raw answer, parsed letter) for one order of one pair."""
        question, first, second = texts
        content = self.prompt
        for placeholder, value in zip(PLACEHOLDERS, (question, first, second), strict=True):
            content = content.replace(placeholder, value)
        raw = self._post({"model": self.model, "messages": [{"role": "user", "content": content}],
                          "temperature": 0, "max_tokens": self.settings.max_tokens})
        parsed = parse_answer(raw)
        if raw is not None and parsed is None:
            self._count("unparseable")
        return raw, parsed

    def _post(self, body: dict) -> str | None:
        data = json.dumps(body).encode("utf-8")
        for attempt in range(self.settings.retries + 1):
            self._count("requests")
            wait = self._attempt(data, attempt)
            if isinstance(wait, str) or wait is None:
                return wait
            if attempt < self.settings.retries:
                self._count("retries")
                time.sleep(wait)
        self._count("errors")
        return None

    def _attempt(self, data: bytes, attempt: int) -> str | float | None:
        """The answer's text, or the seconds to wait before retrying."""
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        with self._flight():
            try:
                with urllib.request.urlopen(request, timeout=self.settings.timeout) as response:
                    payload = json.loads(response.read().decode("utf-8"))
            except urllib.error.HTTPError as exc:
                if exc.code not in RETRIED:
                    raise UserError(self._refused(exc)) from None
                return self._delay(exc.headers.get("Retry-After"), attempt)
            except (urllib.error.URLError, TimeoutError, ConnectionError):
                return self._delay(None, attempt)
            except ValueError:
                return None  # not JSON: an answer we cannot read
        try:
            return str(payload["choices"][0]["message"]["content"])
        except (KeyError, IndexError, TypeError):
            return None

    def _delay(self, retry_after: str | None, attempt: int) -> float:
        if retry_after and retry_after.strip().replace(".", "", 1).isdigit():
            return min(float(retry_after), 60.0)
        return self.settings.backoff * (2 ** min(attempt, 6)) * random.uniform(0.5, 1.5)

    def _refused(self, exc: urllib.error.HTTPError) -> str:
        body = exc.read().decode("utf-8", errors="replace")[:300].strip()
        if self._key:
            body = body.replace(self._key, "***")
        hint = f"set ${self.settings.key_env}" if exc.code in (401, 403) else "check --judge-model and the URL"
        return f"the judge endpoint {self.url} refused the request: HTTP {exc.code} {exc.reason}: {body} ({hint})"

    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1

    def _flight(self):
        judge = self

        class _InFlight:
            def __enter__(self) -> None:
                with judge._lock:
                    judge._in_flight += 1
                    judge.stats["max_in_flight"] = max(judge.stats["max_in_flight"], judge._in_flight)

            def __exit__(self, *exc) -> None:
                with judge._lock:
                    judge._in_flight -= 1

        return _InFlight()
