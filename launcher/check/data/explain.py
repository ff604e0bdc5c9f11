"""The slow path of the record checks: every problem of a record that failed the fast path, in the order
LLaMA-Factory's converter meets them (`data/converter.py`, SharegptDatasetConverter/AlpacaDatasetConverter),
with the verdict: kept, dropped ("Skipping this abnormal example") or crash.
"""

from __future__ import annotations

from launcher.check.data.templated import templated_problem
from launcher.check.data.verdicts import (
    CHOSEN_HINT_SHAREGPT,
    CONTENT_KEYS,
    CRASH,
    DROPPED,
    KEPT,
    KTO_TAG_HINT,
    ROLE_KEYS,
    ROLE_TAGS_HINT,
    Problem,
    describe,
    worst,
)
from launcher.check.diagnostics import ERROR, WARNING


def _names(tags: tuple) -> str:
    return " or ".join(f"'{tag}'" for tag in tags if tag is not None) or "(no tag declared)"


def _content(ck, value: object, path: str, out: list, absent: str | None = None) -> bool:
    """Check a message's content; True when LF's template would crash on it. `absent`: the shape of a missing
    value when its key is absent (not null)."""
    if value is None:
        out.append(Problem(ERROR, "missing-key", path, f"{path} is missing (the content_tag is "
                           f"'{ck.t['content_tag']}'); LLaMA-Factory crashes on a null content", shape=absent))
        return True
    if not isinstance(value, str):
        out.append(Problem(ERROR, "value-type", path, f"{path} must be a string but got {describe(value)}"))
        return True
    if not value.strip():
        out.append(Problem(WARNING, "empty-content", path, f"{path} is empty; LLaMA-Factory trains on it as is"))
    text_problem(value, path, out)
    return False


def text_problem(value: object, path: str, out: list) -> None:
    """The checks of any text the template formats (a turn, an answer, a system prompt)."""
    found = templated_problem(value, path)
    if found:
        out.append(found)


def _message_content(ck, msg: dict, path: str, out: list) -> bool:
    key = ck.t["content_tag"]
    return _content(ck, msg.get(key), f"{path}.{key}", out, None if key in msg else "keys:content")


def _seen_role(ck, msg: dict, kind: str) -> object:
    role_key = ck.t["role_tag"]
    ck.message_keys.update(msg.keys())
    role = msg.get(role_key) if role_key in msg else next((msg[k] for k in ROLE_KEYS if k in msg), None)
    if isinstance(role, str):
        ck.roles_seen[kind].add(role)
    return msg.get(role_key)


def explain_sharegpt(ck, rec: dict, out: list) -> str:
    col = ck.c["messages"]
    msgs = rec.get(col)
    if not isinstance(msgs, list):
        out.append(_missing_messages(ck, rec, col, msgs))
        return CRASH
    t = ck.t
    start = 0
    content_crash = False
    if t["system_tag"] and msgs and isinstance(msgs[0], dict) and msgs[0].get(t["role_tag"]) == t["system_tag"]:
        start = 1
        _seen_role(ck, msgs[0], "first")
        content_crash |= _message_content(ck, msgs[0], f"{col}[0]", out)
    broken = False
    for turn, msg in enumerate(msgs[start:]):
        path = f"{col}[{turn + start}]"
        if not isinstance(msg, dict):
            out.append(Problem(ERROR, "message-type", path, f"{path} must be a message object but got {describe(msg)}"))
            return CRASH
        role = _seen_role(ck, msg, "first" if turn + start == 0 else "odd" if turn % 2 else "even")
        expected = ck.odd if turn % 2 else ck.even
        if not broken and role not in expected:
            broken = True
            out.append(_role_problem(ck, msg, role, expected, f"{path}.{t['role_tag']}", turn))
        content_crash |= _message_content(ck, msg, path, out)
    broken |= _turn_count(ck, msgs, start, col, out)
    if ck.mode == "kto":
        answers = _kto_tag(ck, rec, out)
    else:
        answers = _answers_sharegpt(ck, rec, out, broken)
    if broken:
        return DROPPED
    return worst(CRASH if content_crash else KEPT, answers)


def _missing_messages(ck, rec: dict, col: str, value: object) -> Problem:
    if value is not None:
        return Problem(ERROR, "value-type", col, f"'{col}' must be a list of messages but got {describe(value)}")
    lists = [key for key, val in rec.items() if isinstance(val, list) and val and isinstance(val[0], dict)]
    hint = (f"the record has a list of messages under '{lists[0]}': map it with \"columns\": "
            f"{{\"messages\": \"{lists[0]}\", ...}}" if lists else "map the messages column in dataset_info.json")
    return Problem(ERROR, "missing-column", col, f"'{col}' (the messages column) is missing; LLaMA-Factory "
                   "crashes on it", hint, shape=_absent_column(rec, col))


def _absent_column(rec: dict, col: str | None) -> str | None:
    """The shape of a column the record does not have at all (a typo in the entry's columns, when file-wide)."""
    return f"column:{col}" if col and col not in rec else None


def _role_problem(ck, msg: dict, role: object, expected: tuple, path: str, turn: int) -> Problem:
    t = ck.t
    if t["role_tag"] not in msg:
        return Problem(ERROR, "missing-key", path, f"{path} is missing (the role_tag is '{t['role_tag']}'); "
                       "LLaMA-Factory drops the record", _keys_hint(msg), shape="keys:role")
    if role is not None and role == t["system_tag"]:
        return Problem(ERROR, "system-position", path, f"{path} is '{role}', a system message after the first "
                       "turn; LLaMA-Factory drops the record (Invalid role tag)",
                       "a system message may only come first; or map a system column")
    if role not in ck.known:
        return Problem(ERROR, "role-unknown", path, f"{path} is {role!r}, which is not a declared tag: expected "
                       f"{_names(expected)}; LLaMA-Factory drops the record (Invalid role tag)",
                       ROLE_TAGS_HINT, shape=_role_shape(role))
    side = "an assistant or function" if turn % 2 else "a user or observation"
    return Problem(ERROR, "role-order", path, f"{path} is '{role}', expected {_names(expected)} "
                   f"(turn {turn} must be {side} turn: turns alternate and start with the user)")


def _role_shape(role: object) -> str | None:
    return f"role:{role}" if isinstance(role, str) else None


def _keys_hint(msg: dict) -> str | None:
    keys = [k for k in msg if k in ROLE_KEYS + CONTENT_KEYS]
    return f"the message has keys {', '.join(map(repr, keys))}: declare role_tag/content_tag" if keys else None


def _turn_count(ck, msgs: list, start: int, col: str, out: list) -> bool:
    count = len(msgs) - start
    after = " after the system message" if start else ""
    if ck.mode == "kto":
        if count and count % 2 == 0:
            return False
        message = (f"'{col}' has {count} turn(s){after}; KTO data needs an even number, ending on the "
                   "assistant turn that kto_tag judges")
    else:
        if count % 2 == 1:
            return False
        message = (f"'{col}' has {count} turn(s){after}; ranking data needs an odd number, ending on the user "
                   "turn (the answers go in chosen/rejected)")
    out.append(Problem(ERROR, "turn-count", col, message + "; LLaMA-Factory drops the record (Invalid message count)"))
    return True


def _answers_sharegpt(ck, rec: dict, out: list, broken: bool) -> str:
    verdicts, contents = [], []
    for key in ("chosen", "rejected"):
        col = ck.c[key]
        value = rec.get(col) if col else None
        if not isinstance(value, dict):
            out.append(_answer_type(ck, rec, col, key, value))
            verdicts.append(DROPPED)
            continue
        verdicts.append(_answer_role(ck, value, col, out))
        crash = _message_content(ck, value, col, out)
        verdicts.append(CRASH if crash else KEPT)
        contents.append(value.get(ck.t["content_tag"]))
    _identical(contents, ck.c["chosen"], ck.c["rejected"], out)
    if DROPPED in verdicts or broken:
        return DROPPED  # LF takes the pairwise branch only when both are objects and the turns are valid
    return worst(*verdicts)


def _answer_type(ck, rec: dict, col: str, key: str, value: object) -> Problem:
    if value is None:
        return Problem(ERROR, "missing-column", col, f"'{col}' (the {key} column) is missing; LLaMA-Factory drops "
                       "the record", shape=_absent_column(rec, col))
    t = ck.t
    hint = CHOSEN_HINT_SHAREGPT.format(role=t["role_tag"], assistant=t["assistant_tag"], content=t["content_tag"])
    return Problem(ERROR, "chosen-type", col, f"{col} must be one message object but got {describe(value)}; "
                   "LLaMA-Factory drops the record", hint, shape="string-answer" if isinstance(value, str) else None)


def _answer_role(ck, value: dict, col: str, out: list) -> str:
    role = _seen_role(ck, value, "answer")
    path = f"{col}.{ck.t['role_tag']}"
    if role in ck.odd and role is not None:
        return KEPT
    if role is None or role not in ck.known:
        got = "missing" if role is None else f"{role!r}"
        shape = "keys:role" if ck.t["role_tag"] not in value else _role_shape(role)
        out.append(Problem(ERROR, "role-unknown", path, f"{path} is {got}, expected {_names(ck.odd)}; LLaMA-Factory "
                           f"crashes with KeyError: {role!r}", ROLE_TAGS_HINT, shape=shape))
        return CRASH
    out.append(_wrong_answer_role(ck, role, path))
    return CRASH if role == ck.t["system_tag"] else KEPT


# What LF's template makes of an answer whose role is not an assistant's: the converter logs 'Invalid role tag'
# and keeps the record (data/converter.py, the pairwise branch sets broken_data after the check that skips),
# then Template._encode formats the answer by its role (data/template.py); rendered here with qwen3_nothink
# (qwen3 puts an empty <think></think> block before it).
ANSWER_RENDERED_AS = {
    "user_tag": ("a user turn", "'<|im_start|>user\\nANSWER<|im_end|>\\n<|im_start|>assistant\\n'"),
    "observation_tag": ("a tool result (observation) turn", "'<|im_start|>user\\n<tool_response>\\nANSWER\\n"
                        "</tool_response><|im_end|>\\n<|im_start|>assistant\\n'"),
}


def _wrong_answer_role(ck, role: object, path: str) -> Problem:
    expected = f"{path} is '{role}', expected {_names(ck.odd)}"
    fix = f"set it to '{ck.t['assistant_tag']}'"
    if role == ck.t["system_tag"]:
        return Problem(ERROR, "role-wrong", path, f"{expected}; LLaMA-Factory keeps the record, then crashes when "
                       "it tokenizes it (NotImplementedError: Unexpected role: system)", fix)
    tag = "user_tag" if role == ck.t["user_tag"] else "observation_tag"
    turn, rendered = ANSWER_RENDERED_AS[tag]
    return Problem(ERROR, "role-wrong", path, f"{expected}; LLaMA-Factory keeps the record and renders this answer "
                   f"as {turn} inside the response, so the pair trains on a corrupted target (with the qwen3_nothink "
                   f"template the target becomes {rendered})", fix)


def _identical(contents: list, chosen: str, rejected: str, out: list) -> None:
    if len(contents) == 2 and isinstance(contents[0], str) and contents[0] == contents[1]:
        out.append(Problem(WARNING, "identical-pair", chosen, f"{chosen} and {rejected} are identical; the pair "
                           "teaches nothing and its loss stays at ln 2"))


def _kto_tag(ck, rec: dict, out: list) -> str:
    col = ck.c["kto_tag"]
    value = rec.get(col) if col else None
    if isinstance(value, bool):
        return KEPT
    got = "missing" if value is None else describe(value)
    out.append(Problem(ERROR, "kto-tag-type", col, f"'{col}' (the kto_tag) must be a boolean but is {got}; "
                       "LLaMA-Factory drops the record", KTO_TAG_HINT, shape=_absent_column(rec, col)))
    return DROPPED


def explain_alpaca(ck, rec: dict, out: list) -> str:
    c = ck.c
    verdict = _history(ck, rec, out)
    texts = []
    for key in ("prompt", "query"):
        value = rec.get(c[key]) if c[key] else None
        if value is not None and not isinstance(value, str):
            out.append(Problem(ERROR, "value-type", c[key], f"'{c[key]}' must be a string but got {describe(value)}"))
            verdict = CRASH
        text_problem(value, c[key], out)
        texts.append(value)
    if not any(isinstance(text, str) and text.strip() for text in texts):
        names = " and ".join(f"'{c[k]}'" for k in ("prompt", "query") if c[k]) or "no prompt column"
        out.append(Problem(WARNING, "empty-content", c["prompt"], f"the prompt is empty ({names}: empty or missing)"))
    if ck.mode == "kto":
        tag = _kto_tag(ck, rec, out)
        response = rec.get(c["response"]) if c["response"] else None
        crash = tag == KEPT and _content(ck, response, c["response"] or "response", out,
                                         _absent_column(rec, c["response"]))
        return worst(verdict, tag, CRASH if crash else KEPT)
    return worst(verdict, _answers_alpaca(ck, rec, out))


def _history(ck, rec: dict, out: list) -> str:
    col = ck.c["history"]
    value = rec.get(col) if col else None
    if not isinstance(value, list):
        return KEPT  # LF ignores a history that is not a list
    for index, pair in enumerate(value):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            out.append(Problem(ERROR, "history-type", f"{col}[{index}]", f"{col}[{index}] must be a pair "
                               f"[prompt, response] of strings but got {describe(pair)}; LLaMA-Factory crashes"))
            return CRASH
    for index, pair in enumerate(value):
        text_problem(pair[0], f"{col}[{index}][0]", out)
        text_problem(pair[1], f"{col}[{index}][1]", out)
    return KEPT


def _answers_alpaca(ck, rec: dict, out: list) -> str:
    verdict = KEPT
    values = []
    for key in ("chosen", "rejected"):
        col = ck.c[key]
        value = rec.get(col) if col else None
        values.append(value)
        if isinstance(value, str):
            if not value.strip():
                out.append(Problem(WARNING, "empty-content", col, f"{col} is empty; LLaMA-Factory trains on it as is"))
            text_problem(value, col, out)
            continue
        verdict = DROPPED
        if value is None:
            out.append(Problem(ERROR, "missing-column", col, f"'{col}' (the {key} column) is missing; "
                               "LLaMA-Factory drops the record", shape=_absent_column(rec, col)))
        else:
            hint = "or set formatting: sharegpt for message objects" if isinstance(value, dict) else None
            out.append(Problem(ERROR, "chosen-type", col, f"{col} must be a string (formatting alpaca) but got "
                               f"{describe(value)}; LLaMA-Factory drops the record", hint))
    _identical(values, ck.c["chosen"], ck.c["rejected"], out)
    return verdict
