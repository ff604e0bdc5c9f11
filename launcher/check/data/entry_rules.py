"""Entry-level rules for a dataset_info.json entry the config uses (`data/parser.py`, `data/loader.py:178`)."""

from __future__ import annotations

from launcher.check.data.dataset_info import DatasetInfo
from launcher.check.data.verdicts import Attr
from launcher.check.diagnostics import ERROR, WARNING, Diagnostic


def entry_rules(info: DatasetInfo, name: str, entry: dict, mode: str | None) -> list[Diagnostic]:
    attr = Attr.from_entry(entry)
    found = _ranking(info, name, entry, mode) if mode else []
    # Data shaped for the other stage: the stage is the mistake, so the columns are checked for the data's own.
    found += _columns(info, name, entry, attr, records_mode(entry, mode) if mode else None)
    if attr.formatting in ("sharegpt", "openai"):
        found += _tags(info, name, entry, attr)
    if attr.formatting == "openai":
        found.append(info.diagnostic(WARNING, "formatting-openai", f"entry '{name}': formatting openai appends "
                                     "'detailed thinking off' to every system prompt (LLaMA-Factory #9112)",
                                     name, "formatting", key=False,
                                     hint="prefer formatting sharegpt with role_tag role, content_tag content, "
                                          "user_tag user, assistant_tag assistant, system_tag system"))
    return found


def records_mode(entry: dict, mode: str) -> str:
    """The mode to read the entry's records in: the stage's, unless the entry is plainly shaped for the other
    stage (a kto_tag column and no ranking under dpo; chosen/rejected and ranking: true under kto)."""
    attr = Attr.from_entry(entry)
    ranking = entry.get("ranking", False)
    if mode == "pairwise" and ranking is False and attr.columns["kto_tag"]:
        return "kto"
    if mode == "kto" and ranking is True and attr.columns["chosen"] and not attr.columns["kto_tag"]:
        return "pairwise"
    return mode


def _ranking(info: DatasetInfo, name: str, entry: dict, mode: str) -> list[Diagnostic]:
    ranking = entry.get("ranking", False)
    # LF tests `ranking is False` for rm-style stages and `ranking is True` for the others (loader.py:178).
    columns = Attr.from_entry(entry).columns
    if mode == "pairwise" and ranking is False and columns["kto_tag"]:
        message = ("the entry maps a kto_tag column: it is KTO data (one answer per record, judged desirable or "
                   "not), but stage dpo needs pairs")
        hint = "train it with stage: kto; or, for pairwise data, map chosen/rejected and add \"ranking\": true"
    elif mode == "pairwise" and ranking is False:
        message, hint = "ranking is false (the default) but stage dpo needs pairwise data", 'add "ranking": true'
    elif mode == "kto" and ranking is True and not columns["kto_tag"] and columns["chosen"]:
        message = "ranking is true and the entry maps chosen/rejected: it is pairwise data, but stage kto needs " \
            "unpaired data with a kto_tag column"
        hint = "train it with stage: dpo; or convert it with `dpo-launch convert --to kto`"
    elif mode == "kto" and ranking is True:
        message, hint = "ranking is true but stage kto needs unpaired data with a kto_tag column", \
            'remove "ranking" or set it to false'
    else:
        return []
    return [info.diagnostic(ERROR, "ranking-stage", f"entry '{name}': {message}; LLaMA-Factory raises 'The "
                            "dataset is not applicable in the current training stage.'", name, "ranking",
                            hint=hint, key=False)]


def _columns(info: DatasetInfo, name: str, entry: dict, attr: Attr, mode: str | None) -> list[Diagnostic]:
    needed = []  # (column, severity, consequence)
    if mode == "pairwise":
        needed += [(c, ERROR, "LLaMA-Factory crashes with KeyError: None") for c in ("chosen", "rejected")]
    if mode == "kto":
        needed.append(("kto_tag", ERROR, "no record counts as KTO data, so LLaMA-Factory drops them all"))
    if attr.formatting in ("sharegpt", "openai"):
        needed.append(("messages", ERROR, "LLaMA-Factory crashes with KeyError: None"))
    elif mode == "kto":
        needed.append(("response", ERROR, "LLaMA-Factory crashes with KeyError: None"))
    found = [_unmapped(info, name, entry, column, severity, why) for column, severity, why in needed
             if not attr.columns[column]]
    if attr.formatting == "alpaca" and not (attr.columns["prompt"] or attr.columns["query"]):
        found.append(_unmapped(info, name, entry, "prompt", WARNING, "every prompt is empty"))
    return found


def _unmapped(info: DatasetInfo, name: str, entry: dict, column: str, severity: str, why: str) -> Diagnostic:
    columns = entry["columns"] if isinstance(entry.get("columns"), dict) else {}
    how = "is mapped to an empty string" if columns.get(column) == "" else "is not mapped"
    if "columns" in entry and column not in columns and column in ("prompt", "messages", "response"):
        how += " (once columns is given, unlisted columns have no default)"
    return info.diagnostic(severity, "column-unmapped", f"entry '{name}': column {column} {how}; {why}", name,
                           "columns", column, hint=f'add "{column}": "<key in the records>" to columns')


def _tags(info: DatasetInfo, name: str, entry: dict, attr: Attr) -> list[Diagnostic]:
    if "tags" not in entry:
        return []
    missing = [tag for tag in ("role_tag", "content_tag", "user_tag", "assistant_tag") if not attr.tags[tag]]
    if not missing:
        return []
    return [info.diagnostic(ERROR, "tags-incomplete", f"entry '{name}': tags gives no {', '.join(missing)}; once "
                            "tags is given, unlisted tags are None, not their defaults, so LLaMA-Factory "
                            + ("crashes with KeyError: None" if {"role_tag", "content_tag"} & set(missing)
                               else "drops every record"), name, "tags",
                            hint="declare role_tag and content_tag (the keys of each message, e.g. role and "
                                 "content) and every role name the data uses")]
