"""Per-record checks: LLaMA-Factory 0.9.5's converter rules (`data/converter.py`), record by record.

Each checker is a pair: a fast predicate that says "this record is clean" with as few Python operations as
possible (most records are clean), and an explainer that runs only on the others and lists every problem
with what LLaMA-Factory does with the record: keeps it, drops it ("Skipping this abnormal example" /
"Dropped invalid example") or crashes (KeyError, TypeError, JSONDecodeError in the middle of preprocessing).
"""

from __future__ import annotations

import json

from launcher.check.data import explain
from launcher.check.data.extras import explain_extras
from launcher.check.data.verdicts import (
    CONTENT_KEYS,
    CRASH,
    ROLE_KEYS,
    ROLE_SYNONYMS,
    TAG_NAMES,
    Attr,
    Problem,
    describe,
    worst,
)
from launcher.check.diagnostics import ERROR


class RecordChecker:
    """Checks one dataset's records for one mode: 'pairwise' (dpo) or 'kto'."""

    def __init__(self, attr: Attr, mode: str, media_finder=None):
        """media_finder: a launcher.check.data.files.MediaFinder to check media paths with (None: not checked)."""
        self.attr, self.mode, self.media_finder = attr, mode, media_finder
        self.sharegpt = attr.formatting in ("sharegpt", "openai")
        c, t = attr.columns, attr.tags
        self.c, self.t = c, t
        # A tag left out of `tags` is None, and LF would then accept a message with no role key at all
        # (mapping it to a random role); we leave None out so such a message is always reported.
        self.even = tuple(tag for tag in (t["user_tag"], t["observation_tag"]) if tag is not None)
        self.odd = tuple(tag for tag in (t["assistant_tag"], t["function_tag"]) if tag is not None)
        self.known = {v for v in t.values() if v is not None} - {t["role_tag"], t["content_tag"]}
        self.media = [(name, c[name]) for name in ("images", "videos", "audios") if c[name]]
        self.has_extras = bool(c["tools"] or c["system"] or self.media)
        self.roles_seen: dict[str, set] = {"even": set(), "odd": set(), "first": set(), "answer": set()}
        self.message_keys: set = set()
        self.string_answers = 0
        self._explain_rows = explain.explain_sharegpt if self.sharegpt else explain.explain_alpaca
        self._explain_extras = explain_extras
        if self.sharegpt:
            self.fast = self._fast_sharegpt(mode == "kto")
        else:
            self.fast = self._fast_alpaca_kto if mode == "kto" else self._fast_alpaca_pairwise

    # ---------------------------------------------------------------- fast paths (clean records only)
    def _fast_sharegpt(self, kto: bool):
        """A closure over local names: this runs once per record, so every lookup counts."""
        c, t = self.c, self.t
        messages_key, chosen_key, rejected_key, tag_key = c["messages"], c["chosen"], c["rejected"], c["kto_tag"]
        role_key, content_key, system_tag = t["role_tag"], t["content_tag"], t["system_tag"]
        even, odd, parity = self.even, self.odd, 0 if kto else 1
        extras = self._extras if self.has_extras else None

        def turns_ok(msgs: object) -> bool:
            if type(msgs) is not list or not msgs:
                return False
            first = msgs[0]
            if system_tag and type(first) is dict and first.get(role_key) == system_tag:
                if type(first.get(content_key)) is not str:
                    return False
                msgs = msgs[1:]
            if len(msgs) % 2 != parity:
                return False
            expected = even
            for msg in msgs:
                if type(msg) is not dict:
                    return False
                content = msg.get(content_key)
                if msg.get(role_key) not in expected or type(content) is not str or not content:
                    return False
                expected = odd if expected is even else even
            return True

        def answer_ok(answer: object) -> bool:
            if type(answer) is not dict:
                return False
            content = answer.get(content_key)
            return answer.get(role_key) in odd and type(content) is str and content != ""

        def pairwise(rec: dict) -> bool:
            chosen, rejected = rec.get(chosen_key), rec.get(rejected_key)
            if not (turns_ok(rec.get(messages_key)) and answer_ok(chosen) and answer_ok(rejected)):
                return False
            return chosen[content_key] != rejected[content_key] and (extras is None or not extras(rec))

        def feedback(rec: dict) -> bool:
            if type(rec.get(tag_key)) is not bool or not turns_ok(rec.get(messages_key)):
                return False
            return extras is None or not extras(rec)

        return feedback if kto else pairwise

    def _fast_alpaca_pairwise(self, rec: dict) -> bool:
        chosen, rejected = rec.get(self.c["chosen"]), rec.get(self.c["rejected"])
        if type(chosen) is not str or type(rejected) is not str or not chosen or not rejected or chosen == rejected:
            return False
        return self._fast_alpaca_prompt(rec) and (not self.has_extras or not self._extras(rec))

    def _fast_alpaca_kto(self, rec: dict) -> bool:
        response = rec.get(self.c["response"]) if self.c["response"] else None
        if type(rec.get(self.c["kto_tag"])) is not bool or type(response) is not str or not response:
            return False
        return self._fast_alpaca_prompt(rec) and (not self.has_extras or not self._extras(rec))

    def _fast_alpaca_prompt(self, rec: dict) -> bool:
        c = self.c
        prompt = rec.get(c["prompt"]) if c["prompt"] else None
        query = rec.get(c["query"]) if c["query"] else None
        if not (type(prompt) is str and prompt) and not (type(query) is str and query):
            return False
        if prompt is not None and type(prompt) is not str or query is not None and type(query) is not str:
            return False
        history = rec.get(c["history"]) if c["history"] else None
        return type(history) is not list or all(  # LF ignores a history that is not a list
            type(pair) is list and len(pair) == 2 and type(pair[0]) is str and type(pair[1]) is str for pair in history)

    # ---------------------------------------------------------------- explainers
    def explain(self, rec: object) -> tuple[list[Problem], str]:
        """Every problem of a record that failed the fast path, and what LF does with it."""
        if not isinstance(rec, dict):
            return [Problem(ERROR, "record-type", None, f"expected a JSON object but got {describe(rec)}",
                            "each record is one object with the columns named in dataset_info.json")], CRASH
        problems: list[Problem] = []
        verdict = self._explain_rows(self, rec, problems)
        extra_verdict = self._explain_extras(self, rec, problems)
        return problems, worst(verdict, extra_verdict)

    def _extras(self, rec: dict) -> list[Problem]:
        problems: list[Problem] = []
        self._explain_extras(self, rec, problems)
        return problems


def shape_advice(ck: RecordChecker) -> Problem | None:
    """One precise fix for the most common mistake: sharegpt data whose keys/roles are not the entry's tags
    (e.g. {"from": "user"} with the default user_tag 'human'), or plain-string chosen/rejected."""
    if not ck.sharegpt:
        return None
    fix = _tag_fixes(ck)
    if not fix and not ck.string_answers:
        return None
    tags = _suggested_tags(ck, fix)
    example = json.dumps({tags["role_tag"]: tags["assistant_tag"], tags["content_tag"]: "..."})
    answers = (f"chosen/rejected must be message objects like {example} ({ck.string_answers} record(s) have "
               "plain strings); `dpo-launch convert` rewrites records of this shape") if ck.string_answers else ""
    if not fix:
        return Problem(ERROR, "chosen-type", None, answers)
    declared = ", ".join(f"{name} {ck.t[name]!r}" for name in fix)
    message = f"the records do not use the entry's tags ({declared}); declare \"tags\": {json.dumps(tags)} in the entry"
    return Problem(ERROR, "tags-mismatch", "tags", message + (f"; and {answers}" if answers else ""),
                   "once tags is given, every tag left out is None, so list them all")


def _tag_fixes(ck: RecordChecker) -> dict:
    fix, keys, t = {}, ck.message_keys, ck.t
    if keys and t["role_tag"] not in keys:
        fix["role_tag"] = next((k for k in ROLE_KEYS if k in keys), None)
    if keys and t["content_tag"] not in keys:
        fix["content_tag"] = next((k for k in CONTENT_KEYS if k in keys), None)
    positional = {"first": "user_tag", "even": "user_tag", "odd": "assistant_tag", "answer": "assistant_tag"}
    seen = set().union(*ck.roles_seen.values())
    for kind in ("first", "even", "odd", "answer"):
        for role in sorted(ck.roles_seen[kind] - ck.known if "role_tag" not in fix else ck.roles_seen[kind]):
            tag = next((name for name, words in ROLE_SYNONYMS.items() if role.lower() in words), positional[kind])
            if t[tag] not in seen or "role_tag" in fix:  # data that mixes both names: the record errors say where
                fix.setdefault(tag, role)
    return {name: value for name, value in fix.items() if value is not None and value != t[name]}


def _suggested_tags(ck: RecordChecker, fix: dict) -> dict:
    tags = {name: value for name, value in ck.t.items() if value is not None}
    tags.update(fix)
    seen = set().union(*ck.roles_seen.values())
    optional = ("observation_tag", "function_tag", "system_tag")
    return {name: tags.get(name) for name in TAG_NAMES
            if tags.get(name) is not None and (name not in optional or name in fix or tags[name] in seen)}
