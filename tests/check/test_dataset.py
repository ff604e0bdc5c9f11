"""dataset_info.json, entries, files and record checks, through `check_datasets` and the CLI.

Case folders: tests/cases/data/{valid,invalid}/<case>/ hold config.yaml, data/ and expected.txt, the exact
lines `check_datasets` renders (record indexes are 0-based). To refresh one after a deliberate change of
wording, render it and review the diff by hand.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

import pytest

from launcher.check.config import load_config
from launcher.check.data.datasets import check_datasets, local_dataset_sizes
from launcher.check.diagnostics import ERROR

from support.cli import CASES, run_cli

DATA_CASES = sorted((CASES / "data").glob("*/*"))
DATA_CODES = {
    "dataset-dir-missing", "dataset-info-missing", "json-syntax", "unknown-field", "enum", "type", "schema",
    "entry-source", "dataset-undefined", "dataset-file", "ranking-stage", "column-unmapped", "tags-incomplete",
    "tags-mismatch", "formatting-openai", "hub-not-checked", "data-summary", "data-not-checked", "data-unreadable",
    "record-type", "missing-column", "value-type", "message-type", "missing-key", "role-order", "role-unknown",
    "role-wrong", "system-position", "turn-count", "chosen-type", "empty-content", "identical-pair",
    "kto-tag-type", "tools-type", "tools-json", "media-count", "history-type", "duplicate-key", "media-missing",
    "column-missing", "guide-shape", "already-templated",
}


def run_case(case: Path, monkeypatch) -> tuple[list, dict]:
    monkeypatch.chdir(case)
    return check_datasets(load_config("config.yaml"), Path("."))


@pytest.mark.parametrize("case", DATA_CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_case_folder_renders_exactly_the_expected_lines(case, monkeypatch):
    diagnostics, _ = run_case(case, monkeypatch)
    rendered = "".join(d.render() + "\n" for d in diagnostics)
    assert rendered == (case / "expected.txt").read_text()


@pytest.mark.parametrize("case", [c for c in DATA_CASES if c.parent.name == "valid"], ids=lambda p: p.name)
def test_valid_case_has_no_errors(case, monkeypatch):
    diagnostics, _ = run_case(case, monkeypatch)
    assert [d.render() for d in diagnostics if d.severity == ERROR] == []


@pytest.mark.parametrize("case", [c for c in DATA_CASES if c.parent.name == "invalid"], ids=lambda p: p.name)
def test_invalid_case_has_an_error(case, monkeypatch):
    diagnostics, _ = run_case(case, monkeypatch)
    assert any(d.severity == ERROR for d in diagnostics)


def test_summary_counts_records_drops_crashes_and_problems_per_file(monkeypatch):
    _, summary = run_case(CASES / "data/invalid/role_unknown", monkeypatch)
    assert summary == {
        "dataset_dir": "data", "records": 3, "would_drop": 1, "would_crash": 1,
        "datasets": {"demo": {"source": "file", "files": ["data/demo.jsonl"], "checked": True}},
        "files": {"data/demo.jsonl": {"records": 3, "dropped": 1, "crash": 1, "unparsable": 0,
                                      "problems": {"role-unknown": 2, "role-wrong": 1}}},
    }


def test_record_diagnostics_carry_file_line_record_and_path(monkeypatch):
    diagnostics, _ = run_case(CASES / "data/invalid/jsonl_line_numbers", monkeypatch)
    turn = next(d for d in diagnostics if d.code == "turn-count")
    assert (turn.file, turn.line, turn.record, turn.path) == ("data/demo.jsonl", 3, 1, "conversations")


def test_hub_entry_is_reported_as_not_checked(monkeypatch):
    _, summary = run_case(CASES / "data/valid/hub_entry_note", monkeypatch)
    assert summary["datasets"] == {"demo": {"source": "hf_hub", "files": [], "checked": False}}


def test_online_dataset_dir_is_a_note_not_an_error(tmp_path):
    (tmp_path / "config.yaml").write_text("stage: dpo\ndataset: org/prefs\ndataset_dir: ONLINE\n")
    diagnostics, _ = check_datasets(load_config(tmp_path / "config.yaml"), tmp_path)
    assert [d.render() for d in diagnostics] == [
        f"{tmp_path / 'config.yaml'}:3:14: note[hub-not-checked]: dataset_dir is 'ONLINE': names are Hub dataset "
        "ids; datasets are not checked offline"]


def test_eval_dataset_list_names_are_checked_with_their_list_position(tmp_path):
    case = CASES / "data/valid/sharegpt_dpo"
    (tmp_path / "data").symlink_to(case / "data")
    (tmp_path / "config.yaml").write_text("stage: dpo\ndataset: demo\neval_dataset:\n  - demo\n  - demoo\n")
    diagnostics, _ = check_datasets(load_config(tmp_path / "config.yaml"), tmp_path)
    undefined = [d for d in diagnostics if d.code == "dataset-undefined"]
    assert [(d.line, d.path, d.hint) for d in undefined] == [(5, "eval_dataset[1]", "did you mean 'demo'?")]


def test_local_dataset_sizes_count_records_and_leave_hub_datasets_unknown(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data/a.jsonl").write_text('{"x": 1}\n\n{"x": 2}\n')
    (tmp_path / "data/b.json").write_text('[{"x": 1}, {"x": 2}, {"x": 3}]')
    info = {"a": {"file_name": "a.jsonl"}, "b": {"file_name": "b.json"},
            "c": {"file_name": "b.json", "num_samples": 10}, "hub": {"hf_hub_url": "org/x"}}
    (tmp_path / "data/dataset_info.json").write_text(json.dumps(info))
    (tmp_path / "config.yaml").write_text("stage: dpo\ndataset: a,b,c,hub\neval_dataset: nope\n")
    sizes = local_dataset_sizes(load_config(tmp_path / "config.yaml"), tmp_path)
    assert sizes == {"a": 2, "b": 3, "c": 10, "hub": None, "nope": None}



def test_local_dataset_sizes_reuse_the_counts_validate_took(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data/a.jsonl").write_text('{"x": 1}\n{"x": 2}\n')
    (tmp_path / "data/dataset_info.json").write_text(json.dumps({"a": {"file_name": "a.jsonl"}}))
    (tmp_path / "config.yaml").write_text("stage: dpo\ndataset: a\n")
    summary = {"datasets": {"a": {"source": "file", "files": ["data/a.jsonl"], "checked": True}},
               "files": {"data/a.jsonl": {"records": 7}}}
    loaded = load_config(tmp_path / "config.yaml")

    assert local_dataset_sizes(loaded, tmp_path, summary) == {"a": 7}  # the summary's count, not a re-read
    assert local_dataset_sizes(loaded, tmp_path) == {"a": 2}


def write_sharegpt_jsonl(path: Path, count: int, defect_every: int) -> None:
    """ShareGPT DPO records of ~1.6 KB; every `defect_every`-th one has two user turns in a row."""
    rng = random.Random(0)
    words = "the of and to in is you that it was for on are as with they at be this have from".split()

    def text(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n))

    with open(path, "w") as handle:
        for index in range(count):
            conv = [{"from": "human", "value": text(85)}, {"from": "gpt", "value": text(55)},
                    {"from": "human", "value": text(40)}]
            if index % defect_every == 7:
                conv[1]["from"] = "human"
            record = {"conversations": conv, "chosen": {"from": "gpt", "value": text(100)},
                      "rejected": {"from": "gpt", "value": text(100)}}
            handle.write(json.dumps(record) + "\n")


@pytest.mark.slow
def test_two_hundred_thousand_records_are_streamed_and_counted(tmp_path):
    (tmp_path / "data").mkdir()
    write_sharegpt_jsonl(tmp_path / "data/big.jsonl", 200_000, defect_every=2000)
    entry = {"file_name": "big.jsonl", "formatting": "sharegpt", "ranking": True,
             "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}}
    (tmp_path / "data/dataset_info.json").write_text(json.dumps({"big": entry}))
    (tmp_path / "config.yaml").write_text("stage: dpo\ndataset: big\n")
    diagnostics, summary = check_datasets(load_config(tmp_path / "config.yaml"), tmp_path)
    assert summary["files"]["data/big.jsonl"] == {"records": 200_000, "dropped": 100, "crash": 0, "unparsable": 0,
                                                  "problems": {"role-order": 100}}
    assert diagnostics[-1].render() == "data/big.jsonl: note[data-summary]: 200000 records checked, 100 would be " \
                                       "dropped by LLaMA-Factory"
    assert [d.record for d in diagnostics if d.code == "role-order"][:3] == [7, 2007, 4007]


def cli_data_lines(case: Path) -> tuple[int, list[str]]:
    result = run_cli("validate", "config.yaml", cwd=case)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stdout.splitlines()
             if "[" in line and line.split("[", 1)[1].split("]", 1)[0] in DATA_CODES]
    return result.returncode, lines


@pytest.mark.subprocess
@pytest.mark.parametrize("name", ["valid/sharegpt_dpo", "invalid/guide_shape", "invalid/json_syntax_array"])
def test_validate_cli_prints_the_data_diagnostics_of_a_case(name):
    case = CASES / "data" / name
    returncode, lines = cli_data_lines(case)
    expected = (case / "expected.txt").read_text().splitlines()
    assert lines == expected
    assert returncode == (0 if name.startswith("valid") else 1)


@pytest.mark.slow
def test_the_duplicate_key_cases_match_how_datasets_loads_them_for_llamafactory(tmp_path):
    """The real reader behind both cases: pyarrow refuses the JSON Lines file, json.load keeps an array's last."""
    from datasets import load_dataset

    cases = CASES / "data"
    with pytest.raises(Exception) as refused:
        load_dataset("json", data_files=str(cases / "invalid/duplicate_key_jsonl/data/demo.jsonl"), split="train",
                     cache_dir=str(tmp_path / "jsonl"))
    assert "was specified twice" in str(refused.value.__cause__)
    array = load_dataset("json", data_files=str(cases / "valid/duplicate_key_array/data/demo.json"), split="train",
                         cache_dir=str(tmp_path / "array"))
    assert array[0]["chosen"] == {"from": "gpt", "value": "Five."}


def test_a_json_lines_file_without_duplicate_keys_but_with_colons_in_its_text_loads(tmp_path):
    path = tmp_path / "colons.jsonl"
    rows = [{"conversations": [{"from": "human", "value": f'Time: 10:{i:02}. "a": b'}],
             "chosen": {"from": "gpt", "value": "k: v"}, "rejected": {"from": "gpt", "value": "x"}} for i in range(50)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows) + '{"a" : 1, "b" : {"c" : 2}}\n')
    from launcher.check.data.jsonstream import iter_json_file

    assert [value for _, _, value in iter_json_file(path)] == rows + [{"a": 1, "b": {"c": 2}}]


@pytest.mark.slow
def test_media_missing_flags_exactly_the_records_whose_media_llamafactory_cannot_open(monkeypatch):
    """LF's own converter (media_dir lookup) and mm_plugin loaders on the case's records, side by side."""
    from llamafactory.data.converter import SharegptDatasetConverter
    from llamafactory.data.mm_plugin import get_mm_plugin
    from llamafactory.data.parser import get_dataset_list
    from llamafactory.hparams import DataArguments

    case = CASES / "data/invalid/media_missing"
    monkeypatch.chdir(case)
    converter = SharegptDatasetConverter(get_dataset_list(["demo"], "data")[0],
                                         DataArguments(dataset_dir="data", media_dir="media"))
    plugin = get_mm_plugin("base", image_token="<image>", video_token="<video>")
    sizes = {"image_max_pixels": 768 * 768, "image_min_pixels": 32 * 32, "video_fps": 2.0, "video_maxlen": 8}

    def llamafactory_fails(row: dict) -> bool:
        example = converter(defaultdict(lambda: None, row))  # datasets gives a record's missing column as None
        try:
            plugin._regularize_images(example["_images"] or [], **sizes)
            plugin._regularize_videos(example["_videos"] or [], **sizes)
        except (FileNotFoundError, ValueError):
            return True
        return False

    rows = [json.loads(line) for line in (case / "data/demo.jsonl").read_text().splitlines()]
    fails = {index for index, row in enumerate(rows) if llamafactory_fails(row)}
    diagnostics, _ = check_datasets(load_config("config.yaml"), Path("."))
    assert {d.record for d in diagnostics if d.code == "media-missing"} == fails == {2, 3, 4, 5}
