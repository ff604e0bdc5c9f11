"""Read `dataset_info.json` with positions, and check it against schemas/dataset_info.schema.json.

LLaMA-Factory reads the file with `json.load` and ignores fields it does not know, so a typo such as
`"colums"` silently falls back to the defaults; the schema (additionalProperties: false) catches it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from launcher.check.config import Position, index_positions
from launcher.check.data.json_keys import repeated_keys
from launcher.check.data.verdicts import describe
from launcher.check.diagnostics import ERROR, WARNING, Diagnostic, expected_one_of, suggestion_hint
from launcher.check.schema_words import JSON_TYPE_WORDS, type_words
from launcher.check.schemas import is_valid, schema_dir

SCHEMA_NAME = "dataset_info.schema.json"


@dataclass
class DatasetInfo:
    display: str  # the path as the user sees it, e.g. data/dataset_info.json
    entries: dict
    keys: dict = field(default_factory=dict)  # key path -> Position of the key
    values: dict = field(default_factory=dict)  # key path -> Position of the value

    def at(self, *path: object, key: bool = True) -> Position:
        """Position of a key (or its value), falling back to the closest enclosing entry."""
        table = self.keys if key else self.values
        while path:
            if tuple(path) in table:
                return table[tuple(path)]
            path = path[:-1]
        return Position(self.display, 1, 1)

    def diagnostic(self, severity: str, code: str, message: str, *path: object, hint: str | None = None,
                   key: bool = True) -> Diagnostic:
        where = self.at(*path, key=key)
        json_path = ".".join(str(p) for p in path) or None
        return Diagnostic(severity, code, message, file=self.display, line=where.line, column=where.column,
                          path=json_path, hint=hint)


@lru_cache(maxsize=1)
def validator():
    import jsonschema
    from referencing import Registry

    schema = json.loads((schema_dir() / SCHEMA_NAME).read_text(encoding="utf-8"))

    def refuse(uri: str):  # local-only: never fetch a $ref over the network
        raise LookupError(f"remote $ref not allowed: {uri}")

    return jsonschema.Draft202012Validator(schema, registry=Registry(retrieve=refuse))  # type: ignore[call-arg]


def load_dataset_info(path: Path, display: str) -> tuple[DatasetInfo | None, list[Diagnostic]]:
    def fail(code: str, message: str, line=None, column=None, hint=None):
        return None, [Diagnostic(ERROR, code, message, file=display, line=line, column=column, hint=hint)]

    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        return fail("dataset-info-missing", f"cannot open {display}: {exc.strerror or exc}",
                    hint="LLaMA-Factory reads it from dataset_dir, resolved from the directory you launch in")
    except UnicodeDecodeError as exc:
        return fail("json-syntax", f"{display} is not valid UTF-8 ({exc.reason})")
    duplicates: list[str] = []
    try:
        entries = json.loads(text, object_pairs_hook=lambda pairs: _keep_last(pairs, duplicates))
    except json.JSONDecodeError as exc:
        return fail("json-syntax", f"invalid JSON: {exc.msg}", exc.lineno, exc.colno)
    except RecursionError:
        return fail("json-syntax", "invalid JSON: nested too deeply (more than about 1,000 levels)", 1, 1)
    if not isinstance(entries, dict):
        return fail("schema", "expected an object mapping dataset names to entries but got a "
                    f"{type(entries).__name__}", 1, 1)
    info = DatasetInfo(display, entries)
    try:  # JSON is YAML: the composer gives positions; values still come from json
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        node = None
    if node is not None:
        index_positions(node, (), display, info.keys, info.values)
    return info, [_duplicate(text, display, key) for key in duplicates]


def _duplicate(text: str, display: str, key: str) -> Diagnostic:
    offset = max(text.rfind(json.dumps(key)), 0)  # the later occurrence is the one json.load keeps
    line = text.count("\n", 0, offset) + 1
    return Diagnostic(WARNING, "duplicate-key", f"duplicate key '{key}': LLaMA-Factory's json.load silently keeps "
                      "this last one", file=display, line=line, column=offset - text.rfind("\n", 0, offset),
                      hint="keep one of them")


def _keep_last(pairs: list, duplicates: list[str]) -> dict:
    """dict(pairs) as json.load builds it, noting the keys given twice."""
    result = dict(pairs)
    if len(result) != len(pairs):
        duplicates += repeated_keys(pairs)
    return result


def check_schema(info: DatasetInfo, used: set[str]) -> list[Diagnostic]:
    """Schema errors: errors in entries the config uses, warnings in the others (LF never reads them)."""
    if is_valid(info.entries, SCHEMA_NAME):  # the common case, without importing jsonschema (about 0.07 s)
        return []
    found = []
    for error in sorted(validator().iter_errors(info.entries), key=lambda e: [str(p) for p in e.absolute_path]):
        path = list(error.absolute_path)
        severity = ERROR if path and path[0] in used else WARNING
        found.extend(_explain(info, error, path, severity))
    return found


def _explain(info: DatasetInfo, error, path: list, severity: str) -> list[Diagnostic]:
    where = _describe_path(path)
    if error.validator == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        extras = [key for key in error.instance if key not in allowed]
        return [info.diagnostic(severity, "unknown-field",
                                f"{where}: unknown field '{key}' (LLaMA-Factory ignores it)", *path, key,
                                hint=suggestion_hint(key, allowed)) for key in extras]
    if error.validator == "enum":
        choices = error.validator_value
        return [info.diagnostic(severity, "enum", f"{where}: expected one of {expected_one_of(choices)} but got "
                                f"{error.instance!r}", *path, key=False,
                                hint=suggestion_hint(str(error.instance), choices))]
    if error.validator == "type":
        expected = type_words(error.validator_value, JSON_TYPE_WORDS)
        return [info.diagnostic(severity, "type", f"{where}: expected {expected} but got {describe(error.instance)}",
                                *path, key=False, hint=_type_hint(error))]
    if error.validator == "anyOf" and isinstance(error.instance, dict):
        return [info.diagnostic(severity, "entry-source", f"{where} has no file_name, hf_hub_url, ms_hub_url, "
                                "om_hub_url, script_url or cloud_file_name; LLaMA-Factory crashes with "
                                "KeyError: 'file_name'", *path, hint="add \"file_name\": \"<file in dataset_dir>\"")]
    return [info.diagnostic(severity, "schema", f"{where}: {error.message}", *path, key=False)]


def _describe_path(path: list) -> str:
    if not path:
        return "dataset_info.json"
    inner = ".".join(str(p) for p in path[1:])
    return f"entry '{path[0]}'" + (f" {inner}" if inner else "")


def _type_hint(error) -> str | None:
    if error.validator_value == "boolean" and isinstance(error.instance, str):
        return f"write {error.instance.strip().lower()} without quotes" if error.instance.strip().lower() in (
            "true", "false") else "write true or false without quotes"
    return None
