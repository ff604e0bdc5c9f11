"""How schema facts read in a diagnostic: a YAML value as the user wrote it, what a key expects ('a number
above 0', 'one of sigmoid, hinge, ...') and the fix where one is clear (unquote a number, did you mean ...).
"""

from __future__ import annotations

import math
import re
from typing import Any

from launcher.check.diagnostics import did_you_mean

TYPE_WORDS = {"boolean": "a boolean", "integer": "an integer", "number": "a number", "string": "a string",
              "array": "a list", "object": "a mapping", "null": "null"}
# dataset_info.json and records are JSON, where a mapping is an object.
JSON_TYPE_WORDS = {**TYPE_WORDS, "object": "an object"}
LONG_ENUM = 12  # above this, name the values' source instead of listing them


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def shown(value: Any) -> str:
    """How a config value reads in a message, as the user wrote it: strings quoted, numbers and booleans as YAML
    writes them (1e-5, not 1e-05), lists and mappings by kind."""
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else ("-.inf" if value < 0 else ".inf")
    if isinstance(value, float):
        return re.sub(r"e([+-])0*(\d)", r"e\1\2", f"{value:g}")
    return repr(value)


def expected_text(schema: dict, where: str) -> str | None:
    """'a number above 0', 'one of 4, 8', 'a string or a list', ... for the keywords in `schema`."""
    if "x-expected" in schema:
        return schema["x-expected"]
    if "enum" in schema:
        return enum_text(schema["enum"], where)
    if "anyOf" in schema:
        parts = [expected_text(alternative, where) for alternative in schema["anyOf"]]
        return " or ".join(part for part in parts if part) or None
    if any(keyword in schema for keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")):
        return "a number " + range_text(schema)
    if schema.get("minLength"):
        return "a non-empty string"
    if "type" in schema:
        return type_words(schema["type"])
    return None


def type_words(types: str | list[str], words: dict[str, str] = TYPE_WORDS) -> str:
    """'a string or a list' for a JSON Schema `type` (null left out unless it is the only one)."""
    types = [types] if isinstance(types, str) else types
    return " or ".join(words[t] for t in sorted(types, key=list(words).index) if t != "null") or "null"


def enum_text(values: list, where: str) -> str:
    shown_values = [value for value in values if value is not None]
    if len(shown_values) > LONG_ENUM:
        return f"one of the {len(shown_values)} {where} values LLaMA-Factory 0.9.5 knows"
    return "one of " + ", ".join(shown(v)[1:-1] if isinstance(v, str) else shown(v) for v in shown_values)


def range_text(schema: dict) -> str:
    low = [f"at least {number(schema['minimum'])}"] if "minimum" in schema else []
    low += [f"above {number(schema['exclusiveMinimum'])}"] if "exclusiveMinimum" in schema else []
    high = [f"at most {number(schema['maximum'])}"] if "maximum" in schema else []
    high += [f"below {number(schema['exclusiveMaximum'])}"] if "exclusiveMaximum" in schema else []
    if "minimum" in schema and "maximum" in schema:
        return f"from {number(schema['minimum'])} to {number(schema['maximum'])}"
    return " and ".join(low + high)


def number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def value_hint(error, path: tuple) -> str | None:
    """The fix, where one is clear: unquote a number, the closest choice, the rule's own hint."""
    instance = error.instance
    if error.validator == "type" and isinstance(instance, str):
        return unquote_hint(instance, error.validator_value)
    if error.validator == "type" and isinstance(instance, list) and path[:1] and "x-comma-separated" in error.schema:
        return "write one comma-separated string, e.g. " + ",".join(str(item) for item in instance)
    if error.validator == "enum" and path == ("flash_attn",) and isinstance(instance, bool):
        return "flash_attn: true was replaced by fa2 for FlashAttention-2, or auto" if instance else "write disabled"
    if error.validator == "enum" and isinstance(instance, str):
        choices = [value for value in error.validator_value if isinstance(value, str)]
        if (match := did_you_mean(instance, choices)):
            return f"did you mean '{match}'?"
    return error.schema.get("x-hint")


def unquote_hint(text: str, expected: Any) -> str | None:
    types = expected if isinstance(expected, list) else [expected]
    if "boolean" in types and text.strip().lower() in ("true", "false"):
        return f"write {text.strip().lower()} without quotes"
    if "integer" in types or "number" in types:
        try:
            value = float(text)
        except ValueError:
            return None
        if "number" in types or value.is_integer():
            return f"write {text.strip()} without quotes"
    return None


__all__ = ["expected_text", "is_number", "shown", "value_hint"]
