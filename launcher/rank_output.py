"""Which of a rank's output lines `dpo-launch train` shows on the console; every line goes to the rank's log.

Shared vocabulary between each rank (launcher.worker.console marks the lines) and the launcher
(launcher.run.tee reads the marks). LLaMA-Factory, transformers, datasets and DeepSpeed write their INFO logs,
model config dumps, tokenized examples and progress bars to the rank's stdout/stderr: all of it belongs in
`logs/rank-N.log`, little of it on the console. A rank under `dpo-launch train` therefore starts each line
meant for the console with SHOWN (an ASCII record separator, which prints as nothing): dpo-launch's own lines
(the loss it trains, the self-test, alerts, why it stopped) and every log record at WARNING or above,
whichever library logs it. The launcher shows a marked line from the mark on (a progress bar that the line
was appended to stays behind), strips the marks before anything reaches a log, and with `--verbose` shows
every line. Pure: standard library only.
"""

from __future__ import annotations

SHOWN = "\x1e"
SHOWN_BYTES = SHOWN.encode()


def mark(text: str) -> str:
    """`text` with every line marked to be shown."""
    return "\n".join(SHOWN + line if line else line for line in text.split("\n"))


def unmarked(raw: bytes) -> bytes:
    """The line as it goes into the logs: without marks."""
    return raw.replace(SHOWN_BYTES, b"") if SHOWN_BYTES in raw else raw


def shown_part(raw: bytes) -> bytes | None:
    """What of a rank's line the console shows when not verbose: from the first mark on, unmarked; None for an
    unmarked line."""
    at = raw.find(SHOWN_BYTES)
    return None if at < 0 else unmarked(raw[at:])
