"""The text section `validate --stats` prints after the diagnostics (the JSON form is the worker's dict as is)."""

from __future__ import annotations

import os
from typing import TextIO

LENGTH_BIAS_WARN = 0.6  # chosen longer in more than this share of pairs: DPO will learn "longer is better"


def render_stats_text(stats: dict, stream: TextIO) -> None:
    stream.write(f"\nData statistics (tokenizer of {stats['model']}, template {stats['template']}, "
                 f"cutoff_len {stats['cutoff_len']}; record indexes are 0-based)\n")
    for name, data in stats["datasets"].items():
        lines = kto_lines(data) if data["kind"] == "kto" else pairwise_lines(data)
        stream.write("\n".join([heading(name, data)] + ["  " + line for line in lines]) + "\n")


def heading(name: str, data: dict) -> str:
    unit = "examples" if data["kind"] == "kto" else "pairs"
    measured = data["examples"] if data["kind"] == "kto" else data["pairs"]
    skipped = [f"{data[k]} {what}" for k, what in (("dropped", "dropped by LLaMA-Factory"),
                                                   ("unreadable", "unreadable")) if data[k]]
    extra = f"; {', '.join(skipped)}" if skipped else ""
    use = " (eval_dataset)" if data.get("used_for") == ["eval"] else ""
    return (f"{name}{use}: {measured} {unit} measured of {data['records']} records in {', '.join(data['files'])}"
            f"{extra}")


def length_table(lengths: dict, labels: dict) -> list[str]:
    rows = [_row("tokens", ("p50", "p90", "p99", "max", "mean"))]
    for key, label in labels.items():
        d = lengths[key]
        rows.append(_row(label, ("-" if d[k] is None else str(d[k]) for k in ("p50", "p90", "p99", "max", "mean"))))
    return rows


def _row(label: str, cells) -> str:
    return f"{label:<16}" + "".join(f"{c:>8}" for c in cells)


def truncation_line(cut: dict, total: int, unit: str) -> str:
    head = f"truncated by cutoff_len {cut['cutoff_len']}: "
    if not cut["truncated"]:
        return head + f"none of {total} {unit}"
    parts = [f"prompt only {cut['prompt_only']}", f"response only {cut['response_only']}", f"both {cut['both']}"]
    text = head + f"{cut['truncated']} of {total} {unit} ({percent(cut['truncated'] / total)}): " + ", ".join(parts)
    text += "; a cut prompt loses its end, the latest user turn first"
    if cut["prompt_removed"]:
        text += f"; {cut['prompt_removed']} lose the whole prompt"
    if cut.get("identical_after_cut"):
        text += (f"; {cut['identical_after_cut']} become identical pairs after the cut "
                 f"({records(cut['identical_after_cut_examples'])})")
    return text


def pairwise_lines(data: dict) -> list[str]:
    lines = length_table(data["lengths"], {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected",
                                           "total": "prompt+longer"})
    lines.append(truncation_line(data["truncation"], data["pairs"], "pairs"))
    bias = data["length_bias"]
    if bias["chosen_longer"] is not None:
        text = (f"length bias: chosen longer in {percent(bias['chosen_longer'])} of pairs, shorter in "
                f"{percent(bias['chosen_shorter'])}, equal in {percent(bias['equal'])}; mean chosen/rejected "
                f"length ratio {bias['mean_ratio']:.2f}")
        if bias["chosen_longer"] > LENGTH_BIAS_WARN:
            text += " (DPO is known to learn length: consider length-matched pairs)"
        lines.append(text)
    sim = data["similarity"]
    lines.append(f"identical pairs: {counted(sim['identical'], sim['identical_examples'])}; near-identical: "
                 f"{counted(sim['near_identical'], sim['near_identical_examples'])}")
    lines += common_lines(data, "contradicting preferences")
    return lines


def kto_lines(data: dict) -> list[str]:
    lines = length_table(data["lengths"], {"prompt": "prompt", "desirable": "desirable",
                                           "undesirable": "undesirable", "total": "prompt+response"})
    lines.append(truncation_line(data["truncation"], data["examples"], "examples"))
    lines.append(balance_line(data["balance"]))
    bias = data["length_bias"]
    if bias["ratio"] is not None:
        lines.append(f"length: desirable responses average {bias['mean_desirable']:.1f} tokens, undesirable "
                     f"{bias['mean_undesirable']:.1f} (ratio {bias['ratio']:.2f})")
    lines += common_lines(data, "contradicting labels")
    return lines


def balance_line(b: dict) -> str:
    text = f"balance: {b['desirable']} desirable, {b['undesirable']} undesirable"
    if b["ratio"] is None or b["verdict"] == "one-class":
        return text + ("; only one class: KTO needs both (LLaMA-Factory warns 'Your dataset only has one preference "
                       "type')")
    text += (f"; kto_chosen_weight*n_D / (kto_rejected_weight*n_U) = {b['chosen_weight']:g}*{b['desirable']} / "
             f"({b['rejected_weight']:g}*{b['undesirable']}) = {b['ratio']:.2f}")
    if b["verdict"] == "ok":
        return text + ", within the KTO paper's 1 to 4/3"
    side = "below" if b["verdict"] == "low" else "above"
    fix = ", ".join(f"{k}: {v:g}" for k, v in b["suggested"].items())
    return text + f", {side} the KTO paper's 1 to 4/3 (set {fix})"


def common_lines(data: dict, contradiction_label: str) -> list[str]:
    dup, con = data["duplicates"], data["contradictions"]
    dup_examples = ", ".join(f"record {later} repeats {first}" for first, later in dup["examples"])
    con_examples = ", ".join(f"{a} vs {b}" for a, b in con["examples"])
    lines = [f"duplicate records: {dup['records']}" + (f" ({dup_examples}{more(dup)})" if dup["records"] else "")
             + f"; {contradiction_label}: {plural(con['prompts'], 'prompt')}"
             + (f" in {con['records']} records ({con_examples}{more(con, 'prompts')})" if con["prompts"] else "")]
    if data.get("with_media"):
        lines.append(f"{data['with_media']} records have images/videos/audios: their media tokens are not counted "
                     "(the placeholders are, as text)")
    if data.get("num_samples_ignored"):
        lines.append(f"num_samples {data['num_samples_ignored']} is ignored: these are the file's records")
    if data.get("histogram"):
        lines.append(f"histogram: {shown_path(data['histogram'])}")
    return lines


def counted(count: int, example_indexes: list[int]) -> str:
    return f"{count} ({records(example_indexes)}{', ...' if count > len(example_indexes) else ''})" if count else "0"


def records(indexes: list[int]) -> str:
    return ("record " if len(indexes) == 1 else "records ") + ", ".join(map(str, indexes))


def more(group: dict, key: str = "records") -> str:
    return ", ..." if group[key] > len(group["examples"]) else ""


def shown_path(path: str) -> str:
    """Relative to the launch directory when under it (as the user wrote output_dir), else as is."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' * (count != 1)}"


def percent(value: float) -> str:
    return f"{100 * value:.1f}%"
