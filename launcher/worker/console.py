"""What of this rank's output `dpo-launch train` shows on its console (launcher.rank_output): the rest goes to the
rank's log only.

Under `dpo-launch train` (`DPO_LAUNCH_SUPERVISOR` set) `install()` marks, line by line:
- dpo-launch's own lines: the worker prints them with `say` (or `shown` for text it writes another way);
- every log record at WARNING or above, from any logger (LLaMA-Factory's `llamafactory.extras.logging`,
  transformers' `transformers.utils.logging`, datasets, DeepSpeed, torch): the mark is added where a handler
  formats a record (`logging.Handler.format`), so the line keeps the library's own format (level, time, logger);
- Python warnings (`warnings.warn`), routed through logging as WARNING records (`logging.captureWarnings`).
A worker run by hand marks nothing. Once the launcher is lost, stdout and stderr go straight into the rank's log
(launcher.lifeline.divert_output) and `detach()` stops the marking.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import IO

from launcher.lifeline import SUPERVISOR_ENV
from launcher.rank_output import mark

_marking = {"on": False}
_unmarked_format = logging.Handler.format


def install(env: Mapping[str, str] = os.environ) -> None:
    """Mark the lines meant for the console, when a launcher reads them."""
    if not env.get(SUPERVISOR_ENV):
        return
    _marking["on"] = True
    if logging.Handler.format is _unmarked_format:
        logging.Handler.format = _marked_format  # type: ignore[method-assign]
    warnings_logger = logging.getLogger("py.warnings")
    if not warnings_logger.handlers:  # else captureWarnings gives it a NullHandler: the warnings would vanish
        warnings_logger.addHandler(logging.StreamHandler(sys.stderr))
    logging.captureWarnings(True)


def detach() -> None:
    """Output no longer reaches a launcher: write it unmarked."""
    _marking["on"] = False


def shown(text: str) -> str:
    """`text` marked for the console, when marking is on."""
    return mark(text) if _marking["on"] else text


def say(text: str, stream: IO[str] | None = None) -> None:
    """One of dpo-launch's own lines, shown on the console (stdout by default)."""
    print(shown(text), file=stream or sys.stdout, flush=True)


def _marked_format(handler: logging.Handler, record: logging.LogRecord) -> str:
    text = _unmarked_format(handler, record)
    if _marking["on"] and record.levelno >= logging.WARNING and _writes_to_the_launcher(handler):
        return mark(text)
    return text


def _writes_to_the_launcher(handler: logging.Handler) -> bool:
    """A handler writing to this process's stdout or stderr (the launcher's pipe); a file handler (a user's, or
    LLaMA Board's running log) gets its lines unmarked."""
    stream = getattr(handler, "stream", None)
    try:
        return stream is not None and stream.fileno() in (1, 2)
    except (AttributeError, OSError, ValueError):  # a stream without a descriptor (a StringIO): not a file
        return isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
