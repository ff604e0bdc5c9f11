"""What the evaluation worker's tasks share: the user-facing error, LLaMA-Factory's own loading errors made
readable, and seeding."""

from __future__ import annotations


class TaskError(Exception):
    """A problem the user can fix (the model, template or data cannot be loaded as given); the message says
    what and how."""


def first_line(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0]}" if text else type(cause).__name__


def load_failure(what: str, exc: BaseException, hint: str) -> TaskError:
    """LLaMA-Factory wraps loading failures (e.g. OSError("Failed to load tokenizer.")): keep the root cause."""
    return TaskError(f"cannot load {what}: {first_line(exc)} ({hint})")
