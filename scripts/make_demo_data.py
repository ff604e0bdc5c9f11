"""Generate the demo preference data in data/ (deterministic; the output is committed).

    .venv/bin/python scripts/make_demo_data.py [--out data] [--check]

- demo_dpo.jsonl: ShareGPT ranking records `{"conversations": [...], "chosen": {...}, "rejected": {...}}`.
  The prompt asks "What is a+b?"; chosen answers `a+b=<sum>`, rejected `a+b=<sum ± 1..3>`. A tiny model learns
  to prefer the right sum within a minute of CPU. Some records open with a system turn, some carry one earlier
  question-and-answer turn, so both shapes of LLaMA-Factory's sharegpt converter are exercised.
- demo_kto.jsonl: role/content `messages` with a boolean `label` (true: correct sum, false: wrong sum), half each.
- dataset_info.json: the `demo_dpo` and `demo_kto` entries.

`--check` regenerates in memory and exits 1 if the files in --out differ (a test runs it).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

SEED = 20240607
RECORDS = 256
MAX_TERM = 20  # sums up to 40: few enough distinct facts for a 137k-parameter model to pick up in minutes
SYSTEM_PROMPTS = ["You are a careful calculator.", "Answer with the sum only."]

DATASET_INFO = {
    "demo_dpo": {
        "file_name": "demo_dpo.jsonl",
        "formatting": "sharegpt",
        "ranking": True,
        "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"},
    },
    "demo_kto": {
        "file_name": "demo_kto.jsonl",
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "kto_tag": "label"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                 "assistant_tag": "assistant", "system_tag": "system"},
    },
}


def question(rng: random.Random) -> tuple[str, int, str]:
    a, b = rng.randint(0, MAX_TERM), rng.randint(0, MAX_TERM)
    return f"What is {a}+{b}?", a + b, f"{a}+{b}="


def wrong(rng: random.Random, total: int) -> int:
    """A near miss (never negative): the model must learn the sum, not spot an absurd answer."""
    return max(0, total + rng.choice([-3, -2, -1, 1, 2, 3])) if total > 3 else total + rng.randint(1, 3)


def prompt_turns(rng: random.Random, index: int) -> list[tuple[str, str]]:
    """(role, text) turns before the final question: a system turn on every 8th, an earlier Q&A on every 10th."""
    turns = []
    if index % 8 == 3:
        turns.append(("system", SYSTEM_PROMPTS[index % len(SYSTEM_PROMPTS)]))
    if index % 10 == 7:
        text, total, lead = question(rng)
        turns += [("user", text), ("assistant", f"{lead}{total}")]
    return turns


def dpo_record(rng: random.Random, index: int) -> dict:
    roles = {"system": "system", "user": "human", "assistant": "gpt"}
    turns = prompt_turns(rng, index)
    text, total, lead = question(rng)
    conversations = [{"from": roles[role], "value": value} for role, value in turns]
    conversations.append({"from": "human", "value": text})
    return {"conversations": conversations,
            "chosen": {"from": "gpt", "value": f"{lead}{total}"},
            "rejected": {"from": "gpt", "value": f"{lead}{wrong(rng, total)}"}}


def kto_record(rng: random.Random, index: int) -> dict:
    turns = prompt_turns(rng, index)
    text, total, lead = question(rng)
    label = index % 2 == 0
    answer = total if label else wrong(rng, total)
    messages = [{"role": role, "content": value} for role, value in turns]
    messages += [{"role": "user", "content": text}, {"role": "assistant", "content": f"{lead}{answer}"}]
    return {"messages": messages, "label": label}


def distinct(rng: random.Random, index: int, make, seen: set[str]) -> dict:
    """A record unlike every earlier one: duplicates would weigh some facts twice (`validate --stats` counts them)."""
    while True:
        record = make(rng, index)
        key = json.dumps(record, sort_keys=True)
        if key not in seen:
            seen.add(key)
            return record


def render() -> dict[str, str]:
    """File name -> exact file text."""
    rng = random.Random(SEED)
    seen_dpo: set[str] = set()
    dpo = [distinct(rng, i, dpo_record, seen_dpo) for i in range(RECORDS)]
    seen_kto: set[str] = set()
    kto = [distinct(rng, i, kto_record, seen_kto) for i in range(RECORDS)]
    jsonl = lambda rows: "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)  # noqa: E731
    return {"demo_dpo.jsonl": jsonl(dpo), "demo_kto.jsonl": jsonl(kto),
            "dataset_info.json": json.dumps(DATASET_INFO, indent=2) + "\n"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data")
    parser.add_argument("--check", action="store_true", help="exit 1 if the files differ from what would be made")
    args = parser.parse_args(argv)
    files = render()
    if args.check:
        stale = [name for name, text in files.items()
                 if not (args.out / name).is_file() or (args.out / name).read_text(encoding="utf-8") != text]
        for name in stale:
            print(f"{args.out / name}: out of date; run scripts/make_demo_data.py", file=sys.stderr)
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_text(text, encoding="utf-8")
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
