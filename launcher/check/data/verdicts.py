"""The records vocabulary: what a record check concludes (kept, dropped, crash), a problem as data, how a
dataset_info.json entry names columns and tags, and the words used to describe JSON values and roles.

The fast paths (records.py) and the explainers (explain.py, extras.py) share these and import nothing else of
each other.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from launcher.check.diagnostics import ERROR

KEPT, DROPPED, CRASH = "kept", "dropped", "crash"

COLUMN_NAMES = ("prompt", "query", "response", "history", "messages", "system", "tools",
                "images", "videos", "audios", "chosen", "rejected", "kto_tag")
TAG_NAMES = ("role_tag", "content_tag", "user_tag", "assistant_tag", "observation_tag", "function_tag", "system_tag")
DEFAULT_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "messages": "conversations"}
DEFAULT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}
# LF reads these from the environment (extras/constants.py).
PLACEHOLDERS = {"images": os.getenv("IMAGE_PLACEHOLDER", "<image>"),
                "videos": os.getenv("VIDEO_PLACEHOLDER", "<video>"),
                "audios": os.getenv("AUDIO_PLACEHOLDER", "<audio>")}


@dataclass
class Attr:
    """A dataset_info.json entry as `DatasetAttr.join` reads it: once `columns` (or `tags`) is given,
    every name it leaves out becomes None, not the default."""

    formatting: str = "alpaca"
    ranking: object = False
    columns: dict = field(default_factory=lambda: {name: DEFAULT_COLUMNS.get(name) for name in COLUMN_NAMES})
    tags: dict = field(default_factory=lambda: dict(DEFAULT_TAGS))

    @classmethod
    def from_entry(cls, entry: dict) -> Attr:
        attr = cls(formatting=entry.get("formatting", "alpaca"), ranking=entry.get("ranking", False))
        if "columns" in entry:
            given = entry["columns"] if isinstance(entry["columns"], dict) else {}
            attr.columns = {name: given.get(name) for name in COLUMN_NAMES}
        if "tags" in entry:
            given = entry["tags"] if isinstance(entry["tags"], dict) else {}
            attr.tags = {name: given.get(name) for name in TAG_NAMES}
        return attr


@dataclass(frozen=True)
class Problem:
    """One problem of one record. `shape` names a cause that may be file-wide (a missing column
    `column:<name>`, a role name `role:<name>`, a message key `keys:role`/`keys:content`, `string-answer`,
    `templated`): launcher.check.data.filewide reports such a cause once per file when most records share it."""

    severity: str
    code: str
    path: str | None
    message: str
    hint: str | None = None
    shape: str | None = None


CHOSEN_HINT_SHAREGPT = ("with formatting sharegpt, chosen and rejected must each be one message object, e.g. "
                        "{{\"{role}\": \"{assistant}\", \"{content}\": \"...\"}}; `dpo-launch convert` rewrites "
                        "string answers into that shape")
KTO_TAG_HINT = "use the JSON booleans true/false (not strings or 0/1); LLaMA-Factory tests isinstance(value, bool)"


def describe(value: object) -> str:
    """'a string', 'a list', ... as the user wrote it in JSON."""
    names = {str: "a string", list: "a list", dict: "an object", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    text = names.get(type(value), type(value).__name__)
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        return f"{text} ({shown})"
    return text


ROLE_TAGS_HINT = "the entry's tags name the roles: user_tag, assistant_tag, observation_tag, function_tag, system_tag"
ROLE_KEYS = ("role", "from", "speaker", "author")
CONTENT_KEYS = ("content", "value", "text")
ROLE_SYNONYMS = {
    "user_tag": ("user", "human", "usr", "prompter", "question"),
    "assistant_tag": ("assistant", "gpt", "bot", "model", "chatbot", "ai", "answer"),
    "system_tag": ("system",),
    "observation_tag": ("observation", "tool", "ipython", "function_response"),
    "function_tag": ("function_call", "function", "tool_call", "tool_calls"),
}


def worst(*verdicts: str) -> str:
    return CRASH if CRASH in verdicts else DROPPED if DROPPED in verdicts else KEPT


def tools_problem(value: object, path: str) -> tuple[Problem, str] | None:
    """`tools` must be a JSON string: the template calls json.loads on it (data/formatter.py:152)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        return Problem(ERROR, "tools-type", path,
                       f"{path} must be a JSON string but got {describe(value)}; LLaMA-Factory crashes in json.loads",
                       "serialize the tool list with json.dumps, as in glaive_toolcall_en_demo.json"), CRASH
    try:
        json.loads(value)
    except ValueError as exc:
        return Problem(ERROR, "tools-json", path, f"{path} is not valid JSON ({exc}); LLaMA-Factory raises "
                       "'Invalid JSON format in tool description'"), CRASH
    return None
