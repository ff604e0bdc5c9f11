"""Model, reference and adapter paths, an output_dir that would write into one of them, and the security
warnings of issue 6.

A value that looks like a hub id (`org/name`) and is not a local path gets a note: validate works offline.
A value that looks local must exist with the file LLaMA-Factory loads first (config.json for a model,
adapter_config.json for a LoRA adapter). Relative paths resolve from the working directory, as in LF.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from launcher.check.diagnostics import Diagnostic
from launcher.check.rules.context import RuleContext, path_kind
from launcher.check.schema_words import shown
from launcher.layout import checkpoint_problem

# huggingface_hub's repo id rule (utils/_validators.py): optional namespace, word characters, '-', '.';
# no leading or trailing '-'/'.', no '--' or '..'.
_HUB_ID = re.compile(r"^(?:\w(?:[\w.-]{0,94}\w)?/)?\w(?:[\w.-]{0,94}\w)?$")
MODEL_KEYS = ("model_name_or_path", "ref_model")
ADAPTER_KEYS = ("adapter_name_or_path", "ref_model_adapters")
# Local paths the job reads or writes; `deepspeed` is checked in deepspeed.py.
TREE_KEYS = ("model_name_or_path", "ref_model", "adapter_name_or_path", "ref_model_adapters", "dataset_dir",
             "media_dir", "tokenized_path", "output_dir")


def looks_like_hub_id(value: str) -> bool:
    return bool(_HUB_ID.match(value)) and "--" not in value and ".." not in value


def looks_local(value: str, cwd: Path) -> bool:
    """Explicitly a path, not a valid hub id, or its first component exists here (a partial local path)."""
    if value.startswith(("./", "../", "/", "~", ".\\")) or value in (".", "..") or os.path.isabs(value):
        return True
    return not looks_like_hub_id(value) or path_kind(cwd / value.split("/")[0])[0] != "missing"


def _path_values(ctx: RuleContext, key: str) -> list[str]:
    if key in ADAPTER_KEYS:
        return [name for name in ctx.names(key) or [] if name]
    value = ctx.text(key)
    return [value] if value else []


def model_and_adapter_paths(ctx: RuleContext) -> Iterator[Diagnostic]:
    for key in MODEL_KEYS + ADAPTER_KEYS:
        for value in _path_values(ctx, key):
            yield from _check_path(ctx, key, value, "adapter_config.json" if key in ADAPTER_KEYS else "config.json")


def _check_path(ctx: RuleContext, key: str, value: str, marker: str) -> Iterator[Diagnostic]:
    what = "adapter" if marker == "adapter_config.json" else "model"
    if not looks_local(value, ctx.cwd):
        yield ctx.note("hub-id-not-checked",
                       f"{key}: {shown(value)} looks like a hub id and is not a local path; not checked offline", key)
        return
    if value.startswith("~"):
        yield ctx.error("path-tilde", f"{key}: {shown(value)} starts with '~', which LLaMA-Factory does not expand",
                        key, f"write the full path, e.g. {shown(os.path.expanduser(value))}")
        return
    path = ctx.cwd / value
    kind, reason = path_kind(path)
    if kind in ("missing", "unusable"):
        why = "does not exist" if kind == "missing" else f"cannot be used ({reason})"
        yield ctx.error(f"{what}-path-not-found", f"{key}: local {what} directory {shown(value)} {why} "
                        f"(resolved from {ctx.cwd})", key,
                        "relative paths resolve from the directory you launch in, as in LLaMA-Factory; "
                        "fix the path or run from the right directory")
    elif kind != "dir":
        yield ctx.error(f"{what}-path-not-directory",
                        f"{key}: expected a {what} directory but {shown(value)} is a file",
                        key, f"point {key} at the directory that holds {marker}")
    elif path_kind(path / marker)[0] != "file":
        yield ctx.error(f"{what}-config-missing", f"{key}: {shown(value)} has no {marker}, so it is not a {what} "
                        "directory", key, _missing_marker_hint(path, what))


def _missing_marker_hint(path: Path, what: str) -> str:
    if what == "model" and path_kind(path / "adapter_config.json")[0] == "file":
        return ("it holds a LoRA adapter: set adapter_name_or_path to it and model_name_or_path to its base model; "
                'LLaMA-Factory stops with "OSError: Failed to load tokenizer."')
    if what == "model":
        return ("point it at the directory with config.json and the tokenizer; "
                'LLaMA-Factory stops with "Failed to load tokenizer."')
    return "point it at the directory that holds adapter_config.json (a PEFT adapter, e.g. an SFT run's output_dir)"


def trust_remote_code(ctx: RuleContext) -> Iterator[Diagnostic]:
    if ctx.flag("trust_remote_code"):
        yield ctx.warning(
            "trust-remote-code",
            "trust_remote_code: true executes Python code from the model repository (its modeling and tokenizer "
            "files) with your permissions, for the policy and for the reference model",
            "trust_remote_code",
            "keep it only for a model whose code you have read or trust, and pin model_revision to a commit")


def paths_outside_working_tree(ctx: RuleContext) -> Iterator[Diagnostic]:
    """A relative path that climbs out of the working tree (`../data`): it resolves against the directory the
    command runs in, so the same config reads or writes somewhere else when run from another directory, a place
    the project does not contain. An absolute path says exactly where and is not flagged; neither is a path
    inside the tree (a symlink there that points outside was put there on purpose)."""
    root, tree = _real(ctx.cwd), Path(os.path.normpath(ctx.cwd))
    for key in TREE_KEYS:
        for value in _tree_values(ctx, key):
            if value.startswith("~") or os.path.isabs(value) or not looks_local(value, ctx.cwd):
                continue
            lexical = Path(os.path.normpath(ctx.cwd / value))  # `..` taken away by name, links not followed
            if root and lexical != tree and tree not in lexical.parents:
                verb = "writes to" if key == "output_dir" else "reads from"
                yield ctx.warning("path-outside-working-tree",
                                  f"{key}: {shown(value)} is relative and climbs out of the working tree ({root}): "
                                  f"it resolves against the directory the command runs in, so from here the job "
                                  f"{verb} {_real(ctx.cwd / value)}, and from any other directory somewhere else",
                                  key, "use an absolute path for a location outside the project, or a path inside "
                                  "it")


def _real(path: Path) -> Path | None:
    """The path with symlinks resolved (a link inside the tree may point outside), None when unusable."""
    try:
        return Path(os.path.realpath(path))
    except (OSError, ValueError):
        return None


def _tree_values(ctx: RuleContext, key: str) -> list[str]:
    if key in MODEL_KEYS + ADAPTER_KEYS:
        return _path_values(ctx, key)
    value = ctx.text(key)
    return [value] if value and value != "ONLINE" else []


def resume_checkpoint_exists(ctx: RuleContext) -> Iterator[Diagnostic]:
    """transformers' Trainer.train opens resume_from_checkpoint only after the model and data are loaded: a folder
    that is missing or holds no complete checkpoint fails there, seconds to minutes in."""
    value = ctx.text("resume_from_checkpoint")
    if not value:
        return
    problem = resume_problem(ctx.cwd / value, deepspeed=ctx.is_set("deepspeed"))
    if problem:
        yield ctx.error("resume-checkpoint-invalid", f"resume_from_checkpoint: {shown(value)} {problem}",
                        "resume_from_checkpoint",
                        "point it at a checkpoint-N folder, or remove it (`dpo-launch train --resume` picks the last "
                        f'complete one); transformers stops with "Can\'t find a valid checkpoint at {value}"')


def resume_problem(path: Path, deepspeed: bool) -> str | None:
    """Why `path` is not a checkpoint the Trainer can resume from (launcher.layout.checkpoint_problem, plus the
    folder DeepSpeed resumes from: transformers' integrations/deepspeed.py `deepspeed_load_checkpoint`), or None."""
    kind, reason = path_kind(path)
    if kind != "dir":
        return {"missing": "does not exist", "file": "is a file"}.get(kind, reason or "is not a directory")
    if deepspeed and not any(entry.startswith("global_step") for entry in _entries(path)):
        return "has no global_step* folder, which DeepSpeed resumes from"
    problem = checkpoint_problem(path)
    return f"is not a complete checkpoint: {problem}" if problem else None


def _entries(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def output_dir_holds_an_input(ctx: RuleContext) -> Iterator[Diagnostic]:
    """output_dir equal to or containing a model or adapter the run reads: the trainer writes checkpoints and
    weights there, dpo-launch would take the base weights for a previous run, and --overwrite would delete them."""
    output = ctx.text("output_dir")
    if not output or output.startswith("~"):
        return
    out = _real(ctx.cwd / output)
    for key in MODEL_KEYS + ADAPTER_KEYS:
        for value in _path_values(ctx, key):
            if value.startswith("~") or not looks_local(value, ctx.cwd):
                continue
            read = _real(ctx.cwd / value)
            if out is None or read is None or (read != out and out not in read.parents):
                continue
            where = "is" if read == out else "contains"
            yield ctx.error("output-dir-holds-input",
                            f"output_dir: {shown(output)} {where} {key} {shown(value)} ({read}): training writes "
                            "checkpoints and weights into output_dir, and --overwrite removes what it finds there",
                            "output_dir", "choose an output_dir outside every model and adapter the run reads")




RULES = (model_and_adapter_paths, output_dir_holds_an_input, trust_remote_code, paths_outside_working_tree,
         resume_checkpoint_exists)
