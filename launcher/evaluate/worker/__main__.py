"""`python -m launcher.evaluate.worker TASK --args-file REQUEST.json [--parent-pid PID]`.

Tasks: `generate` (ChatModel responses, launcher.evaluate.worker.generate), `score` (reward-model scores,
.score), `prefeval` (LLaMA-Factory's DPO/KTO evaluation, .prefeval), `export` (LLaMA-Factory's LoRA merge,
.export). The request is the task's JSON; the worker writes `result.json` next to it: `{"ok": true, ...}`, or
`{"ok": false, "error": MESSAGE}` with exit 1 for a problem the user can fix (a model that does not load, a
template LLaMA-Factory rejects). Exit 130/143 after SIGINT/SIGTERM (work already written stays), anything else
is a bug with its traceback in the log. With --parent-pid the worker stops when that process is gone, so a
killed launcher leaves no worker behind.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from launcher.atomic import write_text_atomic
from launcher.evaluate.worker import export, generate, prefeval, score
from launcher.evaluate.worker.common import TaskError

TASKS = {"generate": generate.run, "score": score.run, "prefeval": prefeval.run, "export": export.run}


def watch_parent(pid: int, interval: float = 1.0) -> None:
    """Exit when the launcher that started us is gone (re-parented: our parent pid changes)."""
    def watch() -> None:
        while os.getppid() == pid:
            time.sleep(interval)
        os._exit(143)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _raise_interrupt(signum, _frame) -> None:
    raise KeyboardInterrupt(signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m launcher.evaluate.worker", allow_abbrev=False)
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--args-file", required=True, type=Path)
    parser.add_argument("--parent-pid", type=int)
    args = parser.parse_args(argv)
    if args.parent_pid:
        watch_parent(args.parent_pid)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # finally-clauses and atomic writes clean up as on Ctrl-C
    request = json.loads(args.args_file.read_text(encoding="utf-8"))
    result_file = args.args_file.parent / "result.json"
    try:
        result, code = {"ok": True, **TASKS[args.task](request)}, 0
    except TaskError as exc:
        result, code = {"ok": False, "error": str(exc)}, 1
    except KeyboardInterrupt as exc:
        signum = exc.args[0] if exc.args and isinstance(exc.args[0], int) else signal.SIGINT
        print(f"dpo-launch {args.task} worker: interrupted by {signal.Signals(signum).name}", file=sys.stderr)
        return 128 + signum
    write_text_atomic(result_file, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return code


if __name__ == "__main__":
    try:
        exit_code = main()
    except Exception:  # our bug: the traceback goes to the log the launcher points at
        traceback.print_exc()
        exit_code = 3
    sys.stdout.flush()
    sys.stderr.flush()
    # The result is written atomically and flushed: skip the interpreter's teardown (1-2 s with torch loaded).
    os._exit(exit_code)
