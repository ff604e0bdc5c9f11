"""The preference record as a JSON Schema, built from a dataset_info.json entry (its columns and tags) and the
mode LLaMA-Factory reads it in ('pairwise' for dpo, 'kto').

The schema says what JSON Schema can say, exactly as the fast paths of records.py decide it: the required
columns, their types, the role values a message may have (an answer only the assistant's or function's),
string contents, non-empty except a leading system prompt's, a boolean kto_tag. The rest stays in code:
roles alternating user/assistant from the user, the number of turns (odd for pairs, even for KTO), a system
message only first, chosen and rejected differing, tools holding valid JSON, media counts against their
placeholders and media files, chat template markers. tests/check/test_record_schema.py proves, over generated
records, that the schema and the fast path never disagree on what the schema can express.

The shipped schemas/record-*.schema.json are this module's output for LLaMA-Factory's default tags
(scripts/generate_record_schemas.py writes them; a test fails when they drift).
"""

from __future__ import annotations

from launcher.check.data.verdicts import Attr

SCHEMA_URL = "https://json-schema.org/draft/2020-12/schema"
ID_BASE = "https://github.com/dpo-launch/dpo-launch/schemas/"
CODE_ONLY = ("What JSON Schema cannot say is checked by `dpo-launch validate`: roles alternate from the user, "
             "{turns}, a system message comes only first, {pair}tools holds valid JSON, media items match their "
             "placeholders and exist, and no text went through a chat template already.")
# The shipped schemas: file name -> (dataset_info.json entry, mode). Default tags; columns as LF's demo data
# (data/dataset_info.json: dpo_en_demo) and `dpo-launch convert` write them.
SHIPPED: dict[str, tuple[dict, str]] = {
    "record-sharegpt-ranking.schema.json": (
        {"formatting": "sharegpt", "ranking": True,
         "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}}, "pairwise"),
    "record-sharegpt-kto.schema.json": (
        {"formatting": "sharegpt", "columns": {"messages": "conversations", "kto_tag": "label"}}, "kto"),
    "record-alpaca-ranking.schema.json": (
        {"ranking": True, "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen",
                                      "rejected": "rejected", "system": "system", "history": "history"}}, "pairwise"),
}
NEEDED = {("sharegpt", "pairwise"): ("messages", "chosen", "rejected"), ("sharegpt", "kto"): ("messages", "kto_tag"),
          ("alpaca", "pairwise"): ("chosen", "rejected"), ("alpaca", "kto"): ("response", "kto_tag")}


class SchemaUnavailable(ValueError):
    """The entry cannot describe a record (a needed column is not mapped); the message says which."""


def record_schema(entry: dict, mode: str, title: str, schema_id: str | None = None) -> dict:
    """The JSON Schema of one record of `entry` read in `mode` ('pairwise' or 'kto')."""
    attr = Attr.from_entry(entry)
    style = "sharegpt" if attr.formatting in ("sharegpt", "openai") else "alpaca"
    missing = [name for name in NEEDED[(style, mode)] if not attr.columns[name]]
    if missing:
        raise SchemaUnavailable(f"the entry maps no {', '.join(missing)} column, so no record can be read in "
                                f"{'KTO' if mode == 'kto' else 'pairwise'} mode")
    body = _sharegpt(attr, mode) if style == "sharegpt" else _alpaca(attr, mode)
    _extras(attr, body["properties"])
    turns = "an even number of turns ending on the judged answer" if mode == "kto" else \
        "an odd number of turns ending on the user"
    pair = "" if mode == "kto" else "chosen and rejected differ, "
    head = {"$schema": SCHEMA_URL, **({"$id": schema_id} if schema_id else {}), "title": title,
            "description": CODE_ONLY.format(turns=turns, pair=pair), "x-dataset-info": entry}
    return head | body


def shipped_schema(file_name: str) -> dict:
    entry, mode = SHIPPED[file_name]
    kind = file_name.removeprefix("record-").removesuffix(".schema.json")
    title = f"A LLaMA-Factory 0.9.5 preference record ({kind}, default tags)"
    return record_schema(entry, mode, title, ID_BASE + file_name)


# ------------------------------------------------------------------ sharegpt / openai

def _sharegpt(attr: Attr, mode: str) -> dict:
    c, t = attr.columns, attr.tags
    role, content = t["role_tag"], t["content_tag"]
    answers = [t[name] for name in ("assistant_tag", "function_tag") if t[name] is not None]
    roles = [t[name] for name in ("user_tag", "assistant_tag", "observation_tag", "function_tag", "system_tag")
             if t[name] is not None]
    text: dict = {"type": "string"}
    turn: dict = {"type": "object", "required": [role, content], "properties": {role: {"enum": roles}, content: text}}
    if t["system_tag"]:  # only a (leading) system prompt may be empty
        turn |= {"if": {"properties": {role: {"const": t["system_tag"]}}},
                 "else": {"properties": {content: {"minLength": 1}}}}
    else:
        text["minLength"] = 1
    properties: dict = {c["messages"]: {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/turn"}}}
    defs = {"turn": turn}
    if mode == "kto":
        properties[c["kto_tag"]] = {"type": "boolean", "description": "true: the last answer is desirable"}
        required = [c["messages"], c["kto_tag"]]
    else:
        defs["answer"] = {"type": "object", "required": [role, content],
                          "properties": {role: {"enum": answers}, content: {"type": "string", "minLength": 1}}}
        properties |= {c["chosen"]: {"$ref": "#/$defs/answer"}, c["rejected"]: {"$ref": "#/$defs/answer"}}
        required = [c["messages"], c["chosen"], c["rejected"]]
    return {"type": "object", "required": required, "properties": properties, "$defs": defs}


# ------------------------------------------------------------------ alpaca

def _alpaca(attr: Attr, mode: str) -> dict:
    c = attr.columns
    text = {"type": "string", "minLength": 1}
    properties: dict = {}
    prompts = [col for col in (c["prompt"], c["query"]) if col]
    for col in prompts:
        properties[col] = {"type": ["string", "null"]}
    if c["history"]:  # LF ignores a history that is not a list
        pair = {"type": "array", "prefixItems": [{"type": "string"}, {"type": "string"}], "minItems": 2,
                "maxItems": 2}
        properties[c["history"]] = {"if": {"type": "array"}, "then": {"items": pair}}
    if mode == "kto":
        properties |= {c["response"]: text, c["kto_tag"]: {"type": "boolean"}}
        required = [c["response"], c["kto_tag"]]
    else:
        properties |= {c["chosen"]: text, c["rejected"]: text}
        required = [c["chosen"], c["rejected"]]
    body = {"type": "object", "required": required, "properties": properties}
    # At least one of the prompt columns holds text (LF joins them); with neither mapped no record is valid.
    body["anyOf"] = [{"required": [col], "properties": {col: text}} for col in prompts] or [False]
    return body


def _extras(attr: Attr, properties: dict) -> None:
    """tools and the system column: strings or null (media columns are checked in code only)."""
    c = attr.columns
    if c["system"]:
        properties[c["system"]] = {"type": ["string", "null"]}
    if c["tools"]:
        properties[c["tools"]] = {"type": ["string", "null"], "description": "a JSON string of the tool list"}


# ------------------------------------------------------------------ the schema of a dataset_info.json entry

STAGE_MODES = {"dpo": "pairwise", "rm": "pairwise", "kto": "kto"}


def entry_mode(entry: dict, stage: str | None) -> str:
    """The mode a stage reads the entry in; without a stage, the one the entry is shaped for."""
    if stage is not None:
        if stage not in STAGE_MODES:
            raise SchemaUnavailable(f"stage '{stage}' reads no preference records; expected one of "
                                    f"{', '.join(STAGE_MODES)}")
        return STAGE_MODES[stage]
    attr = Attr.from_entry(entry)
    if entry.get("ranking") is True:
        return "pairwise"
    if attr.columns["kto_tag"]:
        return "kto"
    raise SchemaUnavailable("the entry has neither \"ranking\": true (pairs) nor a kto_tag column (KTO); "
                            "say which with --stage dpo or --stage kto, or --config with the config that trains it")


def dataset_schema(name: str, entry: object, info_display: str, stage: str | None) -> dict:
    """The record schema of dataset `name` as LLaMA-Factory reads it with `stage` (or as the entry is shaped)."""
    if not isinstance(entry, dict):
        raise SchemaUnavailable(f"entry '{name}' in {info_display} is not an object")
    mode = entry_mode(entry, stage)
    kind = "KTO" if mode == "kto" else "pairwise"
    return record_schema(entry, mode, f"A record of dataset '{name}' ({info_display}), read as {kind} data")
