"""`dpo-launch validate --stats`: statistics with known answers, checked against LLaMA-Factory's own preprocessing.

The expected token lengths and truncations come from LF itself: a subprocess runs LF's `get_dataset` on the same
workspace twice, once with the config's cutoff_len and once with a cutoff no record reaches (which gives the
untruncated lengths), and the test derives what was cut from the two, independently of `infer_seqlen`.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from launcher.stats.measure import span_similarity
from launcher.stats.render import render_stats_text
from launcher.stats.summary import distribution, kto_balance, truncation

from support.cli import cli_env, probe, run_cli

FILLER = "The quick brown fox jumps over the lazy dog. "


def pair(prompt: str, chosen: str, rejected: str, system: str | None = None) -> dict:
    turns = ([{"from": "system", "value": system}] if system else []) + [{"from": "human", "value": prompt}]
    return {"conversations": turns, "chosen": {"from": "gpt", "value": chosen},
            "rejected": {"from": "gpt", "value": rejected}}


# Index: what the record is there for.
PAIRS = [
    pair("What is 1+2?", "1+2=3", "1+2=4"),                       # 0
    pair("What is 1+2?", "1+2=3", "1+2=4"),                       # 1 duplicate of 0
    pair("What is 1+2?", "1+2=4", "1+2=3"),                       # 2 contradicts 0
    pair("Say it twice.", "same answer", "same answer"),          # 3 identical
    pair("Greet.", "Hello  World", "hello world"),                # 4 near-identical (whitespace and case)
    pair(FILLER * 12, "7+5=12", "7+5=15"),                        # 5 long prompt: the prompt is cut
    pair("What is 3+4?", FILLER * 12, "3+4=8"),                   # 6 long response: the response is cut
    pair(FILLER * 8, FILLER * 9, "Numbers add up."),              # 7 both long: both are cut
    pair("What is 9+9?", "9+9=18", "9+9=19", system="Answer with the sum only."),  # 8
    pair("What is 2+2?", "2+2=4 because two and two make four", "2+2=5"),          # 9 chosen longer
]


def feedback(prompt: str, answer: str, label: bool) -> dict:
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
            "label": label}


KTO = [feedback(f"What is {a}+{a}?", f"{a}+{a}={2 * a}", True) for a in range(3)] + \
      [feedback(f"What is {a}+1?", f"{a}+1={a + 3}", False) for a in range(5)] + \
      [feedback("What is 0+0?", "0+0=0", False)]  # contradicts record 0: same prompt and answer, labelled bad

INFO = {
    "crafted": {"file_name": "crafted.jsonl", "formatting": "sharegpt", "ranking": True,
                "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}},
    "crafted_kto": {"file_name": "crafted_kto.jsonl", "formatting": "sharegpt",
                    "columns": {"messages": "messages", "kto_tag": "label"},
                    "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                             "assistant_tag": "assistant"}},
}


def write_workspace(root: Path, model: Path, stage: str = "dpo", **overrides) -> Path:
    (root / "data").mkdir(parents=True)
    (root / "data" / "dataset_info.json").write_text(json.dumps(INFO), encoding="utf-8")
    (root / "data" / "crafted.jsonl").write_text("".join(json.dumps(r) + "\n" for r in PAIRS), encoding="utf-8")
    (root / "data" / "crafted_kto.jsonl").write_text("".join(json.dumps(r) + "\n" for r in KTO), encoding="utf-8")
    config = {"model_name_or_path": str(model), "stage": stage, "do_train": True, "finetuning_type": "lora",
              "lora_target": "all", "dataset": "crafted" if stage == "dpo" else "crafted_kto", "dataset_dir": "data",
              "template": "default", "cutoff_len": 64, "output_dir": "out", "per_device_train_batch_size": 1,
              "report_to": "none", "overwrite_cache": True, **overrides}
    (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return root


def stats_json(root: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, dict]:
    done = run_cli("validate", "config.yaml", "--stats", "--format", "json", *args, cwd=root, env=cli_env(**env))
    return done, json.loads(done.stdout)


# LF's own preprocessing of the workspace: per record, (prompt tokens, chosen or response, rejected or kto tag)
# with the config's cutoff_len and with a cutoff no record reaches.
LF_REFERENCE = r"""
import json, sys
from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
from llamafactory.hparams import get_train_args
from llamafactory.model import load_tokenizer
import yaml
config = yaml.safe_load(open("config.yaml"))
stage = "rm" if config["stage"] == "dpo" else "kto"
out = {}
for cutoff in (config["cutoff_len"], 100000):
    model_args, data_args, training_args, _, _ = get_train_args(dict(config, cutoff_len=cutoff))
    module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(module["tokenizer"], data_args)
    rows = get_dataset(template, model_args, data_args, training_args, stage=stage, **module)["train_dataset"]
    if stage == "rm":
        out[cutoff] = [[r["chosen_labels"].count(-100), len(r["chosen_input_ids"]), len(r["rejected_input_ids"])]
                       for r in rows]
    else:
        out[cutoff] = [[r["labels"].count(-100), len(r["input_ids"]), r["kto_tags"]] for r in rows]
print(json.dumps(out))
"""


def lf_reference(root: Path) -> tuple[list, list]:
    """(untruncated, truncated) rows from LF's get_dataset: [prompt, prompt+chosen, prompt+rejected] (KTO:
    [prompt, prompt+response, tag])."""
    done = subprocess.run([sys.executable, "-c", LF_REFERENCE], cwd=root, capture_output=True, text=True,
                          env=cli_env(HF_DATASETS_CACHE=str(root / "hf-cache")), timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return out["100000"], out["64"]


@pytest.fixture(scope="module")
def dpo_run(tmp_path_factory, tiny_model_dir):
    root = write_workspace(tmp_path_factory.mktemp("dpo") / "ws", tiny_model_dir)
    done, report = stats_json(root)
    return root, done, report


@pytest.fixture(scope="module")
def kto_run(tmp_path_factory, tiny_model_dir):
    root = write_workspace(tmp_path_factory.mktemp("kto") / "ws", tiny_model_dir, stage="kto")
    done, report = stats_json(root)
    return root, done, report


@pytest.mark.subprocess
def test_pair_token_lengths_and_truncation_match_llamafactorys_own_preprocessing(dpo_run):
    root, done, report = dpo_run
    assert done.returncode == 0, done.stderr
    stats = report["stats"]["datasets"]["crafted"]
    full, cut = lf_reference(root)
    prompt = [p for p, _, _ in full]
    chosen, rejected = [c - p for p, c, _ in full], [r - p for p, _, r in full]
    assert stats["lengths"] == {
        "prompt": distribution(prompt), "chosen": distribution(chosen), "rejected": distribution(rejected),
        "total": distribution([p + max(c, r) for p, c, r in zip(prompt, chosen, rejected, strict=True)])}
    prompt_cut = [s < p for s, p in zip((row[0] for row in cut), prompt, strict=True)]
    longer = [max(c, r) for c, r in zip(chosen, rejected, strict=True)]
    response_cut = [max(c2, r2) - s < m for (s, c2, r2), m in zip(cut, longer, strict=True)]
    expected = {"prompt_only": sum(p and not r for p, r in zip(prompt_cut, response_cut, strict=True)),
                "response_only": sum(r and not p for p, r in zip(prompt_cut, response_cut, strict=True)),
                "both": sum(p and r for p, r in zip(prompt_cut, response_cut, strict=True))}
    assert all(expected.values()), f"the crafted data should exercise every kind of cut: {expected}"
    assert {k: stats["truncation"][k] for k in expected} == expected
    assert stats["truncation"]["truncated"] == sum(expected.values())
    pairs = list(zip(chosen, rejected, strict=True))
    assert stats["length_bias"]["chosen_longer"] == round(sum(c > r for c, r in pairs) / 10, 4)
    assert stats["length_bias"]["mean_ratio"] == round(sum(c / r for c, r in pairs) / 10, 4)


@pytest.mark.subprocess
def test_reasoning_template_lengths_match_llamafactory(tmp_path, tiny_model_dir):
    # qwen3 is a ReasoningTemplate: with enable_thinking (the default) LF inserts an empty <think> block into
    # every response, chosen and rejected alike; the statistics count it because they run LF's encode_oneturn.
    root = write_workspace(tmp_path / "ws", tiny_model_dir, template="qwen3")
    done, report = stats_json(root)
    assert done.returncode == 0, done.stderr
    stats = report["stats"]["datasets"]["crafted"]
    full, _ = lf_reference(root)
    assert stats["lengths"]["prompt"] == distribution([p for p, _, _ in full])
    assert stats["lengths"]["chosen"] == distribution([c - p for p, c, _ in full])
    assert stats["lengths"]["rejected"] == distribution([r - p for p, _, r in full])


@pytest.mark.slow
def test_duplicates_identical_pairs_and_contradictions_are_found(dpo_run):
    _, _, report = dpo_run
    stats = report["stats"]["datasets"]["crafted"]
    assert stats["pairs"] == 10 and stats["records"] == 10
    assert stats["duplicates"] == {"records": 1, "examples": [[0, 1]]}
    assert stats["contradictions"] == {"prompts": 1, "records": 2, "examples": [[0, 2]]}
    assert (stats["similarity"]["identical"], stats["similarity"]["identical_examples"]) == (1, [3])
    assert (stats["similarity"]["near_identical"], stats["similarity"]["near_identical_examples"]) == (1, [4])


@pytest.mark.slow
def test_histogram_goes_to_output_dir_and_nothing_is_written_next_to_the_data(dpo_run):
    root, _, report = dpo_run
    stats_dir = root / "out" / "dpo-launch" / "stats"
    histogram = Path(report["stats"]["datasets"]["crafted"]["histogram"])
    assert histogram == stats_dir / "crafted.lengths.png"
    assert histogram.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((stats_dir / "stats.json").read_text())["datasets"]["crafted"]["pairs"] == 10
    assert sorted(p.name for p in (root / "data").iterdir()) == ["crafted.jsonl", "crafted_kto.jsonl",
                                                                 "dataset_info.json"]


@pytest.mark.slow
def test_json_output_keeps_the_diagnostics_and_adds_stats(dpo_run):
    _, _, report = dpo_run
    assert report["ok"] is True
    assert [d["code"] for d in report["diagnostics"]].count("identical-pair") == 1
    assert report["stats"]["model"].endswith("tiny-llama") and report["stats"]["template"] == "default"
    assert report["stats"]["cutoff_len"] == 64


@pytest.mark.subprocess
def test_kto_balance_and_lengths_match_llamafactory(kto_run):
    root, done, report = kto_run
    assert done.returncode == 0, done.stderr
    stats = report["stats"]["datasets"]["crafted_kto"]
    full, _ = lf_reference(root)
    assert stats["balance"] == {"desirable": 3, "undesirable": 6, "chosen_weight": 1.0, "rejected_weight": 1.0,
                                "ratio": 0.5, "recommended": [1.0, 1.3333], "verdict": "low",
                                "suggested": {"kto_chosen_weight": 2.0, "kto_rejected_weight": 1.0}}
    assert [tag for _, _, tag in full] == [True] * 3 + [False] * 6
    assert stats["lengths"]["prompt"] == distribution([p for p, _, _ in full])
    assert stats["lengths"]["desirable"] == distribution([n - p for p, n, tag in full if tag])
    assert stats["contradictions"] == {"prompts": 1, "records": 2, "examples": [[0, 8]]}


@pytest.mark.subprocess
def test_kto_weights_from_the_config_enter_the_ratio(tmp_path, tiny_model_dir):
    root = write_workspace(tmp_path / "ws", tiny_model_dir, stage="kto", kto_chosen_weight=2.0)
    done, report = stats_json(root, "--stats-dir", "my stats")
    assert done.returncode == 0, done.stderr
    balance = report["stats"]["datasets"]["crafted_kto"]["balance"]
    assert (balance["ratio"], balance["verdict"], balance["suggested"]) == (1.0, "ok", None)
    assert (root / "my stats" / "crafted_kto.lengths.png").is_file()


@pytest.mark.subprocess
def test_text_section_follows_the_diagnostics(dpo_run, tiny_model_dir):
    root, _, _ = dpo_run
    done = run_cli("validate", "config.yaml", "--stats", cwd=root)
    assert done.returncode == 0, done.stderr
    head, section = done.stdout.split("\n\nData statistics", 1)
    assert head.splitlines()[-1].startswith("✓ 0 errors, ")
    assert "Data statistics" + section == (
        f"Data statistics (tokenizer of {tiny_model_dir}, template default, cutoff_len 64; record indexes are "
        "0-based)\n"
        "crafted: 10 pairs measured of 10 records in data/crafted.jsonl\n"
        "  tokens               p50     p90     p99     max    mean\n"
        "  prompt                13      87     127     127    33.1\n"
        "  chosen                 7      94     124     124    30.5\n"
        "  rejected               7       7      11      11     7.3\n"
        "  prompt+longer         27     136     181     181    63.6\n"
        "  truncated by cutoff_len 64: 3 of 10 pairs (30.0%): prompt only 1, response only 1, both 1; a cut prompt "
        "loses its end, the latest user turn first\n"
        "  length bias: chosen longer in 40.0% of pairs, shorter in 0.0%, equal in 60.0%; mean chosen/rejected "
        "length ratio 4.51\n"
        "  identical pairs: 1 (record 3); near-identical: 1 (record 4)\n"
        "  duplicate records: 1 (record 1 repeats 0); contradicting preferences: 1 prompt in 2 records (0 vs 2)\n"
        "  histogram: out/dpo-launch/stats/crafted.lengths.png\n")


@pytest.mark.subprocess
def test_the_fast_tokenizer_path_gives_the_same_statistics_as_llamafactorys_tokenizer_calls(tmp_path,
                                                                                              tiny_model_dir):
    root = write_workspace(tmp_path / "ws", tiny_model_dir)
    fast = stats_json(root)[1]["stats"]["datasets"]["crafted"]
    assert fast["tokenizer_mode"] == "pieces"
    two = stats_json(root, DPO_LAUNCH_STATS_PROCESSES="2")[1]["stats"]["datasets"]["crafted"]
    volatile = ("seconds", "processes")
    assert {k: v for k, v in two.items() if k not in volatile} == {k: v for k, v in fast.items() if k not in volatile}


WORD_CACHE_PROBE = r"""
import json, sys
from transformers import AutoTokenizer
from launcher.stats.tokens import piece_encoder
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
encode = piece_encoder(tokenizer._tokenizer)
texts = ["Human: What is 1+2?", "  two  spaces\n\nnewlines\ttab ", "émigré naïve 東京 🙂 emoji", "12345 67.8e9",
         "it's they'll we've I'd", "<|im_start|>user\nhi<|im_end|>\n", "a<|endoftext|>b<|endoftext|>", "",
         "   ", "x" * 300, "The quick brown fox jumps over the lazy dog. " * 5, "trailing space ", "a\x1cb\x1f c",
         "a\u00a0b\u2028c\u3000d  e", "x²y Ⅻ ٣"]
print(json.dumps([encode(t) == tokenizer.encode(t, add_special_tokens=False) for t in texts]))
"""


@pytest.mark.subprocess
def test_word_cache_tokenizer_gives_the_tokenizers_own_ids(tiny_model_dir):
    done = subprocess.run([sys.executable, "-c", WORD_CACHE_PROBE, str(tiny_model_dir)], capture_output=True,
                          text=True, env=cli_env(), timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [True] * 15


@pytest.mark.subprocess
def test_a_tokenizer_that_cannot_load_is_an_error_at_model_name_or_path(tmp_path, tiny_model_dir):
    root = write_workspace(tmp_path / "ws", tiny_model_dir)
    broken = root / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    (broken / "tokenizer_config.json").write_text("{not json")
    config = yaml.safe_load((root / "config.yaml").read_text())
    (root / "config.yaml").write_text(yaml.safe_dump(dict(config, model_name_or_path="broken-model"), sort_keys=False))
    done, report = stats_json(root)
    assert done.returncode == 1, done.stderr
    errors = [d for d in report["diagnostics"] if d["severity"] == "error"]
    assert [(d["code"], d["path"], d["line"]) for d in errors] == [("stats-tokenizer", "model_name_or_path", 1)]
    assert errors[0]["message"].startswith("cannot load the tokenizer of 'broken-model': ")
    assert report["stats"] is None


@pytest.mark.subprocess
def test_stats_are_skipped_when_validation_finds_errors(tmp_path, tiny_model_dir):
    root = write_workspace(tmp_path / "ws", tiny_model_dir, pref_loss="sigmod")
    done, report = stats_json(root)
    assert done.returncode == 1
    assert report["stats"] is None
    assert report["diagnostics"][-1]["code"] == "stats-skipped"
    assert not (root / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--stats-dir", "x"], "dpo-launch: error: --stats-dir is only used with --stats\n"),
    (["--stats", "--no-data"],
     "dpo-launch: error: --stats measures the records: it cannot be combined with --no-data\n"),
])
@pytest.mark.subprocess
def test_stats_flags_misused_are_usage_errors(tmp_path, tiny_model_dir, args, message):
    root = write_workspace(tmp_path / "ws", tiny_model_dir)
    done = run_cli("validate", "config.yaml", *args, cwd=root)
    assert (done.returncode, done.stderr) == (2, message)


@pytest.mark.subprocess
def test_the_cli_process_never_imports_the_training_stack_with_stats(tmp_path, tiny_model_dir):
    root = write_workspace(tmp_path / "ws", tiny_model_dir)
    result = probe(["validate", "config.yaml", "--stats"], root, tmp_path / "report.json")
    assert result == {"exit": 0, "heavy": []}
    assert (root / "out" / "dpo-launch" / "stats" / "crafted.lengths.png").is_file()  # the worker did run


# ---------------------------------------------------------------- pure functions

def test_percentiles_are_nearest_rank():
    assert distribution(list(range(1, 101))) == {"p50": 50, "p90": 90, "p99": 99, "max": 100, "mean": 50.5}
    assert distribution([7]) == {"p50": 7, "p90": 7, "p99": 7, "max": 7, "mean": 7.0}


def test_truncation_counts_each_kind_of_cut():
    # prompt, longer response, and what infer_seqlen(prompt, response, 10) keeps of them
    rows = [(3, 4, 3, 4), (20, 2, 8, 2), (3, 20, 3, 7), (12, 12, 5, 5), (0, 30, 0, 10)]
    p, r, s, t = (list(column) for column in zip(*rows, strict=True))
    assert truncation(p, r, s, t, 10) == {"cutoff_len": 10, "truncated": 4, "prompt_only": 1, "response_only": 2,
                                          "both": 1, "prompt_removed": 0}


def test_kto_balance_follows_the_papers_range():
    assert kto_balance(100, 100, 1.0, 1.0)["verdict"] == "ok"
    assert kto_balance(130, 100, 1.0, 1.0)["verdict"] == "ok"
    assert kto_balance(140, 100, 1.0, 1.0)["suggested"] == {"kto_chosen_weight": 1.0, "kto_rejected_weight": 1.4}
    assert kto_balance(0, 100, 1.0, 1.0)["verdict"] == "one-class"


def test_span_similarity_is_one_minus_the_differing_span():
    assert span_similarity([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [1, 2, 3, 4, 0, 6, 7, 8, 9, 10]) == 0.9
    assert span_similarity([1, 2, 3], [4, 5, 6]) == 0.0
    assert span_similarity([1, 1, 1], [1, 1, 1, 1]) == 0.75


def test_kto_text_section_reads_as_a_sentence():
    data = {"kind": "kto", "examples": 9, "records": 9, "dropped": 0, "unreadable": 0, "files": ["data/k.jsonl"],
            "lengths": {k: {"p50": 5, "p90": 6, "p99": 7, "max": 7, "mean": 5.5}
                        for k in ("prompt", "desirable", "undesirable", "total")},
            "truncation": {"cutoff_len": 64, "truncated": 0, "prompt_only": 0, "response_only": 0, "both": 0,
                           "prompt_removed": 0},
            "balance": kto_balance(3, 6, 1.0, 1.0),
            "length_bias": {"mean_desirable": 6.0, "mean_undesirable": 6.5, "ratio": 0.9231},
            "duplicates": {"records": 0, "examples": []},
            "contradictions": {"prompts": 0, "records": 0, "examples": []},
            "with_media": 0, "num_samples_ignored": None, "histogram": "out/k.lengths.png"}
    stream = io.StringIO()
    render_stats_text({"model": "m", "template": "default", "cutoff_len": 64, "datasets": {"k": data}}, stream)
    assert stream.getvalue() == (
        "\nData statistics (tokenizer of m, template default, cutoff_len 64; record indexes are 0-based)\n"
        "k: 9 examples measured of 9 records in data/k.jsonl\n"
        "  tokens               p50     p90     p99     max    mean\n"
        "  prompt                 5       6       7       7     5.5\n"
        "  desirable              5       6       7       7     5.5\n"
        "  undesirable            5       6       7       7     5.5\n"
        "  prompt+response        5       6       7       7     5.5\n"
        "  truncated by cutoff_len 64: none of 9 examples\n"
        "  balance: 3 desirable, 6 undesirable; kto_chosen_weight*n_D / (kto_rejected_weight*n_U) = 1*3 / (1*6) = "
        "0.50, below the KTO paper's 1 to 4/3 (set kto_chosen_weight: 2, kto_rejected_weight: 1)\n"
        "  length: desirable responses average 6.0 tokens, undesirable 6.5 (ratio 0.92)\n"
        "  duplicate records: 0; contradicting labels: 0 prompts\n"
        "  histogram: out/k.lengths.png\n")


@pytest.mark.subprocess
def test_eval_datasets_are_measured_too_and_labelled(tmp_path, tiny_model_dir):
    root = write_workspace(tmp_path / "ws", tiny_model_dir, eval_dataset="crafted_eval,crafted", do_eval=True,
                           eval_strategy="steps", eval_steps=10)
    info = {**INFO, "crafted_eval": {**INFO["crafted"], "file_name": "crafted_eval.jsonl"}}
    (root / "data" / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    (root / "data" / "crafted_eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in PAIRS[:4]),
                                                      encoding="utf-8")
    done, report = stats_json(root)
    assert done.returncode == 0, done.stderr[-3000:]
    datasets = report["stats"]["datasets"]
    assert {name: (d["used_for"], d["pairs"]) for name, d in datasets.items()} == {
        "crafted": (["train", "eval"], len(PAIRS)), "crafted_eval": (["eval"], 4)}
    text = run_cli("validate", "config.yaml", "--stats", cwd=root, env=cli_env()).stdout
    assert "\ncrafted_eval (eval_dataset): 4 pairs measured of 4 records in data/crafted_eval.jsonl\n" in text
    assert "\ncrafted: 10 pairs measured of 10 records in data/crafted.jsonl\n" in text
