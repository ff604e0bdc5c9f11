"""Locate, load and compile the JSON Schemas in schemas/ (the single definition of "valid").

`$ref`s resolve against the local schema files only: the registry holds every file in the schema
directory, under its file name and under its `$id` where it has one, and nothing is ever fetched.

`is_valid` answers "valid?" for the keyword subset our config and dataset_info schemas use without importing
jsonschema (about 0.1 s of imports, half the time budget of `validate` on a config); python-jsonschema runs
only to explain a config or dataset_info.json that fails, or when a schema uses a keyword `is_valid` does not
know.
"""

from __future__ import annotations

import json
import re
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from launcher import PACKAGE_ROOT

LF_SCHEMA = "llamafactory-0.9.5.schema.json"
DPO_SCHEMA = "dpo-config.schema.json"


class SchemaNotFound(Exception):
    """The schemas are missing from this checkout or installation (a packaging bug, not the user's)."""


def schema_dir() -> Path:
    """schemas/ next to the package in a checkout, else launcher/schemas/ in an installed wheel."""
    candidates = (PACKAGE_ROOT / "schemas", PACKAGE_ROOT / "launcher" / "schemas")
    for candidate in candidates:
        if (candidate / LF_SCHEMA).is_file():
            return candidate
    raise SchemaNotFound(f"cannot find {LF_SCHEMA} in {candidates[0]} or {candidates[1]}")


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The parsed schema file `name` (e.g. "dpo-config.schema.json")."""
    path = schema_dir() / name
    if not path.is_file():
        raise SchemaNotFound(f"schema {name} not found in {path.parent}")
    with path.open(encoding="utf-8") as stream:
        return json.load(stream)


@lru_cache(maxsize=1)
def registry():
    """Every local schema, by file name and by `$id`; unknown references fail instead of being fetched."""
    from referencing import Registry, Resource
    from referencing.exceptions import NoSuchResource
    from referencing.jsonschema import DRAFT202012

    def refuse(uri: str):  # never retrieve over the network
        raise NoSuchResource(ref=uri)  # type: ignore[call-arg]  # an attrs class: mypy sees no __init__ fields

    resources: list[tuple[str, Any]] = []
    for path in sorted(schema_dir().glob("*.json")):
        resource = Resource.from_contents(load_schema(path.name), default_specification=DRAFT202012)
        resources.append((path.name, resource))
        if resource_id := resource.id():
            resources.append((resource_id, resource))
    return Registry(retrieve=refuse).with_resources(resources)  # type: ignore[call-arg]  # attrs, as above


@cache
def validator(name: str = DPO_SCHEMA):
    """A compiled validator for schema `name`, resolving `$ref`s through `registry()`."""
    from jsonschema.validators import validator_for

    schema = load_schema(name)
    cls = validator_for(schema)
    return cls(schema, registry=registry())


def lf_properties() -> dict[str, dict]:
    """Every key LLaMA-Factory 0.9.5 accepts, with its schema."""
    return load_schema(LF_SCHEMA)["properties"]


def not_settable() -> dict[str, str]:
    """Names LF computes itself (init=False fields, derived attributes, properties) -> why."""
    return load_schema(LF_SCHEMA).get("x-not-settable", {})


# Keywords that never change the outcome of validation ($defs holds what a $ref may point to).
ANNOTATIONS = {"$schema", "$id", "title", "description", "default", "examples", "$comment", "$defs"}
JSON_TYPES = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


class _Unsupported(Exception):
    """A keyword the fast path does not implement: let python-jsonschema decide."""


def is_valid(instance: Any, name: str = DPO_SCHEMA) -> bool:
    """True only when `instance` certainly validates against schema `name` (False: ask jsonschema)."""
    try:
        document = load_schema(name)
        return _valid(instance, document, document)
    except _Unsupported:
        return False


def _valid(instance: Any, schema: Any, document: dict) -> bool:
    """`document`: the schema file `schema` is part of, which a "#/..." $ref points into."""
    if schema is True or schema == {}:
        return True
    if schema is False or not isinstance(schema, dict):
        return False
    return all(_keyword(keyword, value, instance, schema, document) for keyword, value in schema.items()
               if keyword not in ANNOTATIONS and not keyword.startswith("x-"))


def _keyword(keyword: str, value: Any, instance: Any, schema: dict, document: dict) -> bool:
    check = _KEYWORDS.get(keyword)
    if check is None:
        raise _Unsupported(keyword)
    return check(value, instance, schema, document)


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):  # JSON Schema: true is not 1
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


def _numeric(test):
    return lambda bound, instance, *_: not JSON_TYPES["number"](instance) or test(instance, bound)


def _properties(properties: dict, instance: Any, _, document: dict) -> bool:
    return not isinstance(instance, dict) or all(
        _valid(instance[key], subschema, document) for key, subschema in properties.items() if key in instance)


def _additional(additional: Any, instance: Any, schema: dict, document: dict) -> bool:
    if not isinstance(instance, dict):
        return True
    if "patternProperties" in schema:
        raise _Unsupported("patternProperties")
    known = schema.get("properties", {})
    return all(_valid(value, additional, document) for key, value in instance.items() if key not in known)


def _if_then_else(condition: Any, instance: Any, schema: dict, document: dict) -> bool:
    passed = _valid(instance, condition, document)
    return _valid(instance, schema.get("then", True) if passed else schema.get("else", True), document)


def _ref(ref: str, instance: Any, _, document: dict) -> bool:
    if ref.startswith("#/"):  # a JSON pointer into the schema file being checked against
        return _valid(instance, _pointed(document, ref[2:]), document)
    if "#" in ref or "/" in ref:  # else only whole local files by name
        raise _Unsupported(ref)
    other = load_schema(ref)
    return _valid(instance, other, other)


def _pointed(document: Any, pointer: str) -> Any:
    """RFC 6901: '/'-separated tokens, '~1' for '/' and '~0' for '~' inside one."""
    for token in pointer.split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(document, dict) and token in document:
            document = document[token]
        elif isinstance(document, list) and token.isdigit() and int(token) < len(document):
            document = document[int(token)]
        else:
            raise _Unsupported(f"#/{pointer}")  # jsonschema says what is wrong with the schema
    return document


_KEYWORDS = {
    "$ref": _ref,
    "allOf": lambda subschemas, instance, _, document: all(_valid(instance, s, document) for s in subschemas),
    "anyOf": lambda subschemas, instance, _, document: any(_valid(instance, s, document) for s in subschemas),
    "if": _if_then_else,
    "then": lambda *_: True,  # evaluated by "if"
    "else": lambda *_: True,
    "type": lambda types, instance, *_: any(JSON_TYPES[t](instance)
                                            for t in ([types] if isinstance(types, str) else types)),
    "enum": lambda values, instance, *_: any(_json_equal(instance, value) for value in values),
    "const": lambda value, instance, *_: _json_equal(instance, value),
    "properties": _properties,
    "additionalProperties": _additional,
    "required": lambda names, instance, *_: not isinstance(instance, dict) or all(n in instance for n in names),
    "items": lambda items, instance, _, document: not isinstance(instance, list) or all(
        _valid(i, items, document) for i in instance),
    # Written as "not failing", exactly as python-jsonschema tests them, so NaN agrees too.
    "minimum": _numeric(lambda v, bound: not v < bound),
    "maximum": _numeric(lambda v, bound: not v > bound),
    "exclusiveMinimum": _numeric(lambda v, bound: not v <= bound),
    "exclusiveMaximum": _numeric(lambda v, bound: not v >= bound),
    "minLength": lambda bound, instance, *_: not isinstance(instance, str) or len(instance) >= bound,
    # python-jsonschema's own test: re.search, unanchored
    "pattern": lambda pattern, instance, *_: not isinstance(instance, str) or re.search(pattern, instance) is not None,
}
