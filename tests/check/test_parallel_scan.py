"""Checking a JSON Lines file in several processes (launcher.check.data.scan) reports exactly what checking it in
one does: the same diagnostics, in the same order, with the same record indexes, lines and columns, the same
counts and the same file-wide advice. The file here is dense with defects of every kind (syntax errors, repeated
keys, a BOM at the start and one in the middle, two values on a line, CRLF line ends, blank lines, NaN, invalid
UTF-8, records LLaMA-Factory drops or crashes on), so any cut between spans falls next to one; one test cuts the
file at every line start in turn."""

from __future__ import annotations

import json
import os
import random
import time

import pytest

from launcher.check.data import scan
from launcher.check.data.files import DataFile
from launcher.check.data.jsonstream import BOM
from launcher.check.data.records import RecordChecker
from launcher.check.data.verdicts import Attr

from support.cli import run_main

ENTRY = {"file_name": "prefs.jsonl", "formatting": "sharegpt", "ranking": True,
         "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}}
CONFIG = """\
model_name_or_path: Qwen/Qwen2.5-0.5B-Instruct
stage: dpo
do_train: true
finetuning_type: lora
dataset: prefs
dataset_dir: data
template: qwen
output_dir: out
report_to: tensorboard
"""
WORDS = "alpha beta gamma delta: epsilon zeta <eta> [theta] iota kappa".split()


def record(rng: random.Random) -> dict:
    def text() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 30)))

    return {"conversations": [{"from": "human", "value": text()}], "chosen": {"from": "gpt", "value": text()},
            "rejected": {"from": "gpt", "value": text()}}


def defective_lines(count: int, seed: int = 0) -> list[bytes]:
    """`count` lines (their end included), about one in three with a defect, the first with a BOM."""
    rng = random.Random(seed)
    lines = []
    for number in range(count):
        rec = record(rng)
        kind = rng.randrange(14) if number else 0
        if kind == 1:
            rec["rejected"] = dict(rec["chosen"])  # LF drops it
        elif kind == 2:
            rec["conversations"][0]["from"] = "gpt"  # starts on the assistant
        elif kind == 3:
            del rec["chosen"]
        elif kind == 4:
            rec["conversations"][0]["value"] = "<|im_start|>user\nhi<|im_end|>"  # already templated
        line = json.dumps(rec).encode()
        if kind == 5:
            line = line[:-1]  # a syntax error
        elif kind == 6:
            line = line[:-1] + b', "chosen": {"from": "gpt", "value": "again: twice"}}'  # a repeated key
        elif kind == 7:
            line = b""  # a blank line
        elif kind == 8:
            line = b'{"conversations": NaN}'  # parsed by the stdlib, as pyarrow does
        elif kind == 9:
            line = line.replace(b"alpha", b"\xff", 1) if b"alpha" in line else b"\xfe"  # invalid UTF-8
        elif kind == 10:
            line = b"[1, 2]"  # not an object
        elif kind == 12:
            line = BOM + line  # a BOM is only skipped at the file's start (two files joined)
        elif kind == 13:
            line = line + b" {}"  # two values: worded "more than one value" on the file's first line only
        lines.append((BOM if number == 0 else b"") + line + (b"\r\n" if kind in (0, 11) else b"\n"))
    return lines


def checker() -> RecordChecker:
    return RecordChecker(Attr.from_entry(ENTRY), "pairwise")


def results(data_file: DataFile, ck: RecordChecker, findings: list) -> tuple:
    found, stats, tally = scan._merge(findings, ck, data_file.display)
    return ([vars(d) for d in found], stats.as_dict(),
            {shape: vars(seen) for shape, seen in tally.shapes.items()}, tally.record_keys,
            ck.roles_seen, ck.message_keys)


@pytest.fixture
def data_file(tmp_path) -> DataFile:
    path = tmp_path / "prefs.jsonl"
    path.write_bytes(b"".join(defective_lines(60)))
    return DataFile(path, "data/prefs.jsonl", "json")


def test_the_file_holds_every_kind_of_defect(data_file):
    found, stats, _ = scan.scan_file(data_file, checker())
    codes = {d.code for d in found}
    assert {"json-syntax", "duplicate-key", "identical-pair", "missing-column", "record-type"} <= codes, codes
    assert stats.unparsable and stats.dropped and stats.crash
    assert data_file.path.read_bytes().startswith(BOM) and b"\r\n" in data_file.path.read_bytes()


def test_cutting_the_file_at_any_line_start_merges_to_what_one_span_finds(data_file):
    whole = checker()
    expected = results(data_file, whole, [scan.scan_span(data_file, whole)])
    size = data_file.path.stat().st_size
    starts, offset = [], 0
    for line in data_file.path.read_bytes().splitlines(keepends=True)[:-1]:
        offset += len(line)
        starts.append(offset)
    for cut in starts:
        ck = checker()
        ck.start_file()
        spans = [(0, cut), (cut, size)]
        parts = [scan.scan_span(data_file, checker() if i else ck, span) for i, span in enumerate(spans)]
        assert results(data_file, ck, parts) == expected, f"cut at byte {cut}"


WORKER_WAYS = ["forks", "pool"]  # os.fork while this process has one thread, else a forkserver process pool


@pytest.mark.subprocess
@pytest.mark.parametrize("way", WORKER_WAYS)
@pytest.mark.parametrize("jobs", [2, 3])
def test_workers_report_what_one_process_reports(data_file, monkeypatch, tmp_path, jobs, way):
    one = checker()
    found, stats, tally = scan.scan_file(data_file, one, jobs=1)
    monkeypatch.setattr(scan, "MIN_SPAN_BYTES", 256)
    monkeypatch.setattr(scan, "_in_workers", getattr(scan, f"_in_{way}"))
    spans = scan.line_spans(data_file, jobs * scan.SPANS_PER_JOB)
    size = data_file.path.stat().st_size
    assert len(spans) == min(jobs * scan.SPANS_PER_JOB, size // 256) > jobs
    content = data_file.path.read_bytes()
    nominal = [size * k // len(spans) for k in range(1, len(spans))]
    assert any(content[n - 1:n] != b"\n" for n in nominal), "a cut falls inside a record and moves to its end"
    parent, taken = os.getpid(), tmp_path / "taken"
    if way == "forks":  # (a pool's workers import this module afresh: there, this process checks no span)
        monkeypatch.setattr(scan, "scan_span", taking_slowly(parent, taken, parent_delay=0.01, worker_delay=0))
    many = checker()
    found_n, stats_n, tally_n = scan.scan_file(data_file, many, jobs=jobs)
    if way == "forks":  # the workers did check spans, so their findings were merged
        takers = [pid for pid, _ in (line.split() for line in taken.read_text(encoding="utf-8").splitlines())]
        assert len(takers) == len(spans) and set(takers) - {str(parent)}
    assert [vars(d) for d in found_n] == [vars(d) for d in found]
    assert stats_n.as_dict() == stats.as_dict()
    assert {k: vars(v) for k, v in tally_n.shapes.items()} == {k: vars(v) for k, v in tally.shapes.items()}
    assert (many.roles_seen, many.message_keys) == (one.roles_seen, one.message_keys)


@pytest.mark.subprocess
def test_validate_gives_the_same_diagnostics_for_jobs_1_2_and_3(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset_info.json").write_text(json.dumps({"prefs": ENTRY}))
    lines = defective_lines(400, seed=1)
    lines[0] = BOM + json.dumps(record(random.Random(2))).encode() + b"\r\n"
    (tmp_path / "data" / "prefs.jsonl").write_bytes(b"".join(lines))
    (tmp_path / "config.yaml").write_text(CONFIG)
    monkeypatch.setattr(scan, "MIN_SPAN_BYTES", 4096)
    outputs = {jobs: run_main("validate", "config.yaml", "--format", "json", "--jobs", jobs, cwd=tmp_path)
               for jobs in (1, 2, 3)}
    assert {result.returncode for result in outputs.values()} == {1}
    reports = {jobs: json.loads(result.stdout) for jobs, result in outputs.items()}
    assert reports[1]["diagnostics"] == reports[2]["diagnostics"] == reports[3]["diagnostics"]
    assert reports[1]["summary"] == reports[2]["summary"] == reports[3]["summary"]
    assert len([d for d in reports[1]["diagnostics"] if d["severity"] == "error"]) > 100


def taking_slowly(parent: int, taken, parent_delay: float, worker_delay: float):
    """scan.scan_span, logging which process took which span, and slowed: in a worker as if another program
    shared its core, in this process so that the workers have started before it has taken every span."""
    check_span = scan.scan_span

    def check(data_file, checker, span=None):
        time.sleep(worker_delay if os.getpid() != parent else parent_delay)
        with open(taken, "a", encoding="utf-8") as log:  # one short append per span: whole lines
            log.write(f"{os.getpid()} {span[0] if span else None}\n")
        return check_span(data_file, checker, span)

    return check


def dying_worker(job: tuple) -> None:
    if started := os.environ.get("TEST_DYING_WORKER_STARTED"):
        open(started, "w").close()
    os._exit(1)  # as a worker the kernel killed for memory


@pytest.mark.subprocess
@pytest.mark.parametrize("way", WORKER_WAYS)
def test_when_a_worker_dies_this_process_checks_the_file_itself_with_the_same_result(data_file, monkeypatch, tmp_path,
                                                                                     way):
    found, stats, _ = scan.scan_file(data_file, checker(), jobs=1)
    monkeypatch.setattr(scan, "MIN_SPAN_BYTES", 256)
    monkeypatch.setattr(scan, "_scan_span_job", dying_worker)
    monkeypatch.setattr(scan, "_in_workers", getattr(scan, f"_in_{way}"))
    if way == "forks":  # this process waits until the worker has taken a span, or it could take them all first
        started = tmp_path / "worker-started"
        monkeypatch.setenv("TEST_DYING_WORKER_STARTED", str(started))
        check_span = scan.scan_span

        def after_a_worker_started(*args):
            deadline = time.monotonic() + 30
            while not started.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            return check_span(*args)

        monkeypatch.setattr(scan, "scan_span", after_a_worker_started)
    assert scan._in_workers(data_file, checker(), scan.line_spans(data_file, 2), 2) is None
    found_2, stats_2, _ = scan.scan_file(data_file, checker(), jobs=2)
    assert ([vars(d) for d in found_2], stats_2.as_dict()) == ([vars(d) for d in found], stats.as_dict())


@pytest.mark.subprocess
def test_each_process_takes_the_next_span_so_a_slowed_worker_checks_fewer_and_the_result_is_the_same(
        data_file, monkeypatch, tmp_path):
    found, stats, _ = scan.scan_file(data_file, checker(), jobs=1)
    parent, taken = os.getpid(), tmp_path / "taken"
    monkeypatch.setattr(scan, "MIN_SPAN_BYTES", 256)
    monkeypatch.setattr(scan, "scan_span", taking_slowly(parent, taken, parent_delay=0.02, worker_delay=0.2))
    monkeypatch.setattr(scan, "_in_workers", scan._in_forks)  # whatever threads earlier tests left running
    found_2, stats_2, _ = scan.scan_file(data_file, checker(), jobs=2)
    assert ([vars(d) for d in found_2], stats_2.as_dict()) == ([vars(d) for d in found], stats.as_dict())
    spans = scan.line_spans(data_file, 2 * scan.SPANS_PER_JOB)
    assert len(spans) == 2 * scan.SPANS_PER_JOB
    takers = [line.split() for line in taken.read_text(encoding="utf-8").splitlines()]
    assert sorted(int(start) for _, start in takers) == [start for start, _ in spans]  # each span once
    by_parent = sum(pid == str(parent) for pid, _ in takers)
    assert by_parent > len(spans) - by_parent >= 1, takers


def test_a_small_file_is_not_split(data_file):
    assert scan.line_spans(data_file, 8) == []


def test_a_json_array_is_not_split(tmp_path, monkeypatch):
    path = tmp_path / "prefs.json"
    path.write_text(json.dumps([record(random.Random(0)) for _ in range(200)]))
    monkeypatch.setattr(scan, "MIN_SPAN_BYTES", 256)
    assert scan.line_spans(DataFile(path, "prefs.json", "json"), 4) == []


def test_jobs_must_be_a_whole_number_of_one_or_more(tmp_path):
    result = run_main("validate", "config.yaml", "--jobs", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert "argument --jobs: expected a whole number of processes, 1 or more, but got '0'" in result.stderr


def test_default_jobs_is_the_available_cores_within_the_bound():
    assert 1 <= scan.default_jobs() <= scan.MAX_JOBS


@pytest.mark.subprocess
def test_an_interrupt_while_forked_workers_run_kills_and_reaps_them(data_file, monkeypatch, tmp_path):
    """Ctrl-C in this process's own span: the workers still checking theirs are not left behind."""
    parent, seen = os.getpid(), tmp_path / "worker.pid"

    def span_or_wait(*_args) -> None:
        if os.getpid() != parent:  # a worker: say who it is, then take its time
            seen.write_text(str(os.getpid()))
            time.sleep(60)
        deadline = time.monotonic() + 30
        while not seen.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        raise KeyboardInterrupt

    monkeypatch.setattr(scan, "MIN_SPAN_BYTES", 256)
    monkeypatch.setattr(scan, "scan_span", span_or_wait)
    with pytest.raises(KeyboardInterrupt):
        scan._in_forks(data_file, checker(), scan.line_spans(data_file, 2), 2)
    worker = int(seen.read_text())
    assert not os.path.exists(f"/proc/{worker}"), "the worker was left running (or unreaped)"
