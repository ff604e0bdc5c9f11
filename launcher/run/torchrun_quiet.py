"""`python -m launcher.run.torchrun_quiet [torchrun options] -m launcher.worker ...`: torchrun, minus a traceback.

On Ctrl-C / SIGTERM torchrun's agent stops the ranks and then raises `SignalException` out of its `main`
(torch/distributed/elastic/multiprocessing/api.py, `_terminate_process_handler`), which Python prints as a
traceback although nothing went wrong: the ranks saved a checkpoint and the launcher reports the stop.
Here that exception becomes a quiet exit 128 + the signal (130, 143). Likewise, when the ranks that failed all
exited EXIT_ALERT_STOP (an alert named in --stop-on ended the run after every rank saved a checkpoint),
torchrun's `ChildFailedError` becomes a one-line note and exit 4, so the job's exit code says what happened.
Every other outcome, the argv and torchrun's own messages are torch.distributed.run's. `dpo-launch train`
starts this module in the job's subprocess (launcher.plan.launch), never in the CLI process, so importing torch
here is fine.
"""

from __future__ import annotations

import sys

from launcher.errors import EXIT_ALERT_STOP


def main(argv: list[str] | None = None) -> int:
    """Run torch.distributed.run's `main` on `argv` (default: this process's arguments); 128 + N after signal N,
    4 when the ranks stopped on a --stop-on alert."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun_main

    try:
        torchrun_main(sys.argv[1:] if argv is None else argv)
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
