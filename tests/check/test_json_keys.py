"""launcher.check.data.json_keys: the cheap test never clears a line that repeats a key (checked on random lines written
with repeated keys, odd spacing, colons in strings and \\u escapes of ':'), and the exact parse names it."""

from __future__ import annotations

import json
import random

import orjson
import pytest

from launcher.check.data.json_keys import count_keys, first_repeated_key, may_repeat_a_key

KEYS = ["a", "b", "from", "value", "k:ey", "c"]
TEXTS = ["x", "a:b", "10:30", "", "é", '"q": r', "\\", "end:"]


def write_string(rng: random.Random, text: str) -> str:
    """A JSON string for `text`, some characters (':' among them) written as \\u escapes."""
    out = []
    for char in json.dumps(text, ensure_ascii=False)[1:-1]:
        if char in ":é" and rng.random() < 0.3:
            out.append(f"\\u{ord(char):04{rng.choice('xX')}}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def write_value(rng: random.Random, depth: int, repeats: list) -> str:
    """Random JSON text; `repeats` collects each object that got a key twice."""
    roll = rng.random()
    if depth < 3 and roll < 0.35:
        keys = rng.sample(KEYS, rng.randint(0, 4))
        if keys and rng.random() < 0.15:
            keys.insert(rng.randint(0, len(keys)), rng.choice(keys))
            repeats.append(keys)
        space = rng.choice(["", " ", "  "])
        items = [f"{write_string(rng, k)}{space}:{rng.choice(['', ' '])}{write_value(rng, depth + 1, repeats)}"
                 for k in keys]
        return "{" + f",{space}".join(items) + "}"
    if depth < 3 and roll < 0.55:
        return "[" + ", ".join(write_value(rng, depth + 1, repeats) for _ in range(rng.randint(0, 3))) + "]"
    if roll < 0.85:
        return write_string(rng, rng.choice(TEXTS))
    return rng.choice(["1", "2.5", "true", "null", "12345678901234567890123"])  # the last: past orjson's 64 bits


@pytest.mark.parametrize("seed", range(4))
def test_no_line_that_repeats_a_key_is_cleared_and_the_exact_parse_finds_it(seed):
    rng = random.Random(seed)
    repeated_lines = 0
    for _ in range(3000):
        repeats: list = []
        raw = write_value(rng, 0, repeats).encode("utf-8")
        value = json.loads(raw)
        if repeats:
            repeated_lines += 1
            assert may_repeat_a_key(raw, value), raw
            assert first_repeated_key(raw) is not None, raw
        else:
            assert first_repeated_key(raw) is None, raw
    assert repeated_lines > 100  # the generator did make such lines


def test_a_clean_line_without_escapes_is_cleared_without_the_exact_parse():
    raw = json.dumps({"conversations": [{"from": "human", "value": "Time: 10:30"}], "chosen": "a: b"}).encode()
    assert not may_repeat_a_key(raw, orjson.loads(raw))


def test_count_keys_counts_every_objects_keys():
    assert count_keys({"a": [{"b": 1, "c": {"d": 2}}, 3], "e": {}}) == 5
