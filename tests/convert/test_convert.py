"""`dpo-launch convert`: every input format, detection, skipped records, --strict, overwrite and --register.

Case folders in tests/cases/convert/<case>/ hold `input.*`, the exact `expected.jsonl`, `stdout.txt`,
`stderr.txt` and, when the case needs them, extra CLI arguments in `args` (one per line).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from launcher.check.data.records import RecordChecker
from launcher.check.data.verdicts import Attr
from launcher.convert.formats import FORMATS, detect

from support.cli import CASES, run_cli, run_main

CASE_DIR = CASES / "convert"
CASE_NAMES = sorted(p.name for p in CASE_DIR.iterdir() if p.is_dir())
# The format each case's first record must be detected as.
DETECTED = {"alpaca": "alpaca", "hh": "hh", "json-array": "trl", "kto": "trl", "openai-messages": "openai",
            "openai-preference": "openai", "sharegpt-strings": "sharegpt-strings", "skipped": "sharegpt-strings",
            "trl-conversational": "trl", "trl-standard": "trl", "ultrafeedback": "ultrafeedback",
            "autotrain-multiturn": "ultrafeedback", "custom-columns": "trl", "multi-objective": "trl"}


def copy_case(name: str, tmp_path: Path) -> tuple[Path, list[str]]:
    work = tmp_path / name
    shutil.copytree(CASE_DIR / name, work)
    args_file = work / "args"
    args = args_file.read_text().split() if args_file.exists() else []
    return work, args


def input_name(work: Path) -> str:
    return next(p.name for p in work.iterdir() if p.name.startswith("input."))


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_every_case_is_listed_with_its_format():
    assert sorted(DETECTED) == CASE_NAMES
    assert set(DETECTED.values()) == set(FORMATS)


@pytest.mark.parametrize("case", CASE_NAMES)
def test_case_converts_to_the_expected_rows_and_messages(case, tmp_path):
    work, args = copy_case(case, tmp_path)
    done = run_main("convert", input_name(work), "--out", "out.jsonl", *args, cwd=work)
    assert (done.returncode, done.stdout, done.stderr) == (0, (work / "stdout.txt").read_text(),
                                                            (work / "stderr.txt").read_text())
    assert (work / "out.jsonl").read_text(encoding="utf-8") == (work / "expected.jsonl").read_text(encoding="utf-8")
    assert f"detected format '{DETECTED[case]}'" in done.stderr


@pytest.mark.parametrize("case", CASE_NAMES)
def test_naming_the_detected_format_gives_the_same_rows_without_the_detection_note(case, tmp_path):
    work, args = copy_case(case, tmp_path)
    done = run_main("convert", input_name(work), "--from", DETECTED[case], "--out", "out.jsonl", *args, cwd=work)
    assert done.returncode == 0, done.stderr
    assert "detected" not in done.stderr
    assert (work / "out.jsonl").read_text(encoding="utf-8") == (work / "expected.jsonl").read_text(encoding="utf-8")


@pytest.mark.parametrize("case", CASE_NAMES)
def test_registered_rows_pass_validates_record_checks(case, tmp_path):
    work, args = copy_case(case, tmp_path)
    done = run_main("convert", input_name(work), "--out", "data/out.jsonl", *args,
                   "--register", "data/dataset_info.json", "--name", "converted", cwd=work)
    assert done.returncode == 0, done.stderr
    entry = json.loads((work / "data/dataset_info.json").read_text())["converted"]
    checker = RecordChecker(Attr.from_entry(entry), "kto" if "--to" in args else "pairwise")
    rows = read_rows(work / "data" / entry["file_name"])
    assert rows and all(checker.fast(row) for row in rows), [checker.explain(r) for r in rows if not checker.fast(r)]


@pytest.fixture(scope="module")
def llamafactory_converter():
    """LLaMA-Factory's own dataset_info parser and ShareGPT converter, to check what it makes of our rows."""
    from llamafactory.data.converter import SharegptDatasetConverter
    from llamafactory.data.parser import get_dataset_list
    from llamafactory.hparams import DataArguments

    def convert(dataset_dir: Path, name: str, rows: list[dict]) -> list[dict]:
        attr = get_dataset_list([name], str(dataset_dir))[0]
        converter = SharegptDatasetConverter(attr, DataArguments(dataset_dir=str(dataset_dir)))
        return [converter(row) for row in rows]

    return convert


@pytest.mark.subprocess
@pytest.mark.parametrize("case", ["hh", "trl-conversational", "sharegpt-strings", "alpaca", "kto"])
def test_llamafactory_turns_registered_rows_into_training_examples(case, tmp_path, llamafactory_converter):
    work, args = copy_case(case, tmp_path)
    run_cli("convert", input_name(work), "--out", "data/out.jsonl", *args,
            "--register", "data/dataset_info.json", "--name", "converted", cwd=work)
    rows = read_rows(work / "data/out.jsonl")
    examples = llamafactory_converter(work / "data", "converted", rows)
    for row, example in zip(rows, examples, strict=True):  # pairwise.py/feedback.py keep a row only with these lengths
        assert len(example["_prompt"]) % 2 == 1 and len(example["_response"]) == 2, example
        assert example["_prompt"][-1]["role"] == "user"
        system = row["conversations"][0]["value"] if row["conversations"][0]["from"] == "system" else ""
        assert example["_system"] == system
    if case == "kto":  # LF marks desirability by which response slot is empty
        assert [e["_response"][1]["content"] == "" for e in examples] == [row["label"] for row in rows]


def test_validate_accepts_a_converted_and_registered_dataset(tmp_path):
    work, _ = copy_case("ultrafeedback", tmp_path)
    run_main("convert", "input.jsonl", "--out", "data/prefs.jsonl", "--register", "data/dataset_info.json",
            "--name", "prefs", cwd=work)
    (work / "dpo.yaml").write_text("model_name_or_path: Qwen/Qwen3-0.6B\nstage: dpo\ndo_train: true\n"
                                   "finetuning_type: lora\ndataset: prefs\ndataset_dir: data\n"
                                   "template: qwen3_nothink\noutput_dir: out\n")
    done = run_main("validate", "dpo.yaml", cwd=work)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("record, expected", [
    ({"prompt": "q", "chosen": "a", "rejected": "b"}, "trl"),
    ({"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "a"}],
      "rejected": [{"role": "assistant", "content": "b"}]}, "trl"),
    ({"input": {"messages": []}, "preferred_output": [], "non_preferred_output": []}, "openai"),
    ({"messages": [], "rejected_message": {}}, "openai"),
    ({"messages": [], "chosen": "a", "rejected": "b"}, "openai"),
    ({"conversations": [], "chosen": "a", "rejected": "b"}, "sharegpt-strings"),
    ({"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "\n\nHuman: q\n\nAssistant: b"}, "hh"),
    ({"prompt": "\n\nHuman: q\n\nAssistant:", "chosen": " a", "rejected": " b"}, "hh"),
    ({"prompt": "q", "chosen": [{"role": "user"}], "rejected": []}, "ultrafeedback"),
    ({"chosen": [{"role": "user"}], "rejected": []}, "ultrafeedback"),
    ({"instruction": "q", "input": "", "chosen": "a", "rejected": "b"}, "alpaca"),
    ({"instruction": "q", "output": ["a", "b"]}, "alpaca"),
])
def test_detection_recognises_each_format(record, expected):
    assert detect(record)[0] == expected


@pytest.mark.parametrize("record", [{"text": "hello"}, {"chosen": "a", "rejected": "b"}, ["a", "b"]])
def test_detection_gives_up_on_shapes_it_does_not_know(record):
    assert detect(record) is None


def test_an_undetectable_file_names_its_keys_and_the_formats(tmp_path):
    (tmp_path / "in.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    done = run_main("convert", "in.jsonl", "--out", "out.jsonl", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == ("in.jsonl:1: error[unknown-format]: record 0 has answer, question, which matches none of "
                           "the formats trl, openai, sharegpt-strings, hh, ultrafeedback, alpaca (pass --from FORMAT, "
                           "or --map FIELD=COLUMN,... for other column names; `dpo-launch convert --help` shows the "
                           "shapes each format accepts)\n")
    assert not (tmp_path / "out.jsonl").exists()


def test_an_unknown_format_is_a_usage_error_with_a_suggestion(tmp_path):
    done = run_main("convert", "in.jsonl", "--from", "ultrafeedbak", "--out", "out.jsonl", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, ("dpo-launch: error: --from: expected one of trl, openai, "
                                               "sharegpt-strings, hh, ultrafeedback, alpaca but got 'ultrafeedbak' "
                                               "(did you mean 'ultrafeedback'?)\n"))


def test_format_aliases_are_accepted(tmp_path):
    work, _ = copy_case("hh", tmp_path)
    done = run_main("convert", "input.jsonl", "--from", "hh-rlhf", "--out", "o.jsonl", cwd=work)
    assert (done.returncode, done.stderr) == (0, "")  # no detection note: the alias named the format
    assert read_rows(work / "o.jsonl") == read_rows(work / "expected.jsonl")


def test_an_output_name_llamafactory_would_not_read_as_json_is_a_usage_error(tmp_path):
    done = run_main("convert", "in.jsonl", "--out", "out.txt", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == ("dpo-launch: error: --out: expected a .jsonl or .json file name but got 'out.txt' "
                           "(LLaMA-Factory picks its reader from the extension)\n")


def test_a_missing_input_is_reported_with_its_path(tmp_path):
    done = run_main("convert", "nope.jsonl", "--out", "out.jsonl", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (1, "nope.jsonl: error[not-found]: no such file\n")


def test_more_skipped_records_than_the_cap_are_summarised(tmp_path):
    rows = [{"prompt": "q", "chosen": "a", "rejected": "b"}] + [{"prompt": "q", "chosen": "", "rejected": "b"}] * 25
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = run_main("convert", "in.jsonl", "--out", "out.jsonl", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stderr.splitlines()[-1] == "in.jsonl: 5 more records not converted; use --verbose to list them"
    assert done.stdout == "converted 1 of 26 records; 25 skipped: 25 empty chosen\nwrote out.jsonl (1 pair)\n"
    verbose = run_main("convert", "in.jsonl", "--out", "out.jsonl", "--force", "--verbose", cwd=tmp_path)
    assert sum("warning[empty-chosen]" in line for line in verbose.stderr.splitlines()) == 25


def test_strict_fails_on_any_skipped_record_and_writes_nothing(tmp_path):
    work, _ = copy_case("skipped", tmp_path)
    done = run_main("convert", "input.jsonl", "--out", "out.jsonl", "--strict", cwd=work)
    assert (done.returncode, done.stdout) == (1, "")
    lines = done.stderr.splitlines()
    assert lines[1] == "input.jsonl:2: error[empty-chosen]: record 1: chosen is empty"
    assert lines[-1] == ("input.jsonl: error[strict]: 7 of 9 records cannot be converted and --strict is set; "
                         "out.jsonl not written")
    assert not (work / "out.jsonl").exists() and leftovers(work) == []


def test_strict_passes_when_every_record_converts(tmp_path):
    work, _ = copy_case("trl-standard", tmp_path)
    done = run_main("convert", "input.jsonl", "--out", "out.jsonl", "--strict", cwd=work)
    assert (done.returncode, done.stdout) == (0, (work / "stdout.txt").read_text())
    assert read_rows(work / "out.jsonl") == read_rows(work / "expected.jsonl")


def test_a_file_where_nothing_converts_is_an_error(tmp_path):
    (tmp_path / "in.jsonl").write_text('{"prompt": "q", "chosen": "", "rejected": "b"}\n')
    done = run_main("convert", "in.jsonl", "--out", "out.jsonl", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == ("in.jsonl: error[nothing-converted]: none of the 1 records converted; "
                                            "out.jsonl not written")
    assert not (tmp_path / "out.jsonl").exists()


def test_a_broken_json_array_stops_with_its_location_and_leaves_no_output(tmp_path):
    (tmp_path / "in.json").write_text('[\n {"prompt": "q", "chosen": "a", "rejected": "b"},\n {"prompt": "q",,}\n]\n')
    done = run_main("convert", "in.json", "--from", "trl", "--out", "out.jsonl", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == ("in.json:3:17: error[invalid-json]: record 1: invalid JSON: Expecting property name "
                           "enclosed in double quotes; out.jsonl not written\n")
    assert not (tmp_path / "out.jsonl").exists() and leftovers(tmp_path) == []


def test_an_existing_output_is_kept_unless_forced(tmp_path):
    work, _ = copy_case("trl-standard", tmp_path)
    (work / "out.jsonl").write_text("mine\n")
    done = run_main("convert", "input.jsonl", "--out", "out.jsonl", cwd=work)
    assert (done.returncode, done.stderr) == (1, ("out.jsonl: error[exists]: the file exists and would be "
                                                 "overwritten (pass --force to overwrite it)\n"))
    assert (work / "out.jsonl").read_text() == "mine\n"
    assert run_main("convert", "input.jsonl", "--out", "out.jsonl", "--force", cwd=work).returncode == 0
    assert (work / "out.jsonl").read_text() == (work / "expected.jsonl").read_text()


def test_the_input_is_never_the_output(tmp_path):
    (tmp_path / "in.jsonl").write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n')
    done = run_main("convert", "in.jsonl", "--out", "in.jsonl", "--force", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (1, ("in.jsonl: error[same-file]: OUT is the input file; write the "
                                                 "converted data to a new file\n"))


def test_paths_with_spaces_work_end_to_end(tmp_path):
    (tmp_path / "my data").mkdir()
    (tmp_path / "my data/in put.jsonl").write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n')
    done = run_main("convert", "my data/in put.jsonl", "--out", "out dir/o k.jsonl", "--register",
                   "out dir/dataset_info.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "out dir/dataset_info.json").read_text())["o k"]["file_name"] == "o k.jsonl"
    assert len(read_rows(tmp_path / "out dir/o k.jsonl")) == 1


def test_parquet_input_converts_like_json_lines(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    work, _ = copy_case("ultrafeedback", tmp_path)
    rows = read_rows(work / "input.jsonl")[:1]
    pq.write_table(pa.Table.from_pylist(rows), work / "input.parquet")
    done = run_main("convert", "input.parquet", "--out", "out.jsonl", cwd=work)
    assert done.returncode == 0, done.stderr
    assert read_rows(work / "out.jsonl") == read_rows(work / "expected.jsonl")[:1]


def train_config(model: Path, stage: str, datasets: list[str]) -> str:
    return (f"model_name_or_path: {model}\nstage: {stage}\ndo_train: true\nfinetuning_type: full\n"
            f"dataset: {','.join(datasets)}\ndataset_dir: data\ntemplate: default\ncutoff_len: 64\n"
            f"preprocessing_num_workers: 1\noutput_dir: runs/{stage}\nlogging_steps: 1\nsave_strategy: 'no'\n"
            "report_to: none\nper_device_train_batch_size: 4\nlearning_rate: 1.0e-3\nmax_steps: 2\nseed: 42\n")


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["dpo", "kto"])
def test_dpo_launch_train_consumes_every_converted_format(stage, tmp_path, tiny_model_dir):
    names, rows = [], 0
    for case in CASE_NAMES:  # every input format, each converted and registered as its own dataset
        source = CASE_DIR / case / next(p.name for p in (CASE_DIR / case).iterdir() if p.name.startswith("input."))
        _, args = copy_case(case, tmp_path / "cases")
        args = [arg for arg in args if arg not in ("--to", "kto")] + (["--to", "kto"] if stage == "kto" else [])
        done = run_cli("convert", source, "--out", f"data/{case}.jsonl", *args, "--register", "data/dataset_info.json",
                       "--name", case, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        names.append(case)
        rows += len(read_rows(tmp_path / f"data/{case}.jsonl"))
    (tmp_path / "train.yaml").write_text(train_config(tiny_model_dir, stage, names))
    done = run_cli("train", "train.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runtime = json.loads((tmp_path / f"runs/{stage}/dpo-launch/runtime.json").read_text())
    assert runtime["loss"]["self_test"] == "passed"
    log = (tmp_path / f"runs/{stage}/dpo-launch/logs/rank-0.log").read_text()
    assert f"Num examples = {rows:,}" in log  # LLaMA-Factory dropped none of the converted rows


def test_register_through_a_symlinked_dataset_info_edits_the_target_with_paths_from_the_links_folder(tmp_path):
    # a dataset_info.json shared between projects, linked into this project's dataset_dir (data/)
    (tmp_path / "common").mkdir()
    (tmp_path / "data").mkdir()
    common = tmp_path / "common" / "dataset_info.json"
    common.write_text('{\n  "old": {\n    "file_name": "old.jsonl"\n  }\n}\n', encoding="utf-8")
    (tmp_path / "data" / "dataset_info.json").symlink_to("../common/dataset_info.json")
    (tmp_path / "in.jsonl").write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n', encoding="utf-8")
    done = run_main("convert", "in.jsonl", "--out", "data/prefs.jsonl", "--register", "data/dataset_info.json",
                    cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "data" / "dataset_info.json").readlink() == Path("../common/dataset_info.json")
    info = json.loads(common.read_text(encoding="utf-8"))
    assert list(info) == ["old", "prefs"]
    # LLaMA-Factory opens os.path.join(dataset_dir, file_name) with dataset_dir = data
    assert info["prefs"]["file_name"] == "prefs.jsonl"
    assert done.stdout.splitlines()[-1] == "registered 'prefs' in data/dataset_info.json (file_name 'prefs.jsonl')"


# ------------------------------------------------------------------ detection that names what would read a record

def test_autotrain_full_conversations_with_a_prompt_list_are_detected_as_ultrafeedback():
    conversation = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    record = {"prompt": conversation[:1], "chosen": conversation,
              "rejected": conversation[:1] + [{"role": "assistant", "content": "Go away"}]}
    assert detect(record) == ("ultrafeedback",
                              "full chosen/rejected conversations, the prompt a message list (AutoTrain)")


def test_a_detected_format_that_cannot_read_the_record_names_the_formats_that_can(tmp_path):
    record = {"conversations": [{"role": "user", "content": "Q"}],
              "chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}],
              "rejected": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "B"}]}
    (tmp_path / "in.jsonl").write_text(json.dumps(record) + "\n")
    done = run_main("convert", "in.jsonl", "--out", "out.jsonl", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.splitlines()[0] == (
        "in.jsonl:1: error[unknown-format]: record 0 looks like 'sharegpt-strings' (conversations with "
        "chosen/rejected), but that reader cannot read it (chosen has 2 messages, expected one assistant message); "
        "it can be read with --from ultrafeedback (pass --from FORMAT, or --map FIELD=COLUMN,... for other column "
        "names; `dpo-launch convert --help` shows the shapes each format accepts)")
    done = run_main("convert", "in.jsonl", "--out", "out.jsonl", "--from", "ultrafeedback", cwd=tmp_path)
    assert done.returncode == 0


def test_a_record_no_rule_matches_names_the_formats_whose_readers_read_it():
    from launcher.convert.converter import readable_formats

    record = {"prompt": "q", "chosen": {"role": "assistant", "content": "a"}, "rejected": {"role": "assistant",
                                                                                    "content": "b"}}
    assert detect(record) is None
    assert readable_formats(record) == ["trl"]


# ------------------------------------------------------------------ --map, --weights, --min-margin

@pytest.mark.parametrize("args, message", [
    (["--map", "promt=question"], "--map: 'promt' is not a field the formats read; expected one of prompt, chosen, "
                                  "rejected, system, messages, conversations, instruction, input, output, history, "
                                  "preferred_output, non_preferred_output, rejected_message, rejected_response, "
                                  "dimensions (did you mean 'prompt'?)"),
    (["--map", "prompt"], "--map: expected NAME=VALUE items separated by commas (e.g. prompt=question) but got "
                          "'prompt'"),
    (["--map", "prompt=a,prompt=b"], "--map: 'prompt' is mapped twice"),
    (["--weights", "helpfulness=high"], "--weights: the weight of 'helpfulness' must be a number but got 'high'"),
    (["--min-margin", "1"], "--min-margin needs --weights (the margin is the weighted preference's)"),
    (["--weights", "a=1", "--min-margin", "-1"], "--min-margin: expected a number >= 0 but got -1.0"),
])
def test_malformed_map_and_weights_are_usage_errors(args, message, tmp_path):
    done = run_main("convert", "in.jsonl", "--out", "out.jsonl", *args, cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, f"dpo-launch: error: {message}\n")


def test_a_mapped_column_the_first_record_lacks_is_an_error_with_a_suggestion(tmp_path):
    (tmp_path / "in.jsonl").write_text('{"question": "q", "good": "a", "bad": "b"}\n')
    done = run_main("convert", "in.jsonl", "--out", "out.jsonl", "--map", "prompt=questoin,chosen=good,rejected=bad",
                    cwd=tmp_path)
    assert (done.returncode, done.stderr) == (1, (
        "in.jsonl:1: error[option-mismatch]: record 0: --map prompt=questoin: the record has no 'questoin' (its keys: "
        "bad, good, question); did you mean 'question'?\n"))
    assert not (tmp_path / "out.jsonl").exists()


def test_a_weighted_dimension_the_first_record_lacks_is_an_error_with_a_suggestion(tmp_path):
    work, _ = copy_case("multi-objective", tmp_path)
    done = run_main("convert", "input.jsonl", "--out", "out.jsonl", "--weights", "helpfullness=1", cwd=work)
    assert (done.returncode, done.stderr.splitlines()[-1]) == (1, (
        "input.jsonl:1: error[option-mismatch]: record 0: --weights helpfullness: the record's dimensions have no "
        "'helpfullness' (they have helpfulness, honesty); did you mean 'helpfulness'?"))


@pytest.mark.parametrize("helpfulness, honesty, min_margin, expected", [
    ((5, 2), (5, 4), 0.0, None), ((3, 3), (1, 5), 0.0, "flipped"), ((4, 3), (3, 5), 0.0, "tied"),
    ((4, 4), (5, 4.5), 0.5, "below margin"), ((4, 4), (5, 4.5), 0.25, None), ((0.1, 0), (0.2, 0.4), 0.0, "tied"),
])
def test_the_weighted_preference_keeps_only_pairs_it_prefers_by_the_margin(helpfulness, honesty, min_margin, expected):
    from launcher.convert.options import ReadOptions, preference

    record = {"dimensions": {"helpfulness": {"chosen": helpfulness[0], "rejected": helpfulness[1]},
                             "honesty": {"chosen": honesty[0], "rejected": honesty[1]}}}
    options = ReadOptions(weights={"helpfulness": 1.0, "honesty": 0.5}, min_margin=min_margin)
    assert preference(record, options) == expected


def test_pairs_that_all_drop_by_weight_say_so_and_write_nothing(tmp_path):
    row = {"prompt": "q", "chosen": "a", "rejected": "b", "dimensions": {"h": {"chosen": 1, "rejected": 2}}}
    (tmp_path / "in.jsonl").write_text(json.dumps(row) + "\n")
    done = run_main("convert", "in.jsonl", "--out", "out.jsonl", "--weights", "h=1", cwd=tmp_path)
    assert (done.returncode, done.stderr.splitlines()[-1]) == (1, (
        "in.jsonl: error[nothing-converted]: none of the 1 records converted (1 dropped by --weights: 1 flipped); "
        "out.jsonl not written"))
