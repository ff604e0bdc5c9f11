"""Prompts for generation, from the files people have: ShareGPT, alpaca and plain JSON Lines, AlpacaEval's and
MT-Bench's question files. Pure (no model, no network: the user brings the file).

One record gives one prompt: a conversation ending on the user's turn, an optional system prompt and an id.

- `"conversations"` / `"messages"` (ShareGPT, OpenAI): the turns up to the last user turn (a trailing answer,
  chosen and rejected are left out);
- `"instruction"` (+ `"input"`, `"system"`, `"history"`): alpaca, instruction and input joined by a blank line;
  AlpacaEval's `alpaca_eval.json` has this shape;
- `"turns"` (MT-Bench `question.jsonl`): the first turn (turn 2 needs the model's own first answer, which a
  one-shot prompt cannot hold);
- `"prompt"` / `"question"`, or a bare JSON string: that text.

Ids come from `question_id` or `id` when present (MT-Bench, yours), else the record's 0-based index. A JSON
array (AlpacaEval's `alpaca_eval.json`) and JSON Lines are both read. Problems are collected, located
(`file:line: record N: ...`) and raised together.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from launcher.check.data.jsonstream import SyntaxProblem, iter_json_file
from launcher.errors import UserError

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "model": "assistant",
         "system": "system", "function_call": "function", "observation": "observation", "tool": "observation"}
MAX_PROBLEMS = 20


@dataclass(frozen=True)
class Prompt:
    index: int
    id: str
    messages: tuple[dict, ...]  # LLaMA-Factory's chat format: {"role": "user"|"assistant", "content": str}
    system: str | None = None

    def to_dict(self) -> dict:
        return {"index": self.index, "id": self.id, "messages": [dict(m) for m in self.messages],
                "system": self.system}

    @property
    def text(self) -> str:
        """The last user turn: what a reader of an example pair needs to see."""
        return self.messages[-1]["content"]


class PromptError(ValueError):
    """One record that is not a prompt; the message says why."""


def read_prompts(path: Path, limit: int | None = None) -> list[Prompt]:
    """Every prompt of the file (the first `limit`); UserError listing the records that are not prompts."""
    if not path.is_file():
        raise UserError(f"{path}: no such prompts file")
    prompts: list[Prompt] = []
    problems: list[str] = []
    ids: set[str] = set()
    for index, line, record in iter_json_file(path):
        if limit is not None and len(prompts) >= limit:
            break
        where = f"{path}:{line}" if line else str(path)
        try:
            if isinstance(record, SyntaxProblem):
                raise PromptError(record.message)
            prompt = to_prompt(index, record)
            if prompt.id in ids:
                raise PromptError(f"id {prompt.id!r} appears twice (ids name the prompts in the output)")
        except PromptError as exc:
            problems.append(f"{where}: record {index}: {exc}")
            continue
        ids.add(prompt.id)
        prompts.append(prompt)
    if problems:
        shown = problems[:MAX_PROBLEMS] + ([f"... and {len(problems) - MAX_PROBLEMS} more"]
                                           if len(problems) > MAX_PROBLEMS else [])
        raise UserError(f"{len(problems)} record(s) of {path} are not prompts:\n  " + "\n  ".join(shown))
    if not prompts:
        raise UserError(f"{path} holds no prompts")
    return prompts


def to_prompt(index: int, record: object) -> Prompt:
    if isinstance(record, str):
        return Prompt(index, str(index), (_user(record, "the string"),))
    if not isinstance(record, dict):
        raise PromptError(f"expected an object or a string, got {type(record).__name__}")
    ident = str(record.get("question_id", record.get("id", index)))
    for key in ("conversations", "messages"):
        if key in record:
            system, messages = _conversation(record[key], key)
            return Prompt(index, ident, messages, _text(record.get("system"), "system") or system)
    if "instruction" in record:
        return Prompt(index, ident, _alpaca(record), _text(record.get("system"), "system"))
    if "turns" in record:
        turns = record["turns"]
        if not isinstance(turns, list) or not turns:
            raise PromptError("'turns' must be a non-empty list of strings (MT-Bench)")
        return Prompt(index, ident, (_user(turns[0], "turns[0]"),))
    for key in ("prompt", "question"):
        if key in record:
            return Prompt(index, ident, (_user(record[key], key),), _text(record.get("system"), "system"))
    raise PromptError("no prompt found: expected conversations/messages (ShareGPT), instruction (alpaca, "
                      "AlpacaEval), turns (MT-Bench), prompt or question")


def _conversation(turns: object, key: str) -> tuple[str | None, tuple[dict, ...]]:
    if not isinstance(turns, list) or not turns:
        raise PromptError(f"'{key}' must be a non-empty list of turns")
    system, messages = None, []
    for position, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise PromptError(f"{key}[{position}] must be an object")
        role_name = turn.get("from", turn.get("role"))
        role = ROLES.get(str(role_name))
        content = _text(turn.get("value", turn.get("content")), f"{key}[{position}] content")
        if role is None:
            raise PromptError(f"{key}[{position}]: unknown role {role_name!r}")
        if role == "system" and position == 0:
            system = content
        else:
            messages.append({"role": role, "content": content or ""})
    while messages and messages[-1]["role"] != "user":
        messages.pop()  # a trailing answer is not part of the prompt
    if not messages:
        raise PromptError(f"'{key}' has no user turn")
    return system, tuple(messages)


def _alpaca(record: dict) -> tuple[dict, ...]:
    instruction = _text(record["instruction"], "instruction") or ""
    extra = _text(record.get("input"), "input")
    messages: list[dict] = []
    for position, pair in enumerate(record.get("history") or []):
        if not (isinstance(pair, list) and len(pair) == 2):
            raise PromptError(f"history[{position}] must be a [question, answer] pair")
        messages += [_user(pair[0], f"history[{position}][0]"),
                     {"role": "assistant", "content": _text(pair[1], f"history[{position}][1]") or ""}]
    messages.append(_user(f"{instruction}\n\n{extra}" if extra else instruction, "instruction"))
    return tuple(messages)


def _user(value: object, where: str) -> dict:
    text = _text(value, where)
    if not text or not text.strip():
        raise PromptError(f"{where} is empty")
    return {"role": "user", "content": text}


def _text(value: object, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise PromptError(f"{where} must be a string, got {type(value).__name__}")

