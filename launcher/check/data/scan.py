"""Check every record of one file through a RecordChecker, in this process or, for a JSON Lines file of
2 * MIN_SPAN_BYTES (16 MiB) or more, in several: the file is cut into byte spans at line starts (up to
SPANS_PER_JOB a job), the processes take the spans one at a time until none is left, each span checked as if it
were a file of its own, and the spans' findings are merged in file order, their record indexes and lines
numbered on from the spans before. Every diagnostic is the same whatever the number of jobs: both ways build them
from the same findings, in the same order (tests/check/test_parallel_scan.py).

A span's findings are the records that are not clean (those that failed the fast path, or repeat a key, or
cannot be parsed), with their problems: few, whatever the file's size, unless most records share a problem.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import NoReturn

from launcher.check.data.files import DataFile, FileStats, columnar_available
from launcher.check.data.json_keys import may_repeat_a_key
from launcher.check.data.jsonstream import (
    CHUNK,
    MAX_RECORD_BYTES,
    JsonLines,
    SyntaxProblem,
    duplicate_key_problem,
    iter_columnar,
    iter_json_array,
    sniff_json_kind,
)
from launcher.check.data.records import RecordChecker
from launcher.check.data.shapes import KEYS_FROM, ShapeTally
from launcher.check.data.verdicts import CRASH, DROPPED
from launcher.check.diagnostics import ERROR, NOTE, Diagnostic

MAX_JOBS = 8  # the default's bound: each job is a process of its own, which a pre-commit hook should not multiply
MIN_SPAN_BYTES = 8 << 20  # about 25 ms of checks: below it, splitting a file gains less than its processes cost
# Spans a job: the processes take them one at a time, so one process that another program slows checks fewer of
# them instead of keeping the others waiting at the end (on 2 shared cores, 32 spans of the 366 MB bench file took
# 0.56 s against 0.63 s for two halves, the mean of four runs each).
SPANS_PER_JOB = 16


def default_jobs() -> int:
    """The CPUs this process may run on, at most MAX_JOBS."""
    return max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
                      MAX_JOBS))


@dataclass
class SpanFindings:
    """What checking one span found. An event is (index, line, problems, verdict, keys) for a record that is not
    clean (keys: its keys when a column is missing, to suggest the one meant; else None), or (index, line,
    SyntaxProblem, None, None) for a line that cannot be read as a record; indexes and lines count from the
    span's start."""

    events: list = field(default_factory=list)
    records: int = 0  # record indexes used, unparsable lines included
    lines: int = 0  # lines read, blank ones included (JSON Lines)
    stopped: bool = False  # a fatal problem or an error: nothing after it in the file is read
    error: str | None = None
    roles_seen: dict = field(default_factory=dict)
    message_keys: set = field(default_factory=set)


def scan_file(data_file: DataFile, checker: RecordChecker,
              jobs: int = 1) -> tuple[list[Diagnostic], FileStats, ShapeTally]:
    """Check every record of one file: every problem, the counts, and the tally of the problems' shapes."""
    if data_file.type != "json" and not columnar_available():
        return [Diagnostic(NOTE, "data-not-checked", f"{data_file.type} records not checked: pyarrow is not "
                           "installed", file=data_file.display)], FileStats(), ShapeTally()
    checker.start_file()
    spans = line_spans(data_file, jobs * SPANS_PER_JOB) if jobs > 1 else []
    parts = _in_workers(data_file, checker, spans, jobs) if len(spans) > 1 else None
    if parts is None:  # one span, or the workers could not run: this process reads the whole file
        parts = [scan_span(data_file, checker)]
    return _merge(parts, checker, data_file.display)


def scan_span(data_file: DataFile, checker: RecordChecker, span: tuple[int, int] | None = None) -> SpanFindings:
    """The findings of one span of a file (the whole file when span is None)."""
    fast_keys, explain = checker.fast_keys, checker.explain
    found = SpanFindings(roles_seen=checker.roles_seen, message_keys=checker.message_keys)
    events = found.events
    index, keyed = -1, 0
    # A JSON Lines reader skips the clean records itself, those whose line provably writes no key twice.
    reader = JsonLines(data_file.path, span, fast_keys) if _is_json_lines(data_file) else None
    try:
        for index, line, raw, rec in reader if reader is not None else _other_records(data_file):
            keys = fast_keys(rec) if type(rec) is dict else 0
            if keys and raw is None:
                continue
            if raw is not None and type(rec) is not SyntaxProblem and may_repeat_a_key(raw, rec):
                rec = duplicate_key_problem(raw, line) or rec
            if type(rec) is SyntaxProblem:
                events.append((index, line, rec, None, None))
                found.stopped = rec.fatal
                continue
            if keys:
                continue
            problems, verdict = explain(rec)
            column = keyed < KEYS_FROM and isinstance(rec, dict) and any(
                p.shape and p.shape.startswith("column:") for p in problems)
            keyed += column
            events.append((index, line, problems, verdict, list(rec) if column and isinstance(rec, dict) else None))
    except (OSError, ValueError) as exc:  # unreadable file, or pyarrow's ArrowInvalid (a ValueError)
        found.error, found.stopped = f"cannot read records: {exc}", True
    # (after an error in this loop, the last record handed out may be after the last one the reader counted)
    found.records = max(reader.records, index + 1) if reader is not None else index + 1
    found.lines = reader.lines if reader is not None else 0
    return found


def line_spans(data_file: DataFile, count: int) -> list[tuple[int, int]]:
    """Byte spans of a JSON Lines file, `count` of them or fewer (at most 255, and about MIN_SPAN_BYTES or more
    each: a cut moves on to the next line start), each starting at a line start; [] when the file is a JSON
    array, not JSON Lines, or too small to be worth the processes."""
    try:
        size = data_file.path.stat().st_size
        if not _is_json_lines(data_file) or size < 2 * MIN_SPAN_BYTES:
            return []
        parts = min(count, size // MIN_SPAN_BYTES, 255)  # a span's number travels as one byte (_take_spans)
        starts = [0]
        with open(data_file.path, "rb") as handle:
            for part in range(1, parts):
                start = _next_line_start(handle, max(size * part // parts, starts[-1] + 1))
                if start is None or start >= size:
                    break  # a line too long to find its end: the last span reads (and refuses) it
                starts.append(start)
    except OSError:
        return []  # the scan reports the file as unreadable
    return list(zip(starts, starts[1:] + [size], strict=True))


def _next_line_start(handle, offset: int) -> int | None:
    """The offset of the first line start at or after `offset`, looking at most MAX_RECORD_BYTES ahead."""
    handle.seek(offset - 1)
    seen, size = 0, 64 << 10  # most lines end within the first block; longer ones get growing blocks
    while seen <= MAX_RECORD_BYTES:
        block = handle.read(size)
        size = min(size * 2, CHUNK)
        if not block:
            return None
        newline = block.find(b"\n")
        if newline >= 0:
            return offset - 1 + seen + newline + 1
        seen += len(block)
    return None


def _is_json_lines(data_file: DataFile) -> bool:
    return data_file.type == "json" and sniff_json_kind(data_file.path) == "lines"


def _other_records(data_file: DataFile) -> Iterator[tuple[int, int | None, None, object]]:
    """JSON arrays and columnar files, with no line bytes: the duplicate-key check is for JSON Lines only
    (datasets reads arrays with json.load, where a repeated key's last value wins)."""
    records = iter_json_array(data_file.path) if data_file.type == "json" else iter_columnar(data_file.path,
                                                                                              data_file.type)
    for index, line, rec in records:
        yield index, line, None, rec


def _in_workers(data_file: DataFile, checker: RecordChecker, spans: list[tuple[int, int]],
                jobs: int) -> list[SpanFindings] | None:
    """The findings of every span in file order, checked by `jobs` processes. None when the workers could not
    start or one died (no process left to fork, killed for memory): the caller checks the file itself."""
    if sys.platform == "linux" and threading.active_count() == 1:
        return _in_forks(data_file, checker, spans, jobs)
    return _in_pool(data_file, checker, spans, jobs)


def _in_forks(data_file: DataFile, checker: RecordChecker, spans: list[tuple[int, int]],
              jobs: int) -> list[SpanFindings] | None:
    """This process and jobs - 1 workers made with os.fork, each worker sending its findings back pickled
    through a pipe: a fork starts in a millisecond with every import done, and this path imports only pickle (a
    process pool cost about 40 ms of imports and start-up, 7% of a 200,000-record check on 2 cores). The spans
    to check are the bytes of a pipe that every process reads one at a time. Safe only while this process has
    one thread; a worker leaves with os._exit, so nothing of this process's (buffers, exit handlers) runs twice."""
    import pickle

    children: list[tuple[int, int]] = []
    read_spans = -1
    try:
        read_spans, write_spans = os.pipe()
        try:
            os.write(write_spans, bytes(range(len(spans))))  # at most 255 bytes: one write, whole
        finally:
            os.close(write_spans)  # before any fork: the last span taken, each reader sees the end of the pipe
        for _ in range(min(jobs, len(spans)) - 1):
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read_end)
                _worker_main(write_end, read_spans, data_file, checker.recipe, spans)
            os.close(write_end)
            children.append((pid, read_end))
        found = _take_spans(read_spans, spans, lambda span: scan_span(data_file, checker, span))
        while children:
            pid, read_end = children[0]
            with os.fdopen(read_end, "rb") as pipe:
                sent = pipe.read()
            _, status = os.waitpid(pid, 0)
            children.pop(0)
            if status != 0 or not sent:
                return None
            found |= pickle.loads(sent)
        return [found[number] for number in range(len(spans))] if len(found) == len(spans) else None
    except OSError:  # no process left to fork, no descriptor left for a pipe
        return None
    finally:
        if read_spans >= 0:
            os.close(read_spans)
        for pid, read_end in children:  # not waited for: an error or an interrupt on the way, or one failed
            with contextlib.suppress(OSError):
                os.close(read_end)
            with contextlib.suppress(ChildProcessError, ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)


def _take_spans(spans_pipe: int, spans: list[tuple[int, int]], check) -> dict[int, SpanFindings]:
    """Check the spans whose numbers this process reads from the pipe, one at a time, until it is empty."""
    found = {}
    while number := os.read(spans_pipe, 1):
        found[number[0]] = check(spans[number[0]])
    return found


def _worker_main(write_end: int, spans_pipe: int, data_file: DataFile, recipe: tuple,
                 spans: list[tuple[int, int]]) -> NoReturn:
    """A forked worker: the findings of the spans it took into the pipe, then out without a trace of the
    parent's Python."""
    import pickle

    code = 1
    try:
        found = _take_spans(spans_pipe, spans, lambda span: _scan_span_job((data_file, recipe, span)))
        with os.fdopen(write_end, "wb") as pipe:
            pickle.dump(found, pipe, protocol=pickle.HIGHEST_PROTOCOL)
        code = 0
    finally:
        os._exit(code)


def _in_pool(data_file: DataFile, checker: RecordChecker, spans: list[tuple[int, int]],
             jobs: int) -> list[SpanFindings] | None:
    """`jobs` workers of a process pool (forkserver on Linux, else spawn), where forking this process is not
    safe, while this one waits; the pool hands each worker its next span as it finishes one."""
    # Imported here: only a large file needs them, and they would add about 15 ms to every config-only validate.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    method = "forkserver" if sys.platform == "linux" else "spawn"
    try:
        with ProcessPoolExecutor(min(jobs, len(spans)), mp_context=multiprocessing.get_context(method)) as pool:
            return list(pool.map(_scan_span_job, [(data_file, checker.recipe, span) for span in spans]))
    except (BrokenProcessPool, OSError):
        return None


def _scan_span_job(job: tuple) -> SpanFindings:
    data_file, recipe, span = job
    return scan_span(data_file, RecordChecker(*recipe), span)


def _merge(parts: list[SpanFindings], checker: RecordChecker,
           display: str) -> tuple[list[Diagnostic], FileStats, ShapeTally]:
    """The file's diagnostics, counts and tally from its spans' findings, in file order."""
    stats, found, tally = FileStats(), [], ShapeTally()
    index_base = line_base = 0
    for part in parts:
        for index, line, what, verdict, keys in part.events:
            index += index_base
            if line is not None:
                line += line_base
            if type(what) is SyntaxProblem:
                stats.unparsable += 1  # not a record: JSON Lines give it an index, arrays the next one
                if line_base and what.line is not None:
                    what = replace(what, line=what.line + line_base)
                found.append(_syntax(what, display, index))
                continue
            stats.dropped += verdict == DROPPED
            stats.crash += verdict == CRASH
            tally.explained += 1
            for p in what:
                stats.problems[p.code] += 1
                if p.shape:
                    tally.note(p.shape, index, line, verdict, len(found))
                found.append(Diagnostic(p.severity, p.code, f"record {index}: {p.message}", file=display, line=line,
                                        record=index, path=p.path, hint=p.hint))
            if keys is not None:  # to suggest the name a column typo meant
                tally.note_keys(keys)
        for kind, roles in part.roles_seen.items():
            checker.roles_seen[kind] |= roles
        checker.message_keys |= part.message_keys
        index_base += part.records
        line_base += part.lines
        if part.error:
            found.append(Diagnostic(ERROR, "data-unreadable", part.error, file=display))
        if part.stopped:
            break
    stats.records = index_base - stats.unparsable
    return found, stats, tally


def _syntax(problem: SyntaxProblem, display: str, index: int) -> Diagnostic:
    generic = ("LLaMA-Factory cannot load a file with a JSON error: the whole dataset fails" if not problem.fatal
               else "nothing after this point can be read; fix the JSON and run again")
    hint = problem.hint or generic
    return Diagnostic(ERROR, problem.code, problem.message, file=display, line=problem.line,
                      column=problem.column, record=None if problem.fatal else index, hint=hint)


__all__ = ["SpanFindings", "default_jobs", "line_spans", "scan_file", "scan_span"]
