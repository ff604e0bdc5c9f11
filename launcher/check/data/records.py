"""Per-record checks: LLaMA-Factory 0.9.5's converter rules (`data/converter.py`), record by record.

Each checker is a pair: a fast predicate that says "this record is clean" with as few Python operations as
possible (most records are clean), and an explainer that runs only on the others and lists every problem
with what LLaMA-Factory does with the record: keeps it, drops it ("Skipping this abnormal example" /
"Dropped invalid example") or crashes (KeyError, TypeError, JSONDecodeError in the middle of preprocessing).
"""

from __future__ import annotations

from launcher.check.data import explain
from launcher.check.data.extras import explain_extras
from launcher.check.data.templated import FIND_MARKER
from launcher.check.data.verdicts import (
    CRASH,
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
        self.recipe = (attr, mode, media_finder)  # what a worker process builds the same checker from (scan.py)
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
        self.roles_seen: dict[str, set] = {}
        self.message_keys: set = set()
        self.start_file()
        self._explain_rows = explain.explain_sharegpt if self.sharegpt else explain.explain_alpaca
        self._explain_extras = explain_extras
        if self.sharegpt:
            self.fast_keys = self._fast_sharegpt(mode == "kto")
        else:
            self.fast_keys = self._fast_alpaca_kto if mode == "kto" else self._fast_alpaca_pairwise

    def fast(self, rec: dict) -> bool:
        """The record is clean (every check of the explainer passes)."""
        return self.fast_keys(rec) > 0

    def start_file(self) -> None:
        """Forget the role names and message keys seen: the file-wide advice (filewide.py) is per file."""
        self.roles_seen = {"even": set(), "odd": set(), "first": set(), "answer": set()}
        self.message_keys = set()

    # ---------------------------------------------------------------- fast paths (clean records only)
    # Each returns 0 for a record that is not clean, and for a clean one the number of keys of the objects it
    # looked at (at least 1): a lower bound of the record's keys, which the duplicate-key check uses
    # (json_keys.may_repeat_a_key).
    def _fast_sharegpt(self, kto: bool):
        """A closure over local names: this runs once per record, so every lookup counts."""
        c, t = self.c, self.t
        messages_key, chosen_key, rejected_key, tag_key = c["messages"], c["chosen"], c["rejected"], c["kto_tag"]
        role_key, content_key, system_tag = t["role_tag"], t["content_tag"], t["system_tag"]
        even, odd, parity = self.even, self.odd, 0 if kto else 1
        extras = self._extras if self.has_extras else None
        find = FIND_MARKER  # a chat template's markers: the regex runs only on a text holding '<' or '['

        # Items are read by subscript, not .get: a missing key or a value that is not an object raises KeyError
        # or TypeError, which the record-level functions turn into 0 (not clean), and a subscript is the cheaper
        # of the two on a record that is clean.
        def turns_ok(msgs: object) -> int:
            """The keys of the messages when they are clean, else 0 (or KeyError/TypeError)."""
            if type(msgs) is not list or not msgs:
                return 0
            first, keys = msgs[0], 0
            if system_tag and first[role_key] == system_tag:  # KeyError, TypeError: not a clean first message
                system = first.get(content_key)
                if type(system) is not str or ("<" in system or "[" in system) and find(system):
                    return 0
                msgs, keys = msgs[1:], len(first)
            if len(msgs) % 2 != parity or not msgs:  # KTO: a lone system prompt has no turn to judge
                return 0
            expected = even
            for msg in msgs:
                content = msg[content_key]  # TypeError for a message that is not an object
                if msg[role_key] not in expected or type(content) is not str or not content:
                    return 0
                if ("<" in content or "[" in content) and find(content):
                    return 0
                expected = odd if expected is even else even
                keys += len(msg)
            return keys

        def pairwise(rec: dict) -> int:
            # The two answers' checks written out, not a function called twice: this is the hottest code of a
            # data check (bench/validate_speed.py).
            try:
                turns = turns_ok(rec[messages_key])
                if not turns:
                    return 0
                chosen, rejected = rec[chosen_key], rec[rejected_key]
                good, bad = chosen[content_key], rejected[content_key]
                if chosen[role_key] not in odd or rejected[role_key] not in odd:
                    return 0
            except (KeyError, TypeError):
                return 0
            if type(good) is not str or type(bad) is not str or not good or not bad or good == bad:
                return 0
            if ("<" in good or "[" in good) and find(good) or ("<" in bad or "[" in bad) and find(bad):
                return 0
            if extras is not None and extras(rec):
                return 0
            return len(rec) + turns + len(chosen) + len(rejected)

        def feedback(rec: dict) -> int:
            if type(rec.get(tag_key)) is not bool:
                return 0
            try:
                turns = turns_ok(rec[messages_key])
            except (KeyError, TypeError):
                return 0
            if not turns or extras is not None and extras(rec):
                return 0
            return len(rec) + turns

        return feedback if kto else pairwise

    def _fast_alpaca_pairwise(self, rec: dict) -> int:
        chosen, rejected = rec.get(self.c["chosen"]), rec.get(self.c["rejected"])
        if type(chosen) is not str or type(rejected) is not str or not chosen or not rejected or chosen == rejected:
            return 0
        if _templated(chosen) or _templated(rejected):
            return 0
        clean = self._fast_alpaca_prompt(rec) and (not self.has_extras or not self._extras(rec))
        return len(rec) if clean else 0

    def _fast_alpaca_kto(self, rec: dict) -> int:
        response = rec.get(self.c["response"]) if self.c["response"] else None
        if type(rec.get(self.c["kto_tag"])) is not bool or type(response) is not str or not response:
            return 0
        if _templated(response):
            return 0
        clean = self._fast_alpaca_prompt(rec) and (not self.has_extras or not self._extras(rec))
        return len(rec) if clean else 0

    def _fast_alpaca_prompt(self, rec: dict) -> bool:
        c = self.c
        prompt = rec.get(c["prompt"]) if c["prompt"] else None
        query = rec.get(c["query"]) if c["query"] else None
        if not (type(prompt) is str and prompt) and not (type(query) is str and query):
            return False
        if prompt is not None and type(prompt) is not str or query is not None and type(query) is not str:
            return False
        if prompt and _templated(prompt) or query and _templated(query):
            return False
        history = rec.get(c["history"]) if c["history"] else None
        return type(history) is not list or all(  # LF ignores a history that is not a list
            type(pair) is list and len(pair) == 2 and type(pair[0]) is str and type(pair[1]) is str
            and not _templated(pair[0]) and not _templated(pair[1]) for pair in history)

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


def _templated(text: str) -> bool:
    return ("<" in text or "[" in text) and FIND_MARKER(text) is not None
