"""`python -m launcher.run.torchrun_quiet [torchrun options] -m launcher.worker ...`: torchrun, minus a traceback.

On Ctrl-C / SIGTERM torchrun's agent stops the ranks and then raises `SignalException` out of its `main`
(torch/distributed/elastic/multiprocessing/api.py, `_terminate_process_handler`), which Python prints as a
traceback although nothing went wrong: the ranks saved a checkpoint and the launcher reports the stop.
Here that exception becomes a quiet exit 128 + the signal (130, 143); every other outcome, the argv and
torchrun's own messages are torch.distributed.run's. `dpo-launch train` starts this module in the job's
subprocess (launcher.plan.launch), never in the CLI process, so importing torch here is fine.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run torch.distributed.run's `main` on `argv` (default: this process's arguments); 128 + N after signal N."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.run import main as torchrun_main

    try:
        torchrun_main(sys.argv[1:] if argv is None else argv)
    except SignalException as exc:
        return 128 + int(exc.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
