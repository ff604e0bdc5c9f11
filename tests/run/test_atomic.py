"""Atomic writes and `--register`: dataset_info.json keeps its other entries and formatting, and a write
that is interrupted (exception, Ctrl-C, failed rename, SIGKILL) leaves the old file byte for byte."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from launcher.atomic import atomic_write
from launcher.convert.json_edit import JsonEditError, set_member

from support.cli import cli_env, run_main

ENTRY = {"file_name": "x.jsonl", "ranking": True}
LF_STYLE = '{\n  "a": {\n    "file_name": "a.json"\n  },\n  "b": {\n    "file_name": "b.json"\n  }\n}\n'
PAIR = '{"prompt": "q", "chosen": "a", "rejected": "b"}\n'
RANKING_ENTRY = ('{\n    "file_name": "out.jsonl",\n    "formatting": "sharegpt",\n    "ranking": true,\n'
                 '    "columns": {\n      "messages": "conversations",\n      "chosen": "chosen",\n'
                 '      "rejected": "rejected"\n    }\n  }')


@pytest.mark.parametrize("source, expected", [
    (LF_STYLE, LF_STYLE[:-3] + ',\n  "new": {\n    "file_name": "x.jsonl",\n    "ranking": true\n  }\n}\n'),
    ('{\n    "a": {\n        "b": 1\n    }\n}',
     ('{\n    "a": {\n        "b": 1\n    },\n    "new": {\n        "file_name": "x.jsonl",\n        "ranking": true\n'
     '    }\n}')),
    ('{\r\n\t"a": {\r\n\t\t"b": 1\r\n\t}\r\n}\r\n',
     ('{\r\n\t"a": {\r\n\t\t"b": 1\r\n\t},\r\n\t"new": {\r\n\t\t"file_name": "x.jsonl",\r\n'
      '\t\t"ranking": true\r\n\t}\r\n}\r\n')),
    ('{"a": {"b": 1}}', '{"a": {"b": 1}, "new": {"file_name": "x.jsonl", "ranking": true}}'),
    ('{\n  "a": {"b": 1}\n}\n', '{\n  "a": {"b": 1},\n  "new": {"file_name": "x.jsonl", "ranking": true}\n}\n'),
    ('{}\n', '{\n  "new": {\n    "file_name": "x.jsonl",\n    "ranking": true\n  }\n}\n'),
])
def test_a_new_entry_is_appended_in_the_files_own_style(source, expected):
    assert set_member(source, "new", ENTRY) == expected


def test_replacing_an_entry_keeps_its_place_and_every_other_byte():
    assert set_member(LF_STYLE, "a", ENTRY) == LF_STYLE.replace(
        '{\n    "file_name": "a.json"\n  }', '{\n    "file_name": "x.jsonl",\n    "ranking": true\n  }')


def test_unicode_stays_as_the_file_writes_it():
    raw = '{\n  "中文": {\n    "file_name": "zh.json"\n  }\n}\n'
    assert '"file_name": "数据.jsonl"' in set_member(raw, "new", {"file_name": "数据.jsonl"})
    escaped = '{\n  "\\u4e2d": {\n    "file_name": "zh.json"\n  }\n}\n'
    assert '"file_name": "\\u6570\\u636e.jsonl"' in set_member(escaped, "new", {"file_name": "数据.jsonl"})


@pytest.mark.parametrize("source, message, line, column", [
    ('{\n  "a": {"b": 1}\n  "b": {}\n}\n', "invalid JSON: Expecting ',' delimiter", 3, 3),
    ('[1, 2]\n', "expected a JSON object ({...}) at the top level", 1, 1),
])
def test_a_file_that_is_not_a_json_object_is_refused_with_a_location(source, message, line, column):
    with pytest.raises(JsonEditError) as caught:
        set_member(source, "new", ENTRY)
    assert (caught.value.message, caught.value.line, caught.value.column) == (message, line, column)


def test_an_exception_inside_atomic_write_leaves_the_target_and_no_temporary_file(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_bytes(b"old contents\n")
    with pytest.raises(RuntimeError), atomic_write(target) as handle:
        handle.write("half of the new")
        raise RuntimeError("stop")
    assert target.read_bytes() == b"old contents\n"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_atomic_write_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    target = tmp_path / "info.json"
    target.write_text("{}")
    target.chmod(0o640)
    with atomic_write(target) as handle:
        handle.write("{}\n")
    assert target.stat().st_mode & 0o777 == 0o640


# A subprocess registers OUT in dataset_info.json while one step of the write is sabotaged.
SABOTAGE = {
    "rename fails": """
        real_replace = os.replace
        def replace(src, dst, *a, **k):
            if str(dst).endswith("dataset_info.json"):
                raise OSError("injected: rename failed")
            return real_replace(src, dst, *a, **k)
        os.replace = replace
    """,
    "Ctrl-C mid-write": """
        real_fdopen = os.fdopen
        class Half:
            def __init__(self, handle): self.handle = handle
            def __enter__(self): return self
            def __exit__(self, *exc): return self.handle.__exit__(*exc)
            def write(self, text):
                if '"prefs": ' in text:  # the new dataset_info.json text, not a converted row
                    self.handle.write(text[: len(text) // 2]); self.handle.flush()
                    raise KeyboardInterrupt
                return self.handle.write(text)
            def __getattr__(self, name): return getattr(self.handle, name)
        def fdopen(fd, *a, **k): return Half(real_fdopen(fd, *a, **k))
        os.fdopen = fdopen
    """,
}


def sabotaged_register(work: Path, sabotage: str) -> subprocess.CompletedProcess:
    script = "import os, sys\n" + textwrap.dedent(sabotage) + textwrap.dedent("""
        from launcher.cli import main
        sys.exit(main(["convert", "in.jsonl", "--out", "data/out.jsonl", "--register", "data/dataset_info.json",
                       "--name", "prefs"]))
    """)
    return subprocess.run([sys.executable, "-c", script], check=False, cwd=work, env=cli_env(),
                          capture_output=True, text=True)


def lf_workspace(tmp_path: Path) -> tuple[Path, bytes]:
    (tmp_path / "data").mkdir()
    (tmp_path / "in.jsonl").write_text(PAIR)
    (tmp_path / "data/dataset_info.json").write_text(LF_STYLE)
    return tmp_path, LF_STYLE.encode()


@pytest.mark.subprocess
@pytest.mark.parametrize("sabotage", sorted(SABOTAGE))
def test_an_interrupted_registration_leaves_dataset_info_byte_identical(sabotage, tmp_path):
    work, before = lf_workspace(tmp_path)
    done = sabotaged_register(work, SABOTAGE[sabotage])
    expected_error = {"rename fails": "data/dataset_info.json: error[io]: cannot write: injected: rename failed; "
                                      "the file is unchanged", "Ctrl-C mid-write": "dpo-launch: interrupted"}
    assert done.stderr.splitlines()[-1] == expected_error[sabotage]
    assert done.returncode == {"rename fails": 1, "Ctrl-C mid-write": 130}[sabotage]
    assert (work / "data/dataset_info.json").read_bytes() == before
    assert sorted(p.name for p in (work / "data").iterdir()) == ["dataset_info.json", "out.jsonl"]


@pytest.mark.subprocess
def test_a_registration_killed_mid_write_leaves_dataset_info_byte_identical(tmp_path):
    work, before = lf_workspace(tmp_path)
    script = textwrap.dedent("""
        import sys, time
        from pathlib import Path
        from launcher import atomic
        with atomic.atomic_write(Path("data/dataset_info.json")) as handle:
            handle.write('{"half": ')
            handle.flush()
            print("writing", flush=True)
            time.sleep(600)
    """)
    with subprocess.Popen([sys.executable, "-c", script], cwd=work, env=cli_env(), stdout=subprocess.PIPE,
                          text=True) as proc:
        try:
            assert proc.stdout.readline() == "writing\n"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert (work / "data/dataset_info.json").read_bytes() == before
    leftover = [p.name for p in (work / "data").iterdir() if p.name != "dataset_info.json"]
    assert len(leftover) == 1 and leftover[0].startswith(".dataset_info.json.") and leftover[0].endswith(".tmp")


def test_register_appends_the_entry_and_keeps_the_rest_of_the_file(tmp_path):
    work, _ = lf_workspace(tmp_path)
    done = run_main("convert", "in.jsonl", "--out", "data/out.jsonl", "--register", "data/dataset_info.json",
                   cwd=work)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "registered 'out' in data/dataset_info.json (file_name 'out.jsonl')"
    expected = LF_STYLE[:-3] + ',\n  "out": ' + RANKING_ENTRY + "\n}\n"
    assert (work / "data/dataset_info.json").read_text() == expected


def test_an_existing_entry_is_not_replaced_without_force_and_nothing_is_written(tmp_path):
    work, before = lf_workspace(tmp_path)
    done = run_main("convert", "in.jsonl", "--out", "data/out.jsonl", "--register", "data/dataset_info.json",
                   "--name", "b", cwd=work)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == ("data/dataset_info.json:5: error[entry-exists]: 'b' is already defined (file_name "
                           "'b.json') (pass --force to replace it, or choose another --name)\n")
    assert (work / "data/dataset_info.json").read_bytes() == before
    assert not (work / "data/out.jsonl").exists()


def test_force_replaces_an_existing_entry_in_place(tmp_path):
    work, _ = lf_workspace(tmp_path)
    done = run_main("convert", "in.jsonl", "--out", "data/out.jsonl", "--register", "data/dataset_info.json",
                   "--name", "a", "--force", cwd=work)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "replaced 'a' in data/dataset_info.json (file_name 'out.jsonl')"
    assert (work / "data/dataset_info.json").read_text() == LF_STYLE.replace(
        '{\n    "file_name": "a.json"\n  }', RANKING_ENTRY)


def test_registering_the_same_entry_again_changes_nothing(tmp_path):
    work, _ = lf_workspace(tmp_path)
    args = ("convert", "in.jsonl", "--out", "data/out.jsonl", "--register", "data/dataset_info.json")
    run_main(*args, cwd=work)
    after_first = (work / "data/dataset_info.json").read_bytes()
    done = run_main(*args, "--force", cwd=work)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == ("'out' is already registered in data/dataset_info.json with "
                                            "file_name 'out.jsonl'; left unchanged")
    assert (work / "data/dataset_info.json").read_bytes() == after_first


def test_kto_output_is_registered_as_unpaired_data_with_its_label_column(tmp_path):
    (tmp_path / "in.jsonl").write_text(PAIR)
    done = run_main("convert", "in.jsonl", "--to", "kto", "--out", "kto.jsonl", "--register", "data/dataset_info.json",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "created data/dataset_info.json with 'kto' (file_name '../kto.jsonl')"
    assert json.loads((tmp_path / "data/dataset_info.json").read_text()) == {"kto": {
        "file_name": "../kto.jsonl", "formatting": "sharegpt", "ranking": False,
        "columns": {"messages": "conversations", "kto_tag": "label"}}}


def test_a_broken_dataset_info_is_reported_before_anything_is_written(tmp_path):
    work, _ = lf_workspace(tmp_path)
    (work / "data/dataset_info.json").write_text('{\n  "a": {"file_name": "a.json"}\n  "b": {}\n}\n')
    done = run_main("convert", "in.jsonl", "--out", "data/out.jsonl", "--register", "data/dataset_info.json",
                   cwd=work)
    assert (done.returncode, done.stderr) == (1, ("data/dataset_info.json:3:3: error[dataset-info]: cannot add an "
                                                 "entry: invalid JSON: Expecting ',' delimiter\n"))
    assert not (work / "data/out.jsonl").exists()


def test_name_without_register_is_a_usage_error(tmp_path):
    done = run_main("convert", "in.jsonl", "--out", "out.jsonl", "--name", "x", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, ("dpo-launch: error: --name needs --register DATASET_INFO (the "
                                                 "dataset_info.json to add the entry to)\n"))


@pytest.mark.subprocess
def test_convert_imports_no_training_stack(tmp_path):
    (tmp_path / "in.jsonl").write_text(PAIR)
    script = ("import sys; from launcher.cli import main; rc = main(['convert', 'in.jsonl', '--out', 'o.jsonl', "
              "'--register', 'dataset_info.json']); heavy = {'torch', 'transformers', 'deepspeed', 'trl', 'peft', "
              "'tensorboard', 'llamafactory'} & set(sys.modules); print(rc, sorted(heavy))")
    done = subprocess.run([sys.executable, "-c", script], check=False, cwd=tmp_path, env=cli_env(), capture_output=True,
                          text=True)
    assert done.stdout.splitlines()[-1] == "0 []", done.stderr


def test_a_write_through_a_symbolic_link_replaces_its_target_and_keeps_the_link(tmp_path):
    (tmp_path / "target.json").write_text("old\n", encoding="utf-8")
    (tmp_path / "link.json").symlink_to("target.json")
    with atomic_write(tmp_path / "link.json") as handle:
        handle.write("new\n")
    assert (tmp_path / "link.json").is_symlink()
    assert (tmp_path / "target.json").read_text(encoding="utf-8") == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "target.json"]
