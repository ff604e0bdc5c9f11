"""The common pieces of every input format: messages, dialogues and the normalised preference pair.

Every reader in `formats.py` turns one input record into a `Pair` or raises `Unconvertible` with a stable code
and a message saying what was found; nothing is dropped without a reason.
"""

from __future__ import annotations

from dataclasses import dataclass

USER, ASSISTANT, SYSTEM = "user", "assistant", "system"

# Role names seen in the wild -> our three roles. Tool/function turns have no place in a user/assistant
# alternation LF's ShareGPT ranking rows can express without tool schemas, so they are reported, not guessed.
ROLE_ALIASES = {
    "user": USER, "human": USER,
    "assistant": ASSISTANT, "gpt": ASSISTANT, "bot": ASSISTANT, "model": ASSISTANT, "chatgpt": ASSISTANT,
    "system": SYSTEM,
}
ARTICLE = {USER: "a user", ASSISTANT: "an assistant", SYSTEM: "a system"}
ROLE_KEYS = ("role", "from")
CONTENT_KEYS = ("content", "value")


class Unconvertible(Exception):
    """A record that cannot be converted: `code` is stable (counted in the summary), `message` says why."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Pair:
    """One preference pair: `prompt` alternates user/assistant texts, starts and ends on the user."""

    system: str | None
    prompt: tuple[str, ...]
    chosen: str
    rejected: str


def type_name(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def require(record: dict, key: str) -> object:
    if key not in record or record[key] is None:
        raise Unconvertible("missing-field", f"no '{key}' field")
    return record[key]


def text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise Unconvertible("wrong-type", f"{where} is {type_name(value)}, expected a string")
    return value


def optional_text(record: dict, key: str) -> str | None:
    value = record.get(key)
    return None if value is None else text(value, key)


def message(value: object, where: str) -> tuple[str, str]:
    """(role, text) of one message object in role/content or from/value form."""
    if not isinstance(value, dict):
        raise Unconvertible("wrong-type", f"{where} is {type_name(value)}, expected a message object")
    role_key = next((k for k in ROLE_KEYS if k in value), None)
    content_key = next((k for k in CONTENT_KEYS if k in value), None)
    if role_key is None or content_key is None:
        missing = "role (or from)" if role_key is None else "content (or value)"
        raise Unconvertible("missing-field", f"{where} has no {missing}")
    role = ROLE_ALIASES.get(str(value[role_key]).lower())
    if role is None:
        raise Unconvertible("unknown-role", f"{where}.{role_key} is '{value[role_key]}', expected one of user, human, "
                                   "assistant, gpt, system (tool and function turns are not converted)")
    return role, content(value[content_key], f"{where}.{content_key}")


def content(value: object, where: str) -> str:
    """A message's text; OpenAI content-part lists are joined when every part is text."""
    if isinstance(value, list):
        parts = []
        for i, part in enumerate(value):
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                kind = part.get("type") if isinstance(part, dict) else type_name(part)
                raise Unconvertible("unsupported-content", f"{where}[{i}] is a '{kind}' part; only text parts convert")
            parts.append(part["text"])
        return "".join(parts)
    return text(value, where)


def dialogue(messages: object, where: str) -> tuple[str | None, list[str]]:
    """(system, texts) of a message list: an optional first system message, then user/assistant alternating."""
    if not isinstance(messages, list):
        raise Unconvertible("wrong-type", f"{where} is {type_name(messages)}, expected a list of messages")
    turns = [message(m, f"{where}[{i}]") for i, m in enumerate(messages)]
    system = None
    if turns and turns[0][0] == SYSTEM:
        system = turns.pop(0)[1]
    offset = len(messages) - len(turns)
    for i, (role, _) in enumerate(turns):
        expected = USER if i % 2 == 0 else ASSISTANT
        if role != expected:
            detail = "a system message is only allowed first" if role == SYSTEM else \
                "turns must alternate user/assistant, starting with user"
            raise Unconvertible("role-order", f"{where}[{i + offset}] is {ARTICLE[role]} message, expected "
                                     f"{ARTICLE[expected]} one ({detail})")
    return system, [t for _, t in turns]


def response(value: object, where: str) -> str:
    """The text of a response given as a string, one assistant message, or a list holding one."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        if len(value) != 1:
            raise Unconvertible("multi-message-response",
                       f"{where} has {len(value)} messages, expected one assistant message")
        value, where = value[0], f"{where}[0]"
    role, body = message(value, where)
    if role != ASSISTANT:
        raise Unconvertible("role-order", f"{where} is {ARTICLE[role]} message, expected an assistant message")
    return body


def make_pair(system: str | None, prompt: list[str], chosen: str, rejected: str) -> Pair:
    """The final checks every format shares: a user turn last, and no empty text anywhere."""
    if not prompt:
        raise Unconvertible("no-user-turn", "the prompt has no user turn")
    if len(prompt) % 2 == 0:
        raise Unconvertible("prompt-ends-on-assistant", "the prompt ends on an assistant turn, expected the user's")
    for name, value in (("chosen", chosen), ("rejected", rejected)):
        if not value.strip():
            raise Unconvertible(f"empty-{name}", f"{name} is empty")
    for i, turn in enumerate(prompt):
        if not turn.strip():
            raise Unconvertible("empty-turn", f"prompt turn {i} ({USER if i % 2 == 0 else ASSISTANT}) is empty")
    return Pair(system or None, tuple(prompt), chosen, rejected)


def shared_prompt(chosen: list[str], rejected: list[str], what: str) -> list[str]:
    """The prompt two full dialogues share: all but their last (assistant) turn, which must be equal."""
    for name, turns in (("chosen", chosen), ("rejected", rejected)):
        if len(turns) % 2 == 1 or not turns:
            raise Unconvertible("no-response", f"{name} does not end on an assistant {what}")
    if chosen[:-1] != rejected[:-1]:
        first = next((i for i, (a, b) in enumerate(zip(chosen[:-1], rejected[:-1], strict=False)) if a != b),
                     min(len(chosen), len(rejected)) - 1)
        raise Unconvertible("prompt-mismatch",
                            f"chosen and rejected do not share a prompt (they differ at {what} {first})")
    return chosen[:-1]


def to_ranking(pair: Pair) -> dict:
    """LF's default ShareGPT ranking row (`dpo_en_demo` shape)."""
    return {"conversations": _conversation(pair), "chosen": {"from": "gpt", "value": pair.chosen},
            "rejected": {"from": "gpt", "value": pair.rejected}}


def to_kto(pair: Pair) -> list[dict]:
    """Two unpaired KTO rows: the chosen answer desirable, the rejected one undesirable."""
    head = _conversation(pair)
    return [{"conversations": head + [{"from": "gpt", "value": pair.chosen}], "label": True},
            {"conversations": head + [{"from": "gpt", "value": pair.rejected}], "label": False}]


def _conversation(pair: Pair) -> list[dict]:
    turns = [{"from": "system", "value": pair.system}] if pair.system else []
    turns += [{"from": "human" if i % 2 == 0 else "gpt", "value": t} for i, t in enumerate(pair.prompt)]
    return turns
