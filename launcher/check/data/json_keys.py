"""Keys repeated inside one JSON object, in a JSON Lines record.

orjson and json keep a repeated key's last value silently; pyarrow, which LLaMA-Factory loads JSON Lines with,
refuses the whole file ("JSON parse error: Column(/chosen) was specified twice in row 1"). So `validate`
looks for them in every line, with a cheap test that clears nearly every line and an exact parse for the rest.
"""

from __future__ import annotations

import json

import orjson


def may_repeat_a_key(raw: bytes, value: object) -> bool:
    """False only when the line provably has no key twice in one object. Each key in the line brings a ':' of
    its own, and a ':' in a string is written as ':' or '\\u003a'. Without '\\u' escapes, the line has exactly
    as many ':' as the parsed value re-serialized (orjson escapes no ':') unless a key was repeated: then it
    has more, the repeat's own and any in the value that was dropped. With escapes, the line having no more ':'
    than the value has keys rules it out. A caller that knows a lower bound of the value's keys for free (the
    record checker's fast path counts them) rules most lines out with the first of these alone: `colons` no more
    than that bound (scan.scan_span)."""
    colons = raw.count(b":")
    if b"\\" not in raw or b"\\u" not in raw:  # one byte is a memchr; two bytes search several times slower
        try:
            return colons != orjson.dumps(value).count(b":")
        except TypeError:  # an integer past 64 bits (parsed by the stdlib)
            pass
    return colons > count_keys(value)


def count_keys(value: object) -> int:
    """The keys of every object in a parsed value."""
    if type(value) is dict:
        return len(value) + sum(count_keys(v) for v in value.values() if type(v) is dict or type(v) is list)
    if type(value) is list:
        return sum(count_keys(v) for v in value if type(v) is dict or type(v) is list)
    return 0


def repeated_keys(pairs: list[tuple[str, object]]) -> list[str]:
    """The keys of one object's (key, value) pairs that were given before, in order."""
    seen: set[str] = set()
    repeated = []
    for key, _ in pairs:
        if key in seen:
            repeated.append(key)
        seen.add(key)
    return repeated


def first_repeated_key(raw: bytes) -> str | None:
    """The first key found written twice in one object of the line (the exact, slower parse), or None."""
    found: list[str] = []

    def keep_last(pairs: list) -> dict:
        if not found:
            found.extend(repeated_keys(pairs))
        return dict(pairs)

    try:
        json.loads(raw, object_pairs_hook=keep_last)
    except (ValueError, RecursionError):
        return None
    return found[0] if found else None


__all__ = ["count_keys", "first_repeated_key", "may_repeat_a_key", "repeated_keys"]
