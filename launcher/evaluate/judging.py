"""Judges behind one interface: `--judge rm:PATH | openai:BASE_URL (--judge-model NAME) | human`.

A judge compares items: a prompt with two responses, `a` and `b`. Its verdict names the better one, a tie, or
`invalid` (the judge's answer could not be read: counted, never guessed) or `skip` (a person passed).

- Pairwise judges (openai, human) are asked in both orders where they can be: the OpenAI-compatible judge sees
  (a, b) and then (b, a); the two answers agree, or the verdict is a tie and the disagreement is counted
  (position bias cancels). A person sees each pair once, in a random order recorded with the verdict.
- The reward-model judge scores each response on its own, so the order cannot matter: its verdict follows the
  scores (equal scores: a tie), and the scores are kept for audit and for best-vs-worst pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from launcher.errors import UsageError

A, B, TIE, INVALID, SKIP = "a", "b", "tie", "invalid", "skip"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"


@dataclass(frozen=True)
class Item:
    """One comparison: the prompt (LLaMA-Factory chat messages and system) and two responses."""

    key: str
    messages: tuple[dict, ...] | list[dict]
    system: str | None
    a: str
    b: str

    @property
    def question(self) -> str:
        """The conversation as one text, for judges that read text (the last user turn is the question)."""
        turns = [f"{'User' if m['role'] == 'user' else 'Assistant'}: {m['content']}" for m in self.messages]
        return turns[-1][len("User: "):] if len(turns) == 1 else "\n\n".join(turns)


@dataclass
class Verdict:
    key: str
    winner: str  # a | b | tie | invalid | skip
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"key": self.key, "winner": self.winner, **self.detail}


class Judge(Protocol):
    name: str
    pointwise: bool  # scores responses one by one (the reward model), so it can rank K candidates directly

    def compare(self, items: list[Item]) -> list[Verdict]: ...


@dataclass(frozen=True)
class JudgeSpec:
    kind: str  # rm | openai | human
    target: str | None = None  # the reward model's path, or the endpoint's base URL
    model: str | None = None  # the endpoint's model name

    @property
    def name(self) -> str:
        if self.kind == "openai":
            return f"openai:{self.target} ({self.model})"
        return f"rm:{self.target}" if self.kind == "rm" else "human"


def parse_judge(text: str, model: str | None = None) -> JudgeSpec:
    """`rm:PATH`, `openai:BASE_URL` (with --judge-model), or `human`."""
    kind, _, target = text.partition(":")
    if text == "human":
        return JudgeSpec("human")
    if kind == "rm" and target:
        return JudgeSpec("rm", target)
    if kind == "openai" and target:
        if not target.startswith(("http://", "https://")):
            raise UsageError(f"--judge {text}: expected openai:http(s)://HOST[:PORT]/v1")
        if not model:
            raise UsageError("--judge openai:... needs --judge-model NAME (the model the endpoint serves)")
        return JudgeSpec("openai", target.rstrip("/"), model)
    raise UsageError(f"--judge: expected rm:PATH, openai:BASE_URL or human but got {text!r}")


def combine_orders(first: str | None, second: str | None) -> tuple[str, bool]:
    """One verdict from the answers in order (a, b) and in order (b, a), each 'A', 'B' or None (unreadable);
    the second is mapped back (its A is b). (winner, the orders disagreed)."""
    if first is None or second is None:
        return INVALID, False
    one = A if first == "A" else B
    two = B if second == "A" else A
    return (one, False) if one == two else (TIE, True)


def from_scores(score_a: float, score_b: float) -> str:
    return A if score_a > score_b else B if score_b > score_a else TIE
