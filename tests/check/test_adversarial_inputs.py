"""Hostile files get a clear, located error (exit 1) within 2 s and 500 MB: never a traceback, hang or OOM.

The subprocess runs cap the address space at 500 MB (RLIMIT_AS) and report their peak RSS; wall times are
measured by bench/fuzz_long.py, not asserted here. Decisions documented by these tests:
- a UTF-8 byte-order mark is accepted everywhere (PyYAML, json.load with utf-8-sig and pyarrow all accept it);
- `NaN`/`Infinity` in JSON data are read as pyarrow (LLaMA-Factory's JSON Lines loader) reads them, so only a
  field that must be a string is reported; `.nan`/`NaN` in a config value is a range error;
- duplicate keys: an error in a YAML or JSON config (OmegaConf refuses them), a warning in dataset_info.json
  (json.load keeps the last); in data records the last value wins silently, as orjson, json and pandas read it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.check.data import jsonstream
from launcher.check.diagnostics import ERROR
from launcher.check.validation import validate
from launcher.check.yaml_loader import MAX_EXPANDED_VALUES, MAX_NESTING

from support.cli import REPO

MEMORY_CAP = 500 << 20
GOOD = {"conversations": [{"from": "human", "value": "What is 2+2?"}],
        "chosen": {"from": "gpt", "value": "4"}, "rejected": {"from": "gpt", "value": "5"}}
CONFIG = """model_name_or_path: Qwen/Qwen2.5-0.5B
stage: dpo
do_train: true
finetuning_type: lora
dataset: prefs
template: default
output_dir: out
report_to: tensorboard
learning_rate: 5.0e-6
"""
INFO = {"prefs": {"file_name": "prefs.jsonl", "formatting": "sharegpt", "ranking": True,
                  "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}}}


def make_workspace(root: Path, records: int = 3) -> Path:
    """A valid config, data/dataset_info.json and data/prefs.jsonl under root."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "c.yaml").write_text(CONFIG, encoding="utf-8")
    (root / "data" / "dataset_info.json").write_text(json.dumps(INFO, indent=2), encoding="utf-8")
    (root / "data" / "prefs.jsonl").write_text("".join(json.dumps(GOOD) + "\n" for _ in range(records)),
                                              encoding="utf-8")
    return root


def run_capped(root: Path, *args: str, setup: str = "") -> tuple[int, str, int]:
    """`dpo-launch ARGS` in a child limited to 500 MB of address space: (exit code, output, peak RSS bytes)."""
    code = ("import resource, sys\n"
            # VmHWM starts afresh at exec; ru_maxrss would keep the forking parent's (pytest's) peak.
            "def peak_rss_kb():\n"
            "    for row in open('/proc/self/status'):\n"
            "        if row.startswith('VmHWM:'):\n"
            "            return int(row.split()[1])\n"
            "    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            f"resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_CAP}, {MEMORY_CAP}))\n"
            f"{setup}\n"
            "from launcher.cli import main\n"
            "rc = main(sys.argv[1:])\n"
            "print(f'PEAK_RSS_KB={peak_rss_kb()}', file=sys.stderr)\n"
            "sys.exit(rc)\n")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=root, capture_output=True, text=True,
                          timeout=120, env=env)
    output = done.stdout + done.stderr
    peak = [line for line in done.stderr.splitlines() if line.startswith("PEAK_RSS_KB=")]
    return done.returncode, output, int(peak[0].split("=")[1]) * 1024 if peak else -1


def assert_clean_failure(rc: int, output: str, peak: int, expected: str) -> None:
    assert "Traceback" not in output and "internal error" not in output, output
    assert rc == 1, output
    assert expected in output, output
    assert 0 < peak < MEMORY_CAP


def errors_of(root: Path, config: str = "c.yaml") -> list:
    result = validate(root / config, cwd=root)
    return [d for d in result.diagnostics if d.severity == ERROR]


def alias_bomb(levels: int = 9, fanout: int = 10) -> str:
    lines = [CONFIG.rstrip(), 'lora_target: &a0 ["q_proj"' + ', "q_proj"' * (fanout - 1) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fanout) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines + [f"additional_target: *a{levels}"]) + "\n"


# ---------------------------------------------------------------- config files

@pytest.mark.subprocess
def test_yaml_alias_bomb_is_refused_before_anything_expands_it(tmp_path):
    root = make_workspace(tmp_path)
    (root / "bomb.yaml").write_text(alias_bomb(), encoding="utf-8")
    rc, output, peak = run_capped(root, "validate", "bomb.yaml")
    assert_clean_failure(rc, output, peak, f"bomb.yaml:1:1: error[yaml-aliases]: YAML aliases expand to more than "
                         f"{MAX_EXPANDED_VALUES:,} values (an alias bomb?)")


def test_small_aliases_still_load_as_omegaconf_reads_them(tmp_path):
    root = make_workspace(tmp_path)
    (root / "c.yaml").write_text(CONFIG + "eval_dataset: &d prefs\nlora_target: *d\n", encoding="utf-8")
    assert validate(root / "c.yaml", cwd=root, check_data=False).config.values["lora_target"] == "prefs"


def test_ten_thousand_plain_values_without_aliases_are_not_an_alias_bomb(tmp_path):
    # 10,000 list items plus the config's own values: more than MAX_EXPANDED_VALUES nodes, but no alias adds any
    root = make_workspace(tmp_path)
    items = ", ".join(f"m{i}" for i in range(MAX_EXPANDED_VALUES))
    (root / "c.yaml").write_text(CONFIG + f"lora_target: [{items}]\n", encoding="utf-8")
    result = validate(root / "c.yaml", cwd=root, check_data=False)
    assert [d.code for d in result.diagnostics if d.code == "yaml-aliases"] == []
    assert len(result.config.values["lora_target"]) == MAX_EXPANDED_VALUES


@pytest.mark.parametrize("uses, refused", [(98, False), (99, True)])
def test_only_the_values_aliases_add_count_towards_the_limit(tmp_path, uses, refused):
    # an anchored list of 101 names is 102 nodes and each alias of it adds 102 values: 98 aliases add 9,996
    # (allowed, although the file then expands to over 10,000 values), 99 add 10,098 (refused)
    root = make_workspace(tmp_path)
    anchored = "x: &big [" + ", ".join(f"m{i}" for i in range(101)) + "]\n"
    aliases = "y: [" + ", ".join(["*big"] * uses) + "]\n"
    (root / "c.yaml").write_text(CONFIG + anchored + aliases, encoding="utf-8")
    codes = [d.code for d in validate(root / "c.yaml", cwd=root, check_data=False).diagnostics]
    assert ("yaml-aliases" in codes) == refused


@pytest.mark.parametrize("text, anchor", [("lora_target: &a [*a]\n", "a"), ("quantization_bit: &m {x: *m}\n", "m")])
def test_recursive_yaml_alias_is_a_located_error(tmp_path, text, anchor):
    root = make_workspace(tmp_path)
    (root / "c.yaml").write_text(CONFIG + text, encoding="utf-8")
    [error] = errors_of(root)
    assert (error.code, error.line) == ("yaml-syntax", 10)
    assert error.message == f"invalid YAML: alias *{anchor} is used inside its own anchor &{anchor}"


@pytest.mark.parametrize("name, text", [
    ("flow.yaml", "lora_target: " + "[" * 10_000 + "]" * 10_000 + "\n"),
    ("block.yaml", "".join(" " * depth + "k:\n" for depth in range(2_000))),
])
@pytest.mark.subprocess
def test_ten_thousand_deep_yaml_is_a_located_error(tmp_path, name, text):
    root = make_workspace(tmp_path)
    (root / name).write_text(text, encoding="utf-8")
    rc, output, peak = run_capped(root, "validate", name)
    assert_clean_failure(rc, output, peak,
                         f"error[yaml-syntax]: invalid YAML: nesting deeper than {MAX_NESTING} levels")


@pytest.mark.subprocess
def test_ten_thousand_deep_json_config_is_an_error(tmp_path):
    root = make_workspace(tmp_path)
    (root / "deep.json").write_text('{"lora_target": ' + "[" * 10_000 + "]" * 10_000 + "}", encoding="utf-8")
    rc, output, peak = run_capped(root, "validate", "deep.json")
    assert_clean_failure(rc, output, peak, "deep.json: error[json-syntax]: JSON nesting is too deep to be a config")


def test_invalid_utf8_config_names_the_byte(tmp_path):
    root = make_workspace(tmp_path)
    (root / "c.yaml").write_bytes(b"stage: dpo\ntemplate: \xff\n")
    [error] = errors_of(root)
    assert error.render() == (f"{root / 'c.yaml'}: error[config-unreadable]: config is not valid UTF-8 "
                              "(byte 21: b'\\xff') (save the file as UTF-8)")


def test_byte_order_mark_config_is_accepted(tmp_path):
    root = make_workspace(tmp_path)
    (root / "c.yaml").write_bytes(b"\xef\xbb\xbf" + CONFIG.encode())
    assert validate(root / "c.yaml", cwd=root).ok


@pytest.mark.parametrize("name, text", [("nan.yaml", CONFIG + "pref_beta: .nan\n"),
                                        ("nan.json", json.dumps({"stage": "dpo"})[:-1] + ', "pref_beta": NaN}')])
def test_nan_in_a_config_value_is_a_range_error(tmp_path, name, text):
    root = make_workspace(tmp_path)
    (root / name).write_text(text, encoding="utf-8")
    messages = [d.message for d in errors_of(root, name)]
    assert "pref_beta: expected a finite number but got .nan" in messages


@pytest.mark.parametrize("name, text, expected", [
    ("dup.yaml", CONFIG + "stage: kto\n", "invalid YAML: while constructing a mapping found duplicate key stage"),
    ("dup.json", '{"stage": "dpo", "stage": "kto"}', "duplicate key 'stage'"),
])
def test_duplicate_config_keys_are_errors_as_in_omegaconf(tmp_path, name, text, expected):
    root = make_workspace(tmp_path)
    (root / name).write_text(text, encoding="utf-8")
    assert [d.message for d in errors_of(root, name)] == [expected]


def test_empty_config_is_an_error(tmp_path):
    root = make_workspace(tmp_path)
    (root / "c.yaml").write_text("", encoding="utf-8")
    assert [d.code for d in errors_of(root)] == ["config-empty"]


@pytest.mark.subprocess
def test_directory_given_as_the_config_is_an_error(tmp_path):
    root = make_workspace(tmp_path)
    (root / "dir.yaml").mkdir()
    rc, output, peak = run_capped(root, "validate", "dir.yaml")
    assert_clean_failure(rc, output, peak, "dir.yaml: error[config-unreadable]: expected a YAML or JSON config file "
                         "but got a directory: dir.yaml")


def test_config_that_is_a_symlink_loop_is_named_as_such(tmp_path):
    root = make_workspace(tmp_path)
    (root / "loop.yaml").symlink_to("loop.yaml")
    [error] = errors_of(root, "loop.yaml")
    assert error.message == ("config path is a symbolic link that leads nowhere (a loop, or its target is missing): "
                             f"{root / 'loop.yaml'}")


# ---------------------------------------------------------------- dataset_info.json

def info_errors(root: Path, content: bytes | None) -> list:
    info = root / "data" / "dataset_info.json"
    info.unlink()
    if content is not None:
        info.write_bytes(content)
    return [d.render() for d in validate(root / "c.yaml", cwd=root).diagnostics if d.severity == ERROR]


def test_deep_dataset_info_is_a_json_error(tmp_path):
    root = make_workspace(tmp_path)
    assert info_errors(root, b'{"x": ' + b"[" * 10_000 + b"]" * 10_000 + b"}") == [
        "data/dataset_info.json:1:1: error[json-syntax]: invalid JSON: nested too deeply "
        "(more than about 1,000 levels)"]


def test_empty_dataset_info_is_a_json_error(tmp_path):
    assert info_errors(make_workspace(tmp_path), b"") == [
        "data/dataset_info.json:1:1: error[json-syntax]: invalid JSON: Expecting value"]


def test_invalid_utf8_dataset_info_is_an_error(tmp_path):
    assert info_errors(make_workspace(tmp_path), b'{"prefs": {"file_name": "\xff"}}') == [
        "data/dataset_info.json: error[json-syntax]: data/dataset_info.json is not valid UTF-8 (invalid start byte)"]


def test_dataset_info_directory_and_symlink_loop_are_errors(tmp_path):
    root = make_workspace(tmp_path)
    info = root / "data" / "dataset_info.json"
    info.unlink()
    info.mkdir()
    assert [d.code for d in errors_of(root)] == ["dataset-info-missing"]
    info.rmdir()
    info.symlink_to("dataset_info.json")
    [error] = errors_of(root)
    assert "Too many levels of symbolic links" in error.message


def test_byte_order_mark_dataset_info_is_accepted(tmp_path):
    root = make_workspace(tmp_path)
    assert info_errors(root, b"\xef\xbb\xbf" + json.dumps(INFO).encode()) == []


def test_duplicate_key_in_dataset_info_is_a_warning_at_the_kept_one(tmp_path):
    root = make_workspace(tmp_path)
    entry = json.dumps(INFO["prefs"])[1:]
    (root / "data" / "dataset_info.json").write_text('{"prefs": {"file_name": "missing.jsonl",\n' + entry + "}",
                                                     encoding="utf-8")
    found = [d for d in validate(root / "c.yaml", cwd=root).diagnostics if d.code == "duplicate-key"]
    assert [d.render() for d in found] == [
        "data/dataset_info.json:2:1: warning[duplicate-key]: duplicate key 'file_name': LLaMA-Factory's json.load "
        "silently keeps this last one (keep one of them)"]


# ---------------------------------------------------------------- data files

def data_diagnostics(root: Path, content: bytes) -> list[str]:
    (root / "data" / "prefs.jsonl").write_bytes(content)
    return [d.render() for d in validate(root / "c.yaml", cwd=root).diagnostics if d.file == "data/prefs.jsonl"]


def line(record: dict) -> bytes:
    return json.dumps(record).encode() + b"\n"


@pytest.mark.subprocess
def test_one_gigabyte_line_is_refused_without_reading_it(tmp_path):
    root = make_workspace(tmp_path)
    with open(root / "data" / "prefs.jsonl", "wb") as handle:  # sparse: costs no disk
        handle.write(b'{"conversations": "')
        handle.truncate(1 << 30)
    rc, output, peak = run_capped(root, "validate", "c.yaml")
    assert_clean_failure(rc, output, peak, "data/prefs.jsonl:1: error[json-syntax]: record larger than 64 MiB (the "
                         "most dpo-launch reads); a line this long is not one training example")
    assert peak < (jsonstream.MAX_RECORD_BYTES * 3)


@pytest.mark.subprocess
def test_oversized_json_array_record_is_refused_at_the_cap(tmp_path):
    root = make_workspace(tmp_path)
    (root / "data" / "prefs.jsonl").write_text('[{"conversations": "' + "a" * (8 << 20), encoding="utf-8")
    rc, output, peak = run_capped(root, "validate", "c.yaml",
                                  setup="import launcher.check.data.jsonstream as j; j.MAX_RECORD_BYTES = 1 << 20")
    assert_clean_failure(rc, output, peak, "data/prefs.jsonl:1:2: error[json-syntax]: record larger than 1 MiB")


def test_record_cap_is_a_constant_the_line_reader_honours(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonstream, "MAX_RECORD_BYTES", 100)
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n' + b'{"a": "' + b"x" * 200 + b'"}\n' + b'{"a": 2}\n')
    assert list(jsonstream.iter_json_lines(path)) == [
        (0, 1, {"a": 1}),
        (1, 2, jsonstream.SyntaxProblem("record larger than 100 bytes (the most dpo-launch reads); a line this "
                                        "long is not one training example", 2, fatal=True))]


@pytest.mark.parametrize("content, expected", [
    (line(GOOD) + b'{"conversations": ' + b"[" * 10_000 + b"]" * 10_000 + b"}\n",
     "data/prefs.jsonl:2: error[json-syntax]: invalid JSON: nested too deeply (more than about 1,000 levels)"),
    (b"[" + line(GOOD) + b', {"conversations": ' + b"[" * 10_000 + b"]" * 10_000 + b"}]",
     "data/prefs.jsonl:2:3: error[json-syntax]: invalid JSON: nested too deeply (more than about 1,000 levels)"),
])
def test_ten_thousand_deep_record_is_a_syntax_error(tmp_path, content, expected):
    found = data_diagnostics(make_workspace(tmp_path), content)
    assert found[0].startswith(expected), found


@pytest.mark.subprocess
def test_deep_record_subprocess_exits_one(tmp_path):
    root = make_workspace(tmp_path)
    (root / "data" / "prefs.jsonl").write_bytes(b'{"conversations": ' + b"[" * 10_000 + b"]" * 10_000 + b"}\n")
    rc, output, peak = run_capped(root, "validate", "c.yaml")
    assert_clean_failure(rc, output, peak, "nested too deeply")


@pytest.mark.parametrize("content, expected", [
    (line(GOOD) + b'{"conversations": [{"from": "human", "value": "\xff"}]}\n',
     "data/prefs.jsonl:2: error[json-syntax]: invalid UTF-8 (byte 47 of the line)"),
    (b'[{"conversations": "\xff"}]', "data/prefs.jsonl: error[json-syntax]: invalid UTF-8 before the first record "
                                     "ends (invalid start byte)"),
])
def test_invalid_utf8_data_is_a_syntax_error(tmp_path, content, expected):
    assert data_diagnostics(make_workspace(tmp_path), content)[0].startswith(expected)


@pytest.mark.parametrize("content", [b"\xef\xbb\xbf" + line(GOOD) * 2, b"\xef\xbb\xbf[" + line(GOOD) + b"]"])
def test_byte_order_mark_data_is_accepted(tmp_path, content):
    found = data_diagnostics(make_workspace(tmp_path), content)
    assert found[-1].startswith("data/prefs.jsonl: note[data-summary]: ")
    assert not [d for d in found if "error" in d]


def test_nan_and_infinity_in_data_are_read_as_pyarrow_reads_them(tmp_path):
    extra = line(GOOD)[:-2] + b', "score": NaN, "low": -Infinity, "high": Infinity}\n'
    bad = line(GOOD).replace(b'"4"', b"NaN")
    assert data_diagnostics(make_workspace(tmp_path), extra + bad) == [
        "data/prefs.jsonl:2: error[value-type]: record 1: chosen.value must be a string but got a number (nan)",
        "data/prefs.jsonl: note[data-summary]: 2 records checked, 0 would be dropped by LLaMA-Factory, "
        "1 would crash it"]


def test_a_duplicate_key_in_a_json_lines_record_is_an_error_as_pyarrow_refuses_the_file(tmp_path):
    # orjson would keep the last value silently; LF's reader (pyarrow) fails the whole dataset on it
    record = line(GOOD)[:-2] + b', "chosen": {"from": "gpt", "value": "5"}}\n'
    found = data_diagnostics(make_workspace(tmp_path), line(GOOD) + record)
    assert found[0] == ("data/prefs.jsonl:2: error[duplicate-key]: key 'chosen' appears twice in one object; "
                        "pyarrow, LLaMA-Factory's JSON Lines reader, refuses the whole file (\"Column(...) was "
                        "specified twice\") (keep one 'chosen' in that object)")


def test_empty_data_file_is_an_error_at_the_entry(tmp_path):
    root = make_workspace(tmp_path)
    data_diagnostics(root, b"")
    errors = [d.render() for d in errors_of(root)]
    assert errors == ["data/dataset_info.json:3:18: error[dataset-empty]: entry 'prefs': data/prefs.jsonl holds no "
                      "records; LLaMA-Factory cannot train on an empty dataset"]


@pytest.mark.subprocess
def test_data_path_that_is_an_empty_directory_is_an_error(tmp_path):
    root = make_workspace(tmp_path)
    (root / "data" / "prefs.jsonl").unlink()
    (root / "data" / "prefs.jsonl").mkdir()
    rc, output, peak = run_capped(root, "validate", "c.yaml")
    assert_clean_failure(rc, output, peak, "error[dataset-file]: entry 'prefs': folder data/prefs.jsonl is empty; "
                         "LLaMA-Factory crashes with IndexError")


@pytest.mark.subprocess
@pytest.mark.parametrize("target", ["prefs.jsonl", "other.jsonl"])
def test_data_file_that_is_a_symlink_loop_is_named_as_such(tmp_path, target):
    root = make_workspace(tmp_path)
    data = root / "data"
    (data / "prefs.jsonl").unlink()
    (data / "prefs.jsonl").symlink_to(target)
    if target != "prefs.jsonl":
        (data / target).symlink_to("prefs.jsonl")
    rc, output, peak = run_capped(root, "validate", "c.yaml")
    assert_clean_failure(rc, output, peak, "data/dataset_info.json:3:18: error[dataset-file]: entry 'prefs': "
                         "data/prefs.jsonl is a symbolic link that leads nowhere (a loop, or its target is missing)")


def dataset_file_errors(root: Path) -> list[str]:
    return [d.render() for d in errors_of(root) if d.code == "dataset-file"]


def test_a_fifo_as_the_data_file_is_not_a_regular_file_and_is_never_opened(tmp_path):
    root = make_workspace(tmp_path)
    (root / "data" / "prefs.jsonl").unlink()
    os.mkfifo(root / "data" / "prefs.jsonl")  # opening it for reading would block
    assert dataset_file_errors(root) == [
        "data/dataset_info.json:3:18: error[dataset-file]: entry 'prefs': data/prefs.jsonl is a FIFO (named pipe), "
        "not a regular file (LLaMA-Factory: 'File data/prefs.jsonl not found.') (file_name must name a data file "
        "or a folder of them)"]


def test_dev_zero_as_the_data_file_is_a_character_device_not_a_missing_file(tmp_path):
    root = make_workspace(tmp_path)
    info = {"prefs": {**INFO["prefs"], "file_name": "/dev/zero"}}
    (root / "data" / "dataset_info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    assert dataset_file_errors(root) == [
        "data/dataset_info.json:3:18: error[dataset-file]: entry 'prefs': /dev/zero is a character device, not a "
        "regular file (LLaMA-Factory: 'File /dev/zero not found.') (file_name must name a data file or a folder "
        "of them)"]


def test_a_fifo_inside_a_data_folder_is_named_and_never_opened(tmp_path):
    root = make_workspace(tmp_path)
    (root / "data" / "prefs.jsonl").unlink()
    (root / "data" / "prefs.jsonl").mkdir()
    (root / "data" / "prefs.jsonl" / "a.jsonl").write_text(json.dumps(GOOD) + "\n", encoding="utf-8")
    os.mkfifo(root / "data" / "prefs.jsonl" / "b.jsonl")
    assert dataset_file_errors(root) == [
        "data/dataset_info.json:3:18: error[dataset-file]: entry 'prefs': data/prefs.jsonl/b.jsonl is a FIFO (named "
        "pipe), not a regular file"]


# ---------------------------------------------------------------- regressions found by tests/test_fuzz_validate.py

def test_control_character_in_a_yaml_config_is_a_located_error(tmp_path):
    root = make_workspace(tmp_path)
    (root / "c.yaml").write_text(CONFIG + "template: de\x00fault\n", encoding="utf-8")
    [error] = errors_of(root)
    assert error.render() == (f"{root / 'c.yaml'}:10:13: error[yaml-syntax]: invalid YAML: character 0x0000 is not "
                              "allowed in YAML (delete it; YAML allows tabs and newlines but no other control "
                              "characters)")


def test_stage_of_the_wrong_type_is_a_schema_error_not_a_crash(tmp_path):
    root = make_workspace(tmp_path)
    (root / "c.yaml").write_text(CONFIG.replace("stage: dpo", "stage: []"), encoding="utf-8")
    assert [(d.code, d.line) for d in errors_of(root)] == [("stage", 2)]


@pytest.mark.parametrize("key, spelled", [("?", "null"), ("~", "null"), ("true", "True"), ("0x10", "16")])
def test_non_string_top_level_keys_are_located(tmp_path, key, spelled):
    root = make_workspace(tmp_path)
    (root / "c.yaml").write_text(CONFIG + (f"{key}\n" if key == "?" else f"{key}: 1\n"), encoding="utf-8")
    [error] = errors_of(root)
    assert (error.code, error.line, error.path) == ("unknown-key", 10, spelled)


def test_a_dataset_dir_name_too_long_for_the_filesystem_is_reported(tmp_path):
    root = make_workspace(tmp_path)
    (root / "c.yaml").write_text(CONFIG + "dataset_dir: " + "a" * 300 + "\n", encoding="utf-8")
    [error] = errors_of(root)
    assert (error.code, error.line) == ("dataset-dir-missing", 10)


def test_a_config_path_too_long_for_the_filesystem_is_reported(tmp_path):
    [error] = errors_of(make_workspace(tmp_path), "a" * 300 + ".yaml")
    assert error.message == "cannot read config: File name too long"


def test_raw_control_character_in_a_json_array_string_is_explained(tmp_path):
    found = data_diagnostics(make_workspace(tmp_path), b'[{"conversations": "a\tb"}]')
    assert found[0] == ("data/prefs.jsonl:1:22: error[json-syntax]: invalid JSON: a control character (a byte below "
                        "0x20, e.g. a raw tab or NUL) inside a string; escape it (nothing after this point can be "
                        "read; fix the JSON and run again)")
