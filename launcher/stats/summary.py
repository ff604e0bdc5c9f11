"""Turn per-record measurements (launcher.stats.measure columns) into the statistics `validate --stats` reports.

Pure Python, no heavy imports: the worker calls it, and the tests call it on hand-made columns.
Definitions (also in the docs of `validate --stats`):
- percentiles are nearest-rank: p-th = the smallest length with at least p% of the values at or below it;
- a pair is truncated when LF's `infer_seqlen(prompt, max(chosen, rejected), cutoff_len)` shortens either side;
- identical: chosen content == rejected content; near-identical: not identical, and equal after collapsing
  whitespace and case, or the templated response tokens differ only in one contiguous span of at most 10% of
  the longer one (`measure.span_similarity` >= 0.9);
- duplicate: same system, tools, prompt turns, chosen and rejected (KTO: prompt, response, label) as an earlier record;
- contradiction: the same prompt with A preferred to B in one record and B to A in another (KTO: the same
  prompt and response labelled desirable in one record and undesirable in another).
"""

from __future__ import annotations

import math

PERCENTILES = (50, 90, 99)
EXAMPLES = 5
# KTO paper (Ethayarajh et al. 2024, §4.2): weight the classes so that λ_D·n_D / (λ_U·n_U) is in [1, 4/3].
KTO_RATIO_RANGE = (1.0, 4 / 3)


def distribution(values: list[int]) -> dict:
    """p50/p90/p99/max/mean of token lengths (nearest-rank percentiles); None values when empty."""
    if not values:
        return {**{f"p{p}": None for p in PERCENTILES}, "max": None, "mean": None}
    ordered = sorted(values)
    out = {f"p{p}": ordered[max(math.ceil(p / 100 * len(ordered)) - 1, 0)] for p in PERCENTILES}
    out["max"] = ordered[-1]
    out["mean"] = round(sum(ordered) / len(ordered), 2)
    return out


def share(count: int, total: int) -> float | None:
    return round(count / total, 4) if total else None


def truncation(prompt: list[int], response: list[int], source: list[int], target: list[int], cutoff_len: int) -> dict:
    """How LF's `infer_seqlen` cuts each record: the prompt (it loses its end), the response(s), or both."""
    prompt_cut = response_cut = both = removed = 0
    for p, r, s, t in zip(prompt, response, source, target, strict=True):
        cut_p, cut_r = s < p, t < r
        prompt_cut += cut_p and not cut_r
        response_cut += cut_r and not cut_p
        both += cut_p and cut_r
        removed += s == 0 < p
    return {"cutoff_len": cutoff_len, "truncated": prompt_cut + response_cut + both, "prompt_only": prompt_cut,
            "response_only": response_cut, "both": both, "prompt_removed": removed}


def examples(indexes) -> list:
    return list(indexes)[:EXAMPLES]


def pairwise_summary(c: dict, cutoff_len: int) -> dict:
    """Statistics of pairwise (DPO/ORPO/SimPO) columns; see the module docstring for the definitions."""
    n = len(c["index"])
    longest = [max(a, b) for a, b in zip(c["chosen"], c["rejected"], strict=True)]
    cut = truncation(c["prompt"], longest, c["source"], c["target"], cutoff_len)
    cut["identical_after_cut"] = sum(c["same_after_cut"])
    cut["identical_after_cut_examples"] = examples(i for i, s in zip(c["index"], c["same_after_cut"], strict=True) if s)
    return {
        "kind": "pairwise",
        "pairs": n,
        "lengths": {"prompt": distribution(c["prompt"]), "chosen": distribution(c["chosen"]),
                    "rejected": distribution(c["rejected"]),
                    "total": distribution([p + m for p, m in zip(c["prompt"], longest, strict=True)])},
        "truncation": cut,
        "length_bias": length_bias(c["chosen"], c["rejected"]),
        "similarity": similarity(c),
        "duplicates": duplicates(c["index"], zip(c["prompt_key"], c["chosen_key"], c["rejected_key"], strict=True)),
        "contradictions": pair_contradictions(c),
    }


def length_bias(chosen: list[int], rejected: list[int]) -> dict:
    n = len(chosen)
    longer = sum(a > b for a, b in zip(chosen, rejected, strict=True))
    shorter = sum(a < b for a, b in zip(chosen, rejected, strict=True))
    ratios = [a / b for a, b in zip(chosen, rejected, strict=True) if b]
    return {"chosen_longer": share(longer, n), "chosen_shorter": share(shorter, n),
            "equal": share(n - longer - shorter, n),
            "mean_ratio": round(sum(ratios) / len(ratios), 4) if ratios else None}


def similarity(c: dict) -> dict:
    return {"identical": sum(c["identical"]), "identical_examples": examples(
                i for i, s in zip(c["index"], c["identical"], strict=True) if s),
            "near_identical": sum(c["near"]), "near_identical_examples": examples(
                i for i, s in zip(c["index"], c["near"], strict=True) if s)}


def duplicates(indexes: list[int], keys) -> dict:
    """Records equal (as LF sees them) to an earlier record; examples are [earlier, later] index pairs."""
    first: dict = {}
    found = []
    for index, record_key in zip(indexes, keys, strict=True):
        if record_key in first:
            found.append([first[record_key], index])
        else:
            first[record_key] = index
    return {"records": len(found), "examples": found[:EXAMPLES]}


def pair_contradictions(c: dict) -> dict:
    """Prompts preferring A to B in one record and B to A in another."""
    first = {}
    for index, p, a, b in zip(c["index"], c["prompt_key"], c["chosen_key"], c["rejected_key"], strict=True):
        first.setdefault((p, a, b), index)
    return _contradictions(first, lambda k: (k[0], k[2], k[1]))


def _contradictions(first: dict, opposite) -> dict:
    prompts, records, found = set(), set(), []
    for record_key, index in first.items():
        other = first.get(opposite(record_key))
        if other is not None and other > index:  # each contradicting couple once, from its earlier record
            prompts.add(record_key[0])
            records.update((index, other))
            found.append([index, other])
    found.sort()
    return {"prompts": len(prompts), "records": len(records), "examples": found[:EXAMPLES]}


def kto_summary(c: dict, cutoff_len: int, chosen_weight: float, rejected_weight: float) -> dict:
    """Statistics of KTO columns, with the class balance the KTO paper recommends."""
    desirable = [r for r, d in zip(c["response"], c["desirable"], strict=True) if d]
    undesirable = [r for r, d in zip(c["response"], c["desirable"], strict=True) if not d]
    mean_d = sum(desirable) / len(desirable) if desirable else None
    mean_u = sum(undesirable) / len(undesirable) if undesirable else None
    first: dict = {}
    for index, p, r, d in zip(c["index"], c["prompt_key"], c["response_key"], c["desirable"], strict=True):
        first.setdefault((p, r, d), index)
    return {
        "kind": "kto",
        "examples": len(c["index"]),
        "lengths": {"prompt": distribution(c["prompt"]), "desirable": distribution(desirable),
                    "undesirable": distribution(undesirable),
                    "total": distribution([p + r for p, r in zip(c["prompt"], c["response"], strict=True)])},
        "truncation": truncation(c["prompt"], c["response"], c["source"], c["target"], cutoff_len),
        "length_bias": {"mean_desirable": _round(mean_d), "mean_undesirable": _round(mean_u),
                        "ratio": _round(mean_d / mean_u) if mean_d and mean_u else None},
        "balance": kto_balance(len(desirable), len(undesirable), chosen_weight, rejected_weight),
        "duplicates": duplicates(c["index"], zip(c["prompt_key"], c["response_key"], c["desirable"], strict=True)),
        "contradictions": _contradictions(first, lambda k: (k[0], k[1], not k[2])),
    }


def kto_balance(n_desirable: int, n_undesirable: int, chosen_weight: float, rejected_weight: float) -> dict:
    """kto_chosen_weight·n_D / (kto_rejected_weight·n_U) against the KTO paper's 1 to 4/3."""
    low, high = KTO_RATIO_RANGE
    denominator = rejected_weight * n_undesirable
    ratio = chosen_weight * n_desirable / denominator if denominator else None
    if not n_desirable or not n_undesirable:
        verdict = "one-class"
    elif ratio < low - 1e-9:
        verdict = "low"
    elif ratio > high + 1e-9:
        verdict = "high"
    else:
        verdict = "ok"
    return {"desirable": n_desirable, "undesirable": n_undesirable, "chosen_weight": chosen_weight,
            "rejected_weight": rejected_weight, "ratio": _round(ratio), "recommended": [low, round(high, 4)],
            "verdict": verdict, "suggested": suggested_weights(n_desirable, n_undesirable, verdict)}


def suggested_weights(n_desirable: int, n_undesirable: int, verdict: str) -> dict | None:
    """Weights that bring the ratio to 1 (or 4/3 when desirable examples are scarce), keeping one weight at 1."""
    if verdict in ("ok", "one-class"):
        return None
    if n_desirable < n_undesirable:  # up-weight the scarce desirable class (the paper's own advice)
        return {"kto_chosen_weight": _round(n_undesirable / n_desirable), "kto_rejected_weight": 1.0}
    return {"kto_chosen_weight": 1.0, "kto_rejected_weight": _round(n_desirable / n_undesirable)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
