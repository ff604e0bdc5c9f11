"""Exit codes, and the two kinds of failure a user causes. Imports nothing of ours.

`dpo-launch` exits 0 when all is well, 1 when the user's input (config, data, run directory, machine) is
wrong and nothing was started, 2 on a usage error, 3 on a bug of ours (with a crash log), 130 after Ctrl-C.
`train` passes the job's own exit code through (129/130/143 after SIGHUP/SIGINT/SIGTERM), and uses 4 and 5 for
the two ways the launcher itself ends a run early. The README's exit-code table lists them all.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_USER_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_ALERT_STOP = 4  # a health alert named in --stop-on ended the run (after a checkpoint)
EXIT_STALLED = 5  # no training step for --stall-timeout: stacks dumped, job stopped
EXIT_GATE_FAILED = 6  # reserved: an evaluation gate was not met
EXIT_HANGUP = 129  # 128 + SIGHUP
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM


class UsageError(Exception):
    """Arguments that argparse cannot check (a combination of flags, a value's form); exits 2."""


class UserError(Exception):
    """The input cannot be used as given and nothing was started; the message says what, where and how to fix
    it. `dpo-launch <command>: error: <message>`, exit 1."""
