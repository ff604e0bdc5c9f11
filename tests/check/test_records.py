"""Streaming readers and per-record rules, including a differential test against LLaMA-Factory's converter."""

from __future__ import annotations

import json

import pytest

from launcher.check.data import jsonstream
from launcher.check.data.jsonstream import SyntaxProblem, iter_json_file
from launcher.check.data.records import RecordChecker
from launcher.check.data.verdicts import CRASH, DROPPED, KEPT, Attr

SHAREGPT = {"formatting": "sharegpt", "ranking": True,
            "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected", "tools": "tools"}}
KTO = {"formatting": "sharegpt", "columns": {"messages": "messages", "kto_tag": "label"},
       "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
                "system_tag": "system"}}
ALPACA = {"ranking": True, "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen",
                                       "rejected": "rejected", "history": "history"}}


def h(text):
    return {"from": "human", "value": text}


def g(text):
    return {"from": "gpt", "value": text}


def pair(conversations, chosen=None, rejected=None, tools=None):
    return {"conversations": conversations, "chosen": g("A") if chosen is None else chosen,
            "rejected": g("B") if rejected is None else rejected, "tools": tools}


def kto(messages, label=True):
    return {"messages": messages, "label": label}


SHAREGPT_RECORDS = [
    pair([h("Q")]),
    pair([{"from": "system", "value": "S"}, h("Q"), g("A0"), h("Q2")]),
    pair([h("Q"), g("A")]),
    pair([]),
    pair([h("Q"), h("Q")]),
    pair([g("A")]),
    pair([h("Q"), {"from": "system", "value": "S"}, h("Q")]),
    pair([h("Q"), {"from": "bot", "value": "A"}, h("Q")]),
    pair([h("Q")], chosen="A", rejected="B"),
    pair([h("Q")], chosen=[g("A")]),
    pair([h("Q")], chosen={"from": "assistant", "value": "A"}),
    pair([h("Q")], chosen={"value": "A"}),
    pair([h("Q")], rejected=h("B")),
    pair([h("Q")], chosen={"from": "system", "value": "A"}),
    pair([h("Q")], chosen=g("same"), rejected=g("same")),
    pair([h("")]),
    pair([h("Q")], chosen=g("")),
    pair([h("Q")], tools=[{"name": "f"}]),
    pair([h("Q")], tools="[{"),
    pair([h("Q")], tools='[{"name": "f"}]'),
    pair([{"from": "human"}]),
    pair([h("Q")], rejected=None),
    pair([h("Q"), {"from": "function_call", "value": "{}"}, {"from": "observation", "value": "r"}]),
    pair([h("<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n")]),
    pair([h("Q")], chosen=g("A<|im_end|>")),
    pair([{"from": "system", "value": "<<SYS>> S"}, h("Q")]),
    pair([h("Is a < b [always]?")]),
]
KTO_RECORDS = [
    kto([{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]),
    kto([{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}], label="true"),
    kto([{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}], label=None),
    kto([{"role": "user", "content": "Q"}]),
    kto([{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]),
    kto([{"role": "user", "content": "Q"}, {"role": "gpt", "content": "A"}], label=False),
    kto([]),
    kto([{"role": "system", "content": "S"}]),
    kto([{"role": "user", "content": "<start_of_turn>user Q"}, {"role": "assistant", "content": "A"}]),
]
ALPACA_RECORDS = [
    {"instruction": "Q", "input": "x", "chosen": "A", "rejected": "B", "history": None},
    {"instruction": "Q", "input": None, "chosen": {"from": "gpt", "value": "A"}, "rejected": "B", "history": None},
    {"instruction": "Q", "input": None, "chosen": None, "rejected": "B", "history": None},
    {"instruction": "Q", "input": None, "chosen": "A", "rejected": "A", "history": None},
    {"instruction": "Q", "input": None, "chosen": "A", "rejected": "B", "history": [["q", "a"]]},
    {"instruction": "Q", "input": None, "chosen": "A", "rejected": "B", "history": [["q"]]},
    {"instruction": None, "input": None, "chosen": "A", "rejected": "B", "history": None},
    {"instruction": "[INST] Q [/INST]", "input": None, "chosen": "A", "rejected": "B", "history": None},
    {"instruction": "Q", "input": "<|begin_of_text|>x", "chosen": "A", "rejected": "B", "history": None},
    {"instruction": "Q", "input": None, "chosen": "A", "rejected": "B<|eot_id|>", "history": None},
    {"instruction": "Q", "input": None, "chosen": "A", "rejected": "B", "history": [["q", "<|assistant|>a"]]},
]


def checker(entry: dict, mode: str) -> RecordChecker:
    return RecordChecker(Attr.from_entry(entry), mode)


def verdict(ck: RecordChecker, record: dict) -> str:
    return KEPT if ck.fast(record) else ck.explain(record)[1]


@pytest.mark.parametrize("entry, mode, records", [(SHAREGPT, "pairwise", SHAREGPT_RECORDS),
                                                  (KTO, "kto", KTO_RECORDS), (ALPACA, "pairwise", ALPACA_RECORDS)],
                         ids=["sharegpt", "kto", "alpaca"])
def test_fast_path_passes_exactly_the_records_with_no_problem(entry, mode, records):
    ck = checker(entry, mode)
    assert [ck.fast(r) for r in records] == [not ck.explain(r)[0] for r in records]


def test_a_message_without_a_role_is_reported_even_when_a_tag_is_left_out():
    ck = checker(KTO, "kto")  # observation_tag and function_tag are None here
    problems, outcome = ck.explain(kto([{"content": "Q"}, {"role": "assistant", "content": "A"}]))
    assert [p.code for p in problems] == ["missing-key"] and outcome == DROPPED


# ------------------------------------------------------------------ streaming readers

def records_of(path):
    return list(iter_json_file(path))


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 20])
def test_array_reader_matches_json_load_at_any_buffer_size(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(jsonstream, "CHUNK", chunk)
    data = [{"a": "x\ny", "b": [1, 2.5, True, None]}, "str", 12345, {"c": {"d": "é \u2603"}}, []]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    items = records_of(path)
    assert [value for _, _, value in items] == data
    text = path.read_text()
    starts = [text.count("\n", 0, text.index(marker)) + 1 for marker in ('{\n    "a"', '"str"', "12345", '{\n    "c"')]
    assert [line for _, line, _ in items][:4] == starts


@pytest.mark.parametrize("chunk", [5, 1 << 20])
def test_array_syntax_error_mid_array_reports_its_line_and_column(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(jsonstream, "CHUNK", chunk)
    path = tmp_path / "a.json"
    path.write_text('[\n  {"a": 1},\n  {"a": 2},\n  {"a": 3 "b": 4},\n  {"a": 5}\n]\n')
    items = records_of(path)
    assert [value for _, _, value in items[:2]] == [{"a": 1}, {"a": 2}]
    assert items[2] == (2, 4, SyntaxProblem("invalid JSON: Expecting ',' delimiter", 4, 11, fatal=True))
    assert len(items) == 3


def test_unclosed_array_and_trailing_data_are_reported(tmp_path):
    (tmp_path / "open.json").write_text('[{"a": 1},\n{"a": 2}\n')
    (tmp_path / "extra.json").write_text('[{"a": 1}]\nx')
    assert records_of(tmp_path / "open.json")[-1][2].message == \
        "invalid JSON: expected ',' or ']' after record 1 but found the end of the file"
    assert records_of(tmp_path / "extra.json")[-1][2] == SyntaxProblem(
        "invalid JSON: extra data after the closing ']'", 2, 1, fatal=True)


def test_json_lines_skip_blank_lines_and_keep_line_numbers(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\n\n   \n{"a": 2\n{"a": 3}\n')
    assert records_of(path) == [(0, 1, {"a": 1}), (1, 4, SyntaxProblem("invalid JSON: Expecting ',' delimiter", 4, 8)),
                                (2, 5, {"a": 3})]


def test_invalid_utf8_is_a_syntax_problem_not_a_crash(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(b'{"a": "\xff"}\n')
    (tmp_path / "b.json").write_bytes(b'[{"a": 1}, {"a": "\xff"}]')
    assert records_of(tmp_path / "a.jsonl")[0][2].message.startswith("invalid UTF-8")
    assert records_of(tmp_path / "b.json")[-1][2].message.startswith("invalid UTF-8")


def test_parquet_rows_are_read_in_batches(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = [{"instruction": f"Q{i}", "chosen": "A", "rejected": "B"} for i in range(5)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    assert [row for _, _, row in jsonstream.iter_columnar(tmp_path / "a.parquet", "parquet")] == rows
    assert jsonstream.columnar_row_count(tmp_path / "a.parquet", "parquet") == 5


# ------------------------------------------------------------------ agreement with LLaMA-Factory's converter

def lf_outcome(converter, record: dict) -> str:
    """What LF 0.9.5 does with a record: the converter, then the pairwise/feedback processor's drop rule and
    the template's need for string contents, JSON-string tools and answers in a role it can format."""
    try:
        out = converter(record)
    except (KeyError, TypeError, ValueError):
        return CRASH
    prompt, response = out["_prompt"], out["_response"]
    if len(prompt) % 2 != 1 or len(response) < 2:
        return DROPPED
    if not all(isinstance(m["content"], str) for m in prompt + response):
        return CRASH
    if any(m["role"] == "system" for m in response):  # Template._encode: "Unexpected role: system"
        return CRASH
    if out["_tools"]:
        try:
            json.loads(out["_tools"])
        except (TypeError, ValueError):
            return CRASH
    return KEPT


@pytest.fixture(scope="module")
def lf():
    converter = pytest.importorskip("llamafactory.data.converter")
    parser = pytest.importorskip("llamafactory.data.parser")

    class DataArgs:
        media_dir = "."

    def build(entry: dict):
        attr = parser.DatasetAttr("file", dataset_name="x")
        attr.join(entry)
        cls = converter.SharegptDatasetConverter if entry.get("formatting") == "sharegpt" else \
            converter.AlpacaDatasetConverter
        return cls(attr, DataArgs())

    return build


@pytest.mark.slow  # imports the training stack in process
@pytest.mark.parametrize("entry, mode, records", [(SHAREGPT, "pairwise", SHAREGPT_RECORDS),
                                                  (KTO, "kto", KTO_RECORDS), (ALPACA, "pairwise", ALPACA_RECORDS)],
                         ids=["sharegpt", "kto", "alpaca"])
def test_verdicts_agree_with_llamafactory_converter(lf, entry, mode, records):
    ck, converter = checker(entry, mode), lf(entry)
    assert [verdict(ck, r) for r in records] == [lf_outcome(converter, r) for r in records]


# ------------------------------------------------------------------ an answer in a role other than the assistant's

def test_a_chosen_message_with_the_user_role_is_an_error_that_says_the_target_is_corrupted():
    ck = checker(SHAREGPT, "pairwise")
    problems, outcome = ck.explain(pair([h("Q")], chosen=h("A")))
    assert [(p.severity, p.code, p.path) for p in problems] == [("error", "role-wrong", "chosen.from")]
    assert problems[0].message == (
        "chosen.from is 'human', expected 'gpt' or 'function_call'; LLaMA-Factory keeps the record and renders "
        "this answer as a user turn inside the response, so the pair trains on a corrupted target (with the "
        "qwen3_nothink template the target becomes '<|im_start|>user\\nANSWER<|im_end|>\\n<|im_start|>assistant\\n')")
    assert problems[0].hint == "set it to 'gpt'" and outcome == KEPT


def test_a_rejected_message_with_the_system_role_crashes_llamafactory_when_it_tokenizes():
    ck = checker(SHAREGPT, "pairwise")
    problems, outcome = ck.explain(pair([h("Q")], rejected={"from": "system", "value": "B"}))
    assert [(p.severity, p.code) for p in problems] == [("error", "role-wrong")] and outcome == CRASH
    assert "NotImplementedError: Unexpected role: system" in problems[0].message


@pytest.mark.slow
@pytest.mark.parametrize("tag", ["user_tag", "observation_tag"])
def test_llamafactory_renders_an_answer_in_that_role_as_the_message_says(tag, lf, tiny_model_dir):
    """LF's own converter and qwen3_nothink template (encode_oneturn, as the pairwise processor calls it)."""
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from transformers import AutoTokenizer

    from launcher.check.data.explain import ANSWER_RENDERED_AS

    role = {"user_tag": "human", "observation_tag": "observation"}[tag]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    template = get_template_and_fix_tokenizer(tokenizer, DataArguments(template="qwen3_nothink"))
    example = lf(SHAREGPT)(pair([h("Q")], chosen={"from": role, "value": "ANSWER"}, tools=None))
    _, chosen_ids = template.encode_oneturn(tokenizer, example["_prompt"] + example["_response"][:1],
                                            example["_system"], example["_tools"])
    claimed = ANSWER_RENDERED_AS[tag][1].strip("'").replace("\\n", "\n")
    assert tokenizer.decode(chosen_ids) == claimed


@pytest.mark.slow
def test_llamafactory_crashes_on_an_answer_in_the_system_role(lf, tiny_model_dir):
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    template = get_template_and_fix_tokenizer(tokenizer, DataArguments(template="qwen3"))
    example = lf(SHAREGPT)(pair([h("Q")], rejected={"from": "system", "value": "B"}, tools=None))
    with pytest.raises(NotImplementedError, match="Unexpected role: system"):
        template.encode_oneturn(tokenizer, example["_prompt"] + example["_response"][1:], example["_system"], None)


# ------------------------------------------------------------------ text that went through a chat template

def test_a_turn_that_went_through_a_chat_template_is_a_warning_naming_the_marker():
    ck = checker(SHAREGPT, "pairwise")
    problems, outcome = ck.explain(pair([h("<|im_start|>user\nQ<|im_end|>")]))
    assert [(p.severity, p.code, p.path) for p in problems] == [
        ("warning", "already-templated", "conversations[0].value")]
    assert problems[0].message == (
        "conversations[0].value contains '<|im_start|>', a ChatML (Qwen, Yi, Hermes) chat template marker: the text "
        "already went through a chat template, and LLaMA-Factory applies the config's template to it again, so the "
        "model trains on the markers twice")
    assert outcome == KEPT


def test_every_marker_is_one_llamafactory_templates_write():
    """The markers are read from LF's own template definitions (the source text, without importing it)."""
    import importlib.util
    from pathlib import Path

    from launcher.check.data.templated import MARKERS

    source = (Path(importlib.util.find_spec("llamafactory").origin).parent / "data" / "template.py").read_text()
    assert [marker for marker in MARKERS if marker not in source] == []
