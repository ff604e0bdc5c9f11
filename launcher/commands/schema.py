"""`dpo-launch schema --dataset NAME [--config CONFIG | --dataset-dir DIR] [--stage dpo|kto]`

Prints the JSON Schema of one record of a dataset_info.json entry, with the entry's own columns and tags, for
editors and tools such as check-jsonschema. The schema says what JSON Schema can say (types, required keys,
role values, non-empty contents); `dpo-launch validate` checks the rest (role alternation, turn parity, identical
pairs, tools JSON, media). The schemas for LLaMA-Factory's default tags ship in schemas/record-*.schema.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from launcher.check.config import ConfigLoadError, load_config
from launcher.check.data.dataset_info import load_dataset_info
from launcher.check.data.record_schema import SchemaUnavailable, dataset_schema
from launcher.check.diagnostics import suggestion_hint
from launcher.errors import EXIT_OK, UsageError, UserError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("schema", help="print the JSON Schema of a dataset's records",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, metavar="NAME", help="the entry's name in dataset_info.json")
    parser.add_argument("--config", metavar="CONFIG", help="read dataset_dir and stage from this config")
    parser.add_argument("--dataset-dir", "--dataset_dir", dest="dataset_dir", metavar="DIR",
                        help="the folder holding dataset_info.json (default: data, as LLaMA-Factory's default)")
    parser.add_argument("--stage", choices=("dpo", "kto"),
                        help="read the records as this stage does (default: the config's, else the entry's shape)")
    parser.set_defaults(handler=run)


def run(dataset: str, config: str | None = None, dataset_dir: str | None = None, stage: str | None = None) -> int:
    if config is not None and dataset_dir is not None:
        raise UsageError("--config and --dataset-dir both say where dataset_info.json is: give one")
    folder, config_stage = _from_config(config) if config is not None else (dataset_dir or "data", None)
    display = str(Path(folder) / "dataset_info.json")
    info, problems = load_dataset_info(Path.cwd() / folder / "dataset_info.json", display)
    if info is None:
        raise UserError(problems[0].render())
    if dataset not in info.entries:
        hint = suggestion_hint(dataset, info.entries)
        raise UserError(f"dataset '{dataset}' is not defined in {display}" + (f" ({hint})" if hint else ""))
    try:
        schema = dataset_schema(dataset, info.entries[dataset], display, stage or config_stage)
    except SchemaUnavailable as exc:
        raise UserError(f"{display}: entry '{dataset}': {exc}") from None
    json.dump(schema, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return EXIT_OK


def _from_config(config: str) -> tuple[str, str | None]:
    """(dataset_dir, stage) of a config, with LLaMA-Factory's default dataset_dir."""
    try:
        values = load_config(config).values
    except ConfigLoadError as exc:
        raise UserError(exc.diagnostics[0].render()) from None
    folder, stage = values.get("dataset_dir", "data"), values.get("stage")
    if not isinstance(folder, str):
        raise UserError(f"{config}: dataset_dir must be a string")
    return folder, stage if isinstance(stage, str) else None
