"""One reader per input format (record -> `Pair`), and the detection rules used when `--from` is left out.

Accepted shapes (the first listed is the canonical one; the others are common variants):

- trl: `prompt`/`chosen`/`rejected` strings (TRL standard, optional `system` string); or `prompt` a message
  list and `chosen`/`rejected` each one assistant message, a list holding one, or a string (TRL conversational).
- openai: OpenAI's preference fine-tuning shape, `input.messages` + `preferred_output` + `non_preferred_output`
  (each a list with one assistant message); or `messages` plus a rejected alternative: `messages` ending on the
  chosen assistant reply with `rejected` (or `rejected_message`, `rejected_response`), or `messages` ending on
  the user with `chosen` and `rejected`.
- sharegpt-strings: `conversations` (or `messages`) with from/value or role/content, user|human roles,
  and `chosen`/`rejected` as strings or message objects; a top-level `system` string is used when the
  conversation has no system message.
- hh: Anthropic HH-RLHF, `chosen` and `rejected` full transcripts ("\\n\\nHuman: ...\\n\\nAssistant: ...")
  sharing everything but the last Assistant turn; or a `prompt` transcript ending in "Assistant:" with
  `chosen`/`rejected` replies.
- ultrafeedback: UltraFeedback-binarized, `chosen`/`rejected` full message lists sharing all but the last
  assistant message (TRL's implicit-prompt conversational form); a `prompt` string is used when the lists
  hold only the assistant message. AutoTrain's multi-turn DPO/ORPO data has this shape with `prompt` as a
  message list; AutoTrain itself rebuilds the prompt from `chosen[:-1]` and so does this reader
  (autotrain-advanced, trainers/clm/utils.py `apply_chat_template`).
- alpaca: `instruction`, optional `input`, `chosen`/`rejected` strings, optional `system` and `history`
  ([[user, assistant], ...]); LF's pre-0.8 `output: [chosen, rejected]` is accepted too.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from launcher.convert.messages import (
    ASSISTANT,
    USER,
    Pair,
    Unconvertible,
    dialogue,
    make_pair,
    optional_text,
    require,
    response,
    shared_prompt,
    text,
    type_name,
)

REJECTED_KEYS = ("rejected", "rejected_message", "rejected_response")
HH_MARKER = re.compile(r"(?:^|\n\n)(Human|Assistant):")


def read_trl(record: dict) -> Pair:
    prompt = require(record, "prompt")
    chosen, rejected = require(record, "chosen"), require(record, "rejected")
    if isinstance(prompt, list):
        system, turns = dialogue(prompt, "prompt")
    else:
        system, turns = optional_text(record, "system"), [text(prompt, "prompt")]
    return make_pair(system, turns, response(chosen, "chosen"), response(rejected, "rejected"))


def read_openai(record: dict) -> Pair:
    if "input" in record or "preferred_output" in record:
        return _read_openai_preference(record)
    system, turns = dialogue(require(record, "messages"), "messages")
    rejected_key = next((k for k in REJECTED_KEYS if record.get(k) is not None), None)
    if rejected_key is None:
        raise Unconvertible("missing-field", f"no rejected alternative: expected one of {', '.join(REJECTED_KEYS)}")
    rejected = response(record[rejected_key], rejected_key)
    if record.get("chosen") is not None:
        return make_pair(system, turns, response(record["chosen"], "chosen"), rejected)
    if len(turns) % 2 == 1:
        raise Unconvertible("no-response", "messages end on a user turn and there is no 'chosen' field")
    return make_pair(system, turns[:-1], turns[-1], rejected)


def _read_openai_preference(record: dict) -> Pair:
    source = require(record, "input")
    if not isinstance(source, dict):
        raise Unconvertible("wrong-type", f"input is {type_name(source)}, expected an object with 'messages'")
    if source.get("tools"):  # tool schemas have no place in a ShareGPT ranking row without a tools column
        raise Unconvertible("unsupported-tools", "input.tools is set; records with tools are not converted")
    system, turns = dialogue(require(source, "messages"), "input.messages")
    chosen = response(require(record, "preferred_output"), "preferred_output")
    rejected = response(require(record, "non_preferred_output"), "non_preferred_output")
    return make_pair(system, turns, chosen, rejected)


def read_sharegpt_strings(record: dict) -> Pair:
    key = "conversations" if "conversations" in record else "messages"
    system, turns = dialogue(require(record, key), key)
    system = system if system is not None else optional_text(record, "system")
    return make_pair(system, turns, response(require(record, "chosen"), "chosen"),
                     response(require(record, "rejected"), "rejected"))


def read_hh(record: dict) -> Pair:
    chosen, rejected = text(require(record, "chosen"), "chosen"), text(require(record, "rejected"), "rejected")
    if record.get("prompt") is not None:
        turns = transcript(text(record["prompt"], "prompt"), "prompt")
        if turns and turns[-1] == (ASSISTANT, ""):  # the open "Assistant:" the replies continue
            turns.pop()
        return make_pair(None, _alternating(turns, "prompt"), chosen.strip(), rejected.strip())
    chosen_turns = _alternating(transcript(chosen, "chosen"), "chosen")
    rejected_turns = _alternating(transcript(rejected, "rejected"), "rejected")
    prompt = shared_prompt(chosen_turns, rejected_turns, "turn")
    return make_pair(None, prompt, chosen_turns[-1], rejected_turns[-1])


def transcript(value: str, where: str) -> list[tuple[str, str]]:
    """(role, text) turns of an HH transcript; the text before the first marker must be blank."""
    pieces = HH_MARKER.split(value)
    if pieces[0].strip() or len(pieces) == 1:
        raise Unconvertible("bad-transcript", f"{where} does not start with a '\\n\\nHuman:' turn")
    roles, texts = pieces[1::2], pieces[2::2]
    return [(USER if r == "Human" else ASSISTANT, t.strip()) for r, t in zip(roles, texts, strict=True)]


def _alternating(turns: list[tuple[str, str]], where: str) -> list[str]:
    for i, (role, _) in enumerate(turns):
        expected = USER if i % 2 == 0 else ASSISTANT
        if role != expected:
            label = {USER: "Human", ASSISTANT: "Assistant"}
            raise Unconvertible("role-order", f"{where} turn {i} is '{label[role]}:', expected '{label[expected]}:' "
                                     "(turns must alternate, starting with Human)")
    return [t for _, t in turns]


def read_ultrafeedback(record: dict) -> Pair:
    chosen_raw, rejected_raw = require(record, "chosen"), require(record, "rejected")
    if record.get("prompt") is not None and _single(chosen_raw) and _single(rejected_raw):  # assistant-only lists
        return make_pair(None, [text(record["prompt"], "prompt")], response(chosen_raw, "chosen"),
                         response(rejected_raw, "rejected"))
    chosen_system, chosen = dialogue(chosen_raw, "chosen")
    rejected_system, rejected = dialogue(rejected_raw, "rejected")
    if chosen_system != rejected_system:
        raise Unconvertible("prompt-mismatch", "chosen and rejected have different system messages")
    prompt = shared_prompt(chosen, rejected, "message")
    return make_pair(chosen_system, prompt, chosen[-1], rejected[-1])


def _single(value: object) -> bool:
    return isinstance(value, list) and len(value) == 1


def read_alpaca(record: dict) -> Pair:
    query = [text(require(record, "instruction"), "instruction")]
    if record.get("input"):  # LF joins instruction and input with a newline, leaving out an empty input
        query.append(text(record["input"], "input"))
    chosen, rejected = _alpaca_responses(record)
    return make_pair(optional_text(record, "system"), _history(record) + ["\n".join(query)], chosen, rejected)


def _alpaca_responses(record: dict) -> tuple[str, str]:
    if "chosen" not in record and isinstance(record.get("output"), list):  # LF < 0.8: output: [chosen, rejected]
        output = record["output"]
        if len(output) != 2:
            raise Unconvertible("wrong-type", f"output has {len(output)} items, expected [chosen, rejected]")
        return text(output[0], "output[0]"), text(output[1], "output[1]")
    return text(require(record, "chosen"), "chosen"), text(require(record, "rejected"), "rejected")


def _history(record: dict) -> list[str]:
    history = record.get("history") or []
    if not isinstance(history, list):
        raise Unconvertible("wrong-type",
                            f"history is {type_name(history)}, expected a list of [user, assistant] pairs")
    turns: list[str] = []
    for i, item in enumerate(history):
        if not (isinstance(item, list) and len(item) == 2):
            raise Unconvertible("wrong-type", f"history[{i}] is not a [user, assistant] pair")
        turns += [text(item[0], f"history[{i}][0]"), text(item[1], f"history[{i}][1]")]
    return turns


READERS: dict[str, Callable[[dict], Pair]] = {
    "trl": read_trl,
    "openai": read_openai,
    "sharegpt-strings": read_sharegpt_strings,
    "hh": read_hh,
    "ultrafeedback": read_ultrafeedback,
    "alpaca": read_alpaca,
}
FORMATS = tuple(READERS)
ALIASES = {"sharegpt": "sharegpt-strings", "hh-rlhf": "hh", "anthropic-hh": "hh",
           "ultrafeedback-binarized": "ultrafeedback", "autotrain": "ultrafeedback"}


def detect(record: object) -> tuple[str, str] | None:
    """(format, the rule that matched) for one record, or None when no rule matches."""
    if not isinstance(record, dict):
        return None
    keys = set(record)
    has_pair = {"chosen", "rejected"} <= keys
    if "preferred_output" in keys or isinstance(record.get("input"), dict):
        return "openai", "input.messages with preferred_output/non_preferred_output"
    if isinstance(record.get("messages"), list) and keys & {"rejected_message", "rejected_response"}:
        return "openai", "messages with a rejected alternative"
    if isinstance(record.get("conversations"), list) and has_pair:
        return "sharegpt-strings", "conversations with chosen/rejected"
    if "instruction" in keys and (has_pair or isinstance(record.get("output"), list)):
        return "alpaca", "instruction with chosen/rejected"
    if isinstance(record.get("messages"), list) and "rejected" in keys:
        return "openai", "messages with a rejected alternative"
    if not has_pair:
        return None
    return _detect_pair(record)


def _detect_pair(record: dict) -> tuple[str, str] | None:
    prompt, chosen = record.get("prompt"), record["chosen"]
    if isinstance(chosen, str):
        if _looks_like_transcript(prompt if isinstance(prompt, str) else chosen):
            return "hh", "Human:/Assistant: transcripts"
        if isinstance(prompt, str):
            return "trl", "prompt/chosen/rejected strings (TRL standard)"
        return None
    if isinstance(prompt, list) and _conversation(chosen) and _conversation(record["rejected"]):
        return "ultrafeedback", "full chosen/rejected conversations, the prompt a message list (AutoTrain)"
    if isinstance(prompt, list):
        return "trl", "prompt/chosen/rejected message lists (TRL conversational)"
    if isinstance(chosen, list):
        return "ultrafeedback", "chosen/rejected message lists sharing a prompt"
    return None


def _conversation(value: object) -> bool:
    """A message list holding more than the answer: the whole conversation."""
    return isinstance(value, list) and len(value) > 1


def _looks_like_transcript(value: object) -> bool:
    return isinstance(value, str) and ("\n\nHuman:" in value or value.startswith("Human:"))
