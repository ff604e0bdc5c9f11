"""`python -m launcher.run.torchrun_quiet [torchrun options] -m launcher.worker ...`: torchrun, minus a traceback,
and able to outlive its launcher's pipe.

On Ctrl-C / SIGTERM / SIGHUP torchrun's agent stops the ranks and then raises `SignalException` out of its `main`
(torch/distributed/elastic/multiprocessing/api.py, `_terminate_process_handler`), which Python prints as a
traceback although nothing went wrong: the ranks saved a checkpoint and the launcher reports the stop.
Here that exception becomes a quiet exit 128 + the signal (130, 143, 129). Likewise, when the ranks that failed
all exited EXIT_ALERT_STOP (an alert named in --stop-on ended the run after every rank saved a checkpoint),
torchrun's `ChildFailedError` becomes a one-line note and exit 4, so the job's exit code says what happened.
Every other outcome, the argv and torchrun's own messages are torch.distributed.run's. `dpo-launch train`
starts this module in the job's subprocess (launcher.plan.launch), never in the CLI process, so importing torch
here is fine.

torchrun's stdout is the launcher's pipe. If the launcher dies without warning, the ranks notice and stop on
their own (launcher.lifeline); meanwhile torchrun must not die of a broken pipe, or its ranks would be left
without their agent. So it holds a read end of its own pipe and, once the launcher is gone, writes what it has
to say to `<logs>/launcher.log` (the folder above `--log_dir`) instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from launcher.errors import EXIT_ALERT_STOP
from launcher.lifeline import divert_output, hold_output_pipes, supervisor_from, watch_supervisor


def log_after_launcher(argv: list[str]) -> Path | None:
    """Where torchrun writes once its launcher is gone: launcher.log next to torchrun's `--log_dir`."""
    for flag in ("--log_dir", "--log-dir"):
        if flag in argv and argv.index(flag) + 1 < len(argv):
            return Path(argv[argv.index(flag) + 1]).parent / "launcher.log"
    return None


def outlive_the_launcher(argv: list[str]) -> None:
    supervisor = supervisor_from(os.environ)
    log = log_after_launcher(argv)
    if supervisor is None or log is None:
        return
    held = hold_output_pipes()
    watch_supervisor(supervisor, lambda: divert_output(log, held))


def main(argv: list[str] | None = None) -> int:
    """Run torch.distributed.run's `main` on `argv` (default: this process's arguments); 128 + N after signal N,
    4 when the ranks stopped on a --stop-on alert."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun_main

    argv = sys.argv[1:] if argv is None else argv
    outlive_the_launcher(argv)
    try:
        torchrun_main(argv)
    except SignalException as exc:
        return 128 + int(exc.sigval)
    except ChildFailedError as exc:
        codes = {failure.exitcode for failure in exc.failures.values()}
        if codes != {EXIT_ALERT_STOP}:
            raise
        ranks = ", ".join(str(rank) for rank in sorted(exc.failures))
        print(f"torchrun: rank(s) {ranks} exited {EXIT_ALERT_STOP}: stopped by a --stop-on alert", file=sys.stderr)
        return EXIT_ALERT_STOP
    return 0


if __name__ == "__main__":
    sys.exit(main())
