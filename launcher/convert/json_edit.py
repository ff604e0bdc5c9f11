"""An edit of a JSON object file (dataset_info.json) that keeps the rest of the file byte for byte."""

from __future__ import annotations

import json
from dataclasses import dataclass


class JsonEditError(Exception):
    """The file is not a JSON object we can edit; `line`/`column` locate the problem when known."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.message, self.line, self.column = message, line, column


@dataclass(frozen=True)
class Member:
    """One top-level `"key": value` of a JSON object, as character offsets into the file's text."""

    key: str
    value: object
    value_start: int
    value_end: int


def object_members(source: str) -> tuple[list[Member], int]:
    """The top-level members of a JSON object text, and the offset of its closing brace."""
    decoder = json.JSONDecoder()
    try:
        json.loads(source)  # the stdlib's message and position for any syntax error
    except json.JSONDecodeError as exc:
        raise JsonEditError(f"invalid JSON: {exc.msg}", exc.lineno, exc.colno) from None
    pos = _skip_blank(source, 0)
    if source[pos:pos + 1] != "{":
        raise JsonEditError("expected a JSON object ({...}) at the top level", *_line_col(source, pos))
    members: list[Member] = []
    pos = _skip_blank(source, pos + 1)
    while source[pos] != "}":
        key, pos = decoder.raw_decode(source, pos)
        start = _skip_blank(source, _skip_blank(source, pos) + 1)  # past the ':'
        value, end = decoder.raw_decode(source, start)
        members.append(Member(key, value, start, end))
        pos = _skip_blank(source, end)
        if source[pos] == ",":
            pos = _skip_blank(source, pos + 1)
    return members, pos


def _skip_blank(source: str, pos: int) -> int:
    while pos < len(source) and source[pos] in " \t\r\n":
        pos += 1
    return pos


def _line_col(source: str, pos: int) -> tuple[int, int]:
    line = source.count("\n", 0, pos) + 1
    return line, pos - (source.rfind("\n", 0, pos) + 1) + 1


def set_member(source: str, key: str, value: object) -> str:
    """`source` with the top-level `key` set to `value`: replaced in place if present, else appended last.

    Everything else (other entries, their order, indentation, newline style, escapes) stays byte for byte;
    the new value is written in the indentation style the file already uses.
    """
    members, close = object_members(source)
    style = _Style.detect(source, members)
    rendered = style.render(value)
    existing = [m for m in members if m.key == key]
    if existing:  # JSON keeps the last duplicate, so replace that one
        member = existing[-1]
        return source[:member.value_start] + rendered + source[member.value_end:]
    member_text = f"{json.dumps(key, ensure_ascii=style.ensure_ascii)}: {rendered}"
    if not members:
        start = source.index("{") + 1  # drop the blank inside "{ }" and lay the entry out LF's way
        return source[:start] + style.newline + style.indent + member_text + style.newline + source[close:]
    last = members[-1].value_end
    separator = "," + (style.newline + style.indent if style.multiline else " ")
    return source[:last] + separator + member_text + source[last:]


@dataclass(frozen=True)
class _Style:
    multiline: bool
    indent: str  # before each top-level key
    unit: str | None  # one nesting level inside a value, None when values are written on one line
    newline: str
    ensure_ascii: bool

    @classmethod
    def detect(cls, source: str, members: list[Member]) -> _Style:
        newline = "\r\n" if "\r\n" in source else "\n"
        ensure_ascii = source.isascii() and "\\u" in source  # keep escaping only where the file already does
        if not members:  # nothing to copy: LF's own style (2 spaces)
            return cls(True, "  ", "  ", newline, ensure_ascii)
        line = source[source.rfind("\n", 0, members[0].value_start) + 1:]
        key_indent = line[:len(line) - len(line.lstrip(" \t"))]
        multiline = "\n" in source[:members[0].value_start]
        return cls(multiline, key_indent if multiline else "", _unit(source, members, key_indent), newline,
                   ensure_ascii)

    def render(self, value: object) -> str:
        if self.unit is None:
            return json.dumps(value, ensure_ascii=self.ensure_ascii)
        text = json.dumps(value, indent=self.unit, ensure_ascii=self.ensure_ascii)
        return text.replace("\n", self.newline + self.indent)


def _unit(source: str, members: list[Member], key_indent: str) -> str | None:
    """The indentation one level below a top-level key, from the first multi-line value in the file."""
    for member in members:
        body = source[member.value_start:member.value_end]
        for line in body.splitlines()[1:]:
            stripped = line.lstrip(" \t")
            if stripped and not stripped.startswith(("}", "]")):
                extra = line[:len(line) - len(stripped)]
                return extra[len(key_indent):] if extra.startswith(key_indent) and extra != key_indent else extra
    return None
