"""One diagnostic per file for a problem most of its records share, with the count, the first locations and
the exact fix, in place of one diagnostic per record:

- `column-missing`: a column mapped under a name the records do not use (a typo in dataset_info.json),
  reported at the entry with the closest key found in the records;
- `guide-shape`: ShareGPT records with chosen/rejected as plain strings (what most DPO guides show), with the
  `dpo-launch convert` command that rewrites the file;
- `tags-mismatch`: role names or message keys the entry's tags do not declare, with the `tags` to declare;
- `already-templated`: text that went through a chat template (templated.py).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath

from launcher.check.data.dataset_info import DatasetInfo
from launcher.check.data.records import RecordChecker
from launcher.check.data.shapes import ShapeSeen, ShapeTally, consequence, locations
from launcher.check.data.templated import MARKERS, TEMPLATED_HINT
from launcher.check.data.verdicts import CONTENT_KEYS, ROLE_KEYS, ROLE_SYNONYMS, TAG_NAMES
from launcher.check.diagnostics import ERROR, WARNING, Diagnostic, did_you_mean


@dataclass
class FileContext:
    """Where a scanned file belongs: its entry in dataset_info.json, and whether it is the entry's only file."""

    info: DatasetInfo
    name: str
    display: str  # the data file as the user sees it
    records: int
    only_file: bool


def file_wide(tally: ShapeTally, ck: RecordChecker, where: FileContext) -> tuple[list[Diagnostic], set[int]]:
    """The file-wide diagnostics, and the positions of the per-record diagnostics they replace."""
    found: list[Diagnostic] = []
    covered: set[int] = set()
    for shape in sorted(s for s in tally.shapes if s.startswith("column:")):
        seen = tally.file_wide(shape, where.records)
        if seen:
            found.append(_column_missing(tally, ck, where, shape.split(":", 1)[1], seen))
            covered.update(seen.positions)
    if ck.sharegpt:
        found += _tags_or_guide_shape(tally, ck, where, covered)
    templated = tally.file_wide("templated", where.records)
    if templated:
        found.append(_templated(tally, where, templated))
        covered.update(templated.positions)
    return found, covered


# ------------------------------------------------------------------ a column the records do not have

def _column_missing(tally: ShapeTally, ck: RecordChecker, where: FileContext, column: str,
                    seen: ShapeSeen) -> Diagnostic:
    names = [name for name, value in ck.c.items() if value == column] or [column]
    mapped = set(ck.c.values())
    keys = [key for key, _ in tally.record_keys.most_common() if key not in mapped]
    if seen.records == where.records:
        what = f"no record of {where.display} has it ({where.records} checked), so LLaMA-Factory crashes with " \
               f"KeyError: '{column}'"
    else:
        what = f"{seen.records} of the {where.records} records of {where.display} do not have it, so " \
               f"{consequence(seen)}; first: {locations(seen)}"
    match = did_you_mean(column, keys, cutoff=0.6)
    hint = (f"did you mean '{match}'? " if match else "") + \
        (f"the records have {', '.join(map(repr, sorted(keys)))}" if keys else "the records have no other keys")
    return where.info.diagnostic(ERROR, "column-missing", f"entry '{where.name}': column {names[0]} is mapped to "
                                 f"'{column}', but {what}", where.name, "columns", names[0], hint=hint, key=False)


# ------------------------------------------------------------------ the guide's shape and undeclared tags

def _tags_or_guide_shape(tally: ShapeTally, ck: RecordChecker, where: FileContext,
                         covered: set[int]) -> list[Diagnostic]:
    strings = tally.file_wide("string-answer", where.records) if ck.mode == "pairwise" else None
    tags = tally.file_wide("tags", where.records)
    # Records that passed the fast path use the declared tags: renaming them would break those.
    fix = _tag_fixes(ck) if tags and tally.explained == where.records else {}
    if not strings and not fix:
        return []
    for shape, seen in tally.shapes.items():
        if shape == "string-answer" and strings or _fixed(shape, fix):
            covered.update(seen.positions)
    if strings:
        return [_guide_shape(ck, where, strings, fix)]
    return [_tags_mismatch(ck, where, tags, fix)] if tags else []


def _fixed(shape: str, fix: dict) -> bool:
    family, _, value = shape.partition(":")
    if family == "role":
        return value in fix.values()
    if family == "keys":
        return f"{value}_tag" in fix
    return shape == "tags" and bool(fix)


def _guide_shape(ck: RecordChecker, where: FileContext, seen: ShapeSeen, fix: dict) -> Diagnostic:
    roles = [value for name, value in fix.items() if name not in ("role_tag", "content_tag")]
    also = f" and role names the entry does not declare ({', '.join(map(repr, roles))})" if roles else ""
    message = (f"{seen.records} of {where.records} records have chosen/rejected as plain strings{also}, the shape "
               f"most DPO guides show; entry '{where.name}' (formatting sharegpt) needs one message object each, so "
               f"{consequence(seen)}; first: {locations(seen)}")
    return Diagnostic(ERROR, "guide-shape", message, file=where.display, line=seen.first[0][1],
                      hint=f"convert the file: {_convert_command(where)}")


def _convert_command(where: FileContext) -> str:
    source = PurePosixPath(where.display)
    target = source.with_name(f"{source.stem}_converted.jsonl")
    argv = ["dpo-launch", "convert", str(source), "--from", "sharegpt-strings", "--out", str(target)]
    if not where.only_file:  # one entry, several files: each is converted, then the entry points at them
        return f"{shlex.join(argv)}, then point entry '{where.name}' at the converted files"
    argv += ["--register", where.info.display, "--name", where.name, "--force"]
    return f"{shlex.join(argv)}; --force replaces entry '{where.name}' with one for the converted file"


def _tags_mismatch(ck: RecordChecker, where: FileContext, seen: ShapeSeen, fix: dict) -> Diagnostic:
    tags = _suggested_tags(ck, fix)
    declared = "; ".join(f"{value!r} where {name} is {ck.t[name]!r}" for name, value in fix.items())
    message = (f"{seen.records} of {where.records} records use role names or message keys that entry "
               f"'{where.name}' does not declare ({declared}), so {consequence(seen)}; first: {locations(seen)}")
    return Diagnostic(ERROR, "tags-mismatch", message, file=where.display, line=seen.first[0][1],
                      hint=f"declare \"tags\": {json.dumps(tags)} in entry '{where.name}' of {where.info.display}; "
                           "once tags is given, every tag left out is None, so list them all")


def _tag_fixes(ck: RecordChecker) -> dict:
    """{tag name: the name the records use} for the keys and role names that differ from the entry's tags."""
    fix, keys, t = {}, ck.message_keys, ck.t
    if keys and t["role_tag"] not in keys:
        fix["role_tag"] = next((k for k in ROLE_KEYS if k in keys), None)
    if keys and t["content_tag"] not in keys:
        fix["content_tag"] = next((k for k in CONTENT_KEYS if k in keys), None)
    positional = {"first": "user_tag", "even": "user_tag", "odd": "assistant_tag", "answer": "assistant_tag"}
    seen = set().union(*ck.roles_seen.values())
    for kind in ("first", "even", "odd", "answer"):
        for role in sorted(ck.roles_seen[kind] - ck.known if "role_tag" not in fix else ck.roles_seen[kind]):
            tag = next((name for name, words in ROLE_SYNONYMS.items() if role.lower() in words), positional[kind])
            if t[tag] not in seen or "role_tag" in fix:  # data that mixes both names: the record errors say where
                fix.setdefault(tag, role)
    return {name: value for name, value in fix.items() if value is not None and value != t[name]}


def _suggested_tags(ck: RecordChecker, fix: dict) -> dict:
    tags = {name: value for name, value in ck.t.items() if value is not None}
    tags.update(fix)
    seen = set().union(*ck.roles_seen.values())
    optional = ("observation_tag", "function_tag", "system_tag")
    return {name: tags.get(name) for name in TAG_NAMES
            if tags.get(name) is not None and (name not in optional or name in fix or tags[name] in seen)}


# ------------------------------------------------------------------ text that went through a chat template

def _templated(tally: ShapeTally, where: FileContext, seen: ShapeSeen) -> Diagnostic:
    markers = sorted({shape.split(":", 1)[1] for shape in tally.shapes if shape.startswith("templated:")})
    families = sorted({MARKERS[marker] for marker in markers})
    message = (f"{seen.records} of {where.records} records contain chat template markers "
               f"({', '.join(markers)}: {', '.join(families)}): their text already went through a chat template, and "
               "LLaMA-Factory applies the config's template to it again, so the model trains on the markers twice; "
               f"first: {locations(seen)}")
    return Diagnostic(WARNING, "already-templated", message, file=where.display, line=seen.first[0][1],
                      hint=TEMPLATED_HINT)
