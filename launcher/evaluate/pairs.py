"""`dpo-launch pairs`: preference pairs from candidates (the output of `generate`), judged.

Per prompt, the distinct non-empty responses are ranked: by score with a pointwise judge (the reward model),
by wins over the other candidates with a pairwise judge (every two candidates compared, in both orders; a tie
is half a win). The best becomes `chosen`, the worst `rejected`; a prompt whose candidates all rank alike
(equal scores, all ties, invalid answers) gives no pair and is counted. Rows are LLaMA-Factory ShareGPT ranking
data (system prompt first, history kept, the prompt ending on the user's turn), the format `convert` writes.
`OUT.audit.jsonl` keeps, per prompt, the judge, scores or verdicts, and which candidates were picked.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from launcher.atomic import atomic_write
from launcher.evaluate.judging import TIE, A, B, Item, Judge

ROLE_TAGS = {"user": "human", "assistant": "gpt", "function": "function_call", "observation": "observation"}


@dataclass
class PairsResult:
    rows: list[dict] = field(default_factory=list)
    audit: list[dict] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)


def distinct_responses(record: dict) -> list[int]:
    """Indexes of the first occurrence of each distinct non-empty response."""
    seen, keep = set(), []
    for index, text in enumerate(record["responses"]):
        if isinstance(text, str) and text.strip() and text not in seen:
            seen.add(text)
            keep.append(index)
    return keep


def rank_pointwise(judge, records: list[dict]) -> dict[str, dict]:
    """id -> {"scores": {index: score}} from one scoring pass over every candidate."""
    entries = [{"key": f"{r['id']}\t{i}", "messages": r["messages"], "system": r.get("system"),
                "response": r["responses"][i]} for r in records for i in distinct_responses(r)]
    scores = judge.score(entries)
    ranked: dict[str, dict] = {str(r["id"]): {"scores": {}} for r in records}
    for key, value in scores.items():
        ident, index = key.rsplit("\t", 1)
        ranked[ident]["scores"][int(index)] = value
    return ranked


def rank_pairwise(judge: Judge, records: list[dict]) -> dict[str, dict]:
    """id -> {"scores": {index: wins}, "verdicts": [...]} from comparing every two candidates."""
    items = []
    for record in records:
        keep = distinct_responses(record)
        items += [Item(f"{record['id']}:{i}-{j}", record["messages"], record.get("system"),
                       record["responses"][i], record["responses"][j])
                  for n, i in enumerate(keep) for j in keep[n + 1:]]
    ranked: dict[str, dict] = {str(r["id"]): {"scores": {i: 0.0 for i in distinct_responses(r)}, "verdicts": []}
                               for r in records}
    for verdict in judge.compare(items):
        ident, _, pair = verdict.key.rpartition(":")
        i, j = (int(x) for x in pair.split("-"))
        entry = ranked[ident]
        entry["verdicts"].append({"a": i, "b": j, **verdict.to_dict()})
        points = {A: (1.0, 0.0), B: (0.0, 1.0), TIE: (0.5, 0.5)}.get(verdict.winner)
        if points is not None:
            entry["scores"][i] += points[0]
            entry["scores"][j] += points[1]
    return ranked


def build_pairs(records: list[dict], judge: Judge) -> PairsResult:
    ranked = rank_pointwise(judge, records) if judge.pointwise else rank_pairwise(judge, records)
    result = PairsResult()
    for record in records:
        entry = ranked[str(record["id"])]
        scores = entry["scores"]
        audit = {"id": record["id"], "judge": judge.name, "candidates": len(record["responses"]),
                 "scores": {str(k): v for k, v in scores.items()}, "verdicts": entry.get("verdicts")}
        status = _pick(record, scores, audit, result)
        result.counts[status] += 1
        result.audit.append({**audit, "status": status})
    return result


def _pick(record: dict, scores: dict[int, float], audit: dict, result: PairsResult) -> str:
    if len(scores) < 2:
        return "fewer than 2 distinct responses"
    best = max(scores, key=lambda i: (scores[i], -i))
    worst = min(scores, key=lambda i: (scores[i], i))
    if scores[best] == scores[worst]:
        return "no preference (equal scores, ties or invalid verdicts)"
    audit.update(chosen=best, rejected=worst)
    result.rows.append(ranking_row(record, record["responses"][best], record["responses"][worst]))
    return "pair"


def ranking_row(record: dict, chosen: str, rejected: str) -> dict:
    turns = [{"from": "system", "value": record["system"]}] if record.get("system") else []
    turns += [{"from": ROLE_TAGS.get(m["role"], m["role"]), "value": m["content"]} for m in record["messages"]]
    return {"conversations": turns, "chosen": {"from": "gpt", "value": chosen},
            "rejected": {"from": "gpt", "value": rejected}}


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with atomic_write(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def audit_path(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".jsonl") + ".audit.jsonl")
