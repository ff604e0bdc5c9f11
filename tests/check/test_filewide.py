"""A problem most records of a file share is one diagnostic for the file, with the count, the first locations and
the fix (launcher/check/data/filewide.py); the same problem in a few records stays one diagnostic per record.
The case folders tests/cases/data/*/{guide_shape,tags_mismatch_roles,column_typo,already_templated} hold the
exact lines; these tests cover the rules around them and the issue's 64-record guide file."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from launcher.check.config import load_config
from launcher.check.data.datasets import check_datasets
from launcher.check.data.shapes import ShapeTally
from launcher.check.diagnostics import summary_line

from support.cli import run_main

SHAREGPT = {"formatting": "sharegpt", "ranking": True,
            "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"},
            "file_name": "prefs.jsonl"}
CONFIG = "stage: dpo\ndo_train: true\nfinetuning_type: lora\ndataset: demo\ntemplate: qwen3_nothink\n" \
         "model_name_or_path: Qwen/Qwen3-0.6B\noutput_dir: out\nreport_to: tensorboard\n"


def m(role: str, text: str) -> dict:
    return {"from": role, "value": text}


def workspace(root: Path, rows: list[dict], entry: dict = SHAREGPT) -> Path:
    (root / "data").mkdir()
    (root / "data/dataset_info.json").write_text(json.dumps({"demo": entry}, indent=2))
    (root / "data" / entry["file_name"]).write_text("".join(json.dumps(row) + "\n" for row in rows))
    (root / "config.yaml").write_text(CONFIG)
    return root


def check(root: Path) -> list:
    diagnostics, _ = check_datasets(load_config(root / "config.yaml"), root)
    return diagnostics


def guide_rows(count: int) -> list[dict]:
    """What most DPO guides show: `from: user` and plain-string answers."""
    return [{"conversations": [m("user", f"Question {i}?")], "chosen": f"Good {i}.", "rejected": f"Bad {i}."}
            for i in range(count)]


def test_sixty_four_guide_shaped_records_are_one_error_with_the_count_and_the_convert_command(tmp_path):
    diagnostics = check(workspace(tmp_path, guide_rows(64)))
    assert [(d.severity, d.code, d.file, d.line) for d in diagnostics] == [
        ("error", "guide-shape", "data/prefs.jsonl", 1), ("note", "data-summary", "data/prefs.jsonl", None)]
    guide = diagnostics[0]
    assert guide.message.startswith("64 of 64 records have chosen/rejected as plain strings and role names the "
                                    "entry does not declare ('user')")
    assert guide.message.endswith("first: record 0 (line 1), record 1 (line 2), record 2 (line 3), ...")
    assert guide.hint == ("convert the file: dpo-launch convert data/prefs.jsonl --from sharegpt-strings --out "
                          "data/prefs_converted.jsonl --register data/dataset_info.json --name demo --force; --force "
                          "replaces entry 'demo' with one for the converted file")
    assert summary_line(diagnostics, "config.yaml") == "✗ 1 error, 0 warnings, 1 note in data/prefs.jsonl"


def test_the_convert_command_of_the_guide_shape_hint_makes_the_data_validate_clean(tmp_path):
    root = workspace(tmp_path, guide_rows(5))
    hint = next(d.hint for d in check(root) if d.code == "guide-shape")
    argv = shlex.split(hint.removeprefix("convert the file: ").split(";")[0])
    assert argv[0] == "dpo-launch"
    assert run_main(*argv[1:], cwd=root).returncode == 0
    done = run_main("validate", "config.yaml", cwd=root)
    assert done.returncode == 0, done.stdout
    assert done.stdout.splitlines()[-1] == "✓ 0 errors, 0 warnings, 2 notes in config.yaml"


def test_a_summary_names_each_file_with_errors_and_its_count(tmp_path):
    root = workspace(tmp_path, guide_rows(3))
    (root / "config.yaml").write_text(CONFIG + "pref_loss: sigmod\n")
    done = run_main("validate", "config.yaml", cwd=root)
    assert done.stdout.splitlines()[-1] == "✗ 2 errors, 0 warnings, 2 notes in config.yaml (1), data/prefs.jsonl (1)"


def test_role_and_content_keys_get_role_tag_and_content_tag_in_the_tags_to_declare(tmp_path):
    rows = [{"conversations": [{"role": "user", "content": f"Q{i}"}], "chosen": {"role": "assistant", "content": "A"},
             "rejected": {"role": "assistant", "content": "B"}} for i in range(4)]
    found = [d for d in check(workspace(tmp_path, rows)) if d.severity == "error"]
    assert [d.code for d in found] == ["tags-mismatch"]
    assert found[0].hint.startswith('declare "tags": {"role_tag": "role", "content_tag": "content", "user_tag": '
                                    '"user", "assistant_tag": "assistant"} in entry \'demo\' of data/dataset_info.json')


def test_a_few_records_with_an_undeclared_role_keep_one_error_each(tmp_path):
    rows = [{"conversations": [m("human", f"Q{i}")], "chosen": m("gpt", "A"), "rejected": m("gpt", "B")}
            for i in range(5)]
    rows[2]["conversations"][0]["from"] = "user"
    found = [(d.code, d.record) for d in check(workspace(tmp_path, rows)) if d.severity == "error"]
    assert found == [("role-unknown", 2)]


def test_no_tags_are_suggested_when_some_records_already_use_the_declared_ones(tmp_path):
    """Renaming user_tag to 'user' would break the records that pass with 'human': each error stays listed."""
    rows = [{"conversations": [m("user" if i < 3 else "human", f"Q{i}")], "chosen": m("gpt", "A"),
             "rejected": m("gpt", "B")} for i in range(5)]
    found = [(d.code, d.record) for d in check(workspace(tmp_path, rows)) if d.severity == "error"]
    assert found == [("role-unknown", 0), ("role-unknown", 1), ("role-unknown", 2)]


def test_a_column_most_records_lack_is_reported_at_the_entry_with_the_first_locations(tmp_path):
    rows = [{"conversations": [m("human", f"Q{i}")], "chosen": m("gpt", "A"), "rejected": m("gpt", "B")}
            for i in range(4)]
    for row in rows[1:]:
        row["rejeted"] = row.pop("rejected")
    found = [d for d in check(workspace(tmp_path, rows)) if d.severity == "error"]
    assert [(d.code, d.file, d.line, d.path) for d in found] == [
        ("column-missing", "data/dataset_info.json", 8, "demo.columns.rejected")]
    assert found[0].message == ("entry 'demo': column rejected is mapped to 'rejected', but 3 of the 4 records of "
                                "data/prefs.jsonl do not have it, so LLaMA-Factory drops them; first: record 1 "
                                "(line 2), record 2 (line 3), record 3 (line 4)")
    assert found[0].hint == "did you mean 'rejeted'? the records have 'rejeted'"


def test_a_kto_tag_column_typo_is_reported_once_at_the_entry(tmp_path):
    entry = {"file_name": "kto.jsonl", "formatting": "sharegpt", "columns": {"messages": "conversations",
                                                                             "kto_tag": "labels"}}
    rows = [{"conversations": [m("human", f"Q{i}"), m("gpt", "A")], "label": i % 2 == 0} for i in range(6)]
    root = workspace(tmp_path, rows, entry)
    (root / "config.yaml").write_text(CONFIG.replace("stage: dpo", "stage: kto"))
    found = [d for d in check(root) if d.severity == "error"]
    assert [(d.code, d.path) for d in found] == [("column-missing", "demo.columns.kto_tag")]
    assert found[0].message.endswith("no record of data/kto.jsonl has it (6 checked), so LLaMA-Factory crashes with "
                                     "KeyError: 'labels'")
    assert found[0].hint == "did you mean 'label'? the records have 'label'"


def test_a_shape_counts_each_record_once_and_keeps_the_first_three_locations():
    tally = ShapeTally()
    for index in range(5):
        for position in (2 * index, 2 * index + 1):  # chosen and rejected of the same record
            tally.note("string-answer", index, index + 1, "dropped", position)
    seen = tally.file_wide("string-answer", 5)
    assert (seen.records, seen.first, seen.verdicts["dropped"]) == (5, [(0, 1), (1, 2), (2, 3)], 5)
    assert seen.positions == list(range(10))
    assert tally.file_wide("string-answer", 11) is None  # 5 of 11 is less than half


@pytest.mark.parametrize("records, affected, wide", [(1, 1, True), (2, 1, False), (2, 2, True), (4, 2, True),
                                                     (5, 2, False)])
def test_a_shape_is_file_wide_from_half_of_the_records_and_two_of_them(records, affected, wide):
    tally = ShapeTally()
    for index in range(affected):
        tally.note("templated:[INST]", index, None, "kept", index)
    assert (tally.file_wide("templated", records) is not None) == wide


@pytest.mark.slow
def test_a_column_no_record_has_crashes_llamafactory_with_key_error(tmp_path):
    """The claim of column-missing, with the reader and converter LF uses: the column is not in the dataset."""
    from datasets import load_dataset
    from llamafactory.data.converter import SharegptDatasetConverter
    from llamafactory.data.parser import get_dataset_list
    from llamafactory.hparams import DataArguments

    entry = dict(SHAREGPT, columns=dict(SHAREGPT["columns"], messages="conversation"))
    rows = [{"conversations": [m("human", "Q")], "chosen": m("gpt", "A"), "rejected": m("gpt", "B")}] * 3
    root = workspace(tmp_path, rows, entry)
    dataset = load_dataset("json", data_files=str(root / "data/prefs.jsonl"), split="train",
                           cache_dir=str(tmp_path / "cache"))
    converter = SharegptDatasetConverter(get_dataset_list(["demo"], str(root / "data"))[0],
                                         DataArguments(dataset_dir=str(root / "data")))
    with pytest.raises(KeyError, match="conversation"):
        converter(dataset[0])
    found = [d for d in check(root) if d.severity == "error"]
    assert [d.code for d in found] == ["column-missing"] and "KeyError: 'conversation'" in found[0].message
