"""`dpo-launch convert IN [--from FORMAT] --out OUT.jsonl [--to kto] [--register DATASET_INFO [--name NAME]]
[--map FIELD=COLUMN,...] [--weights DIMENSION=W,... [--min-margin M]]`

Converts preference data to LLaMA-Factory's ShareGPT ranking rows ({"conversations": [...], "chosen": {...},
"rejected": {...}}), or with `--to kto` to unpaired KTO rows ({"conversations": [...], "label": true|false}),
streaming JSON, JSON Lines and parquet input. OUT is written only when the run succeeds.

Formats (`--from`; detected from the first record when left out):
  trl               prompt/chosen/rejected strings, or prompt as a message list (TRL conversational)
  openai            input.messages + preferred_output + non_preferred_output (OpenAI preference
                    fine-tuning), or messages + rejected (messages end on the chosen reply or on the user
                    with chosen + rejected; rejected_message/rejected_response accepted)
  sharegpt-strings  conversations (from/value or role/content, user or human) + chosen/rejected strings
  hh                Anthropic HH-RLHF "\\n\\nHuman: ...\\n\\nAssistant: ..." transcripts in chosen/rejected
  ultrafeedback     chosen/rejected message lists that share all but the last assistant message
                    (AutoTrain's multi-turn shape too: its prompt list is rebuilt from chosen, as AutoTrain does)
  alpaca            instruction, input?, chosen, rejected, system?, history? ([[user, assistant], ...])

Custom column names: --map prompt=question,chosen=better_response,rejected=worse_response reads each input
column under the field name the formats use (before detection).

Multi-objective data: records with "dimensions": {"helpfulness": {"chosen": 4, "rejected": 2}, ...} and
--weights helpfulness=1,honesty=0.5 keep a pair only when the weighted score of chosen minus rejected is
above 0 and at least --min-margin (default 0); flipped, tied and below-margin pairs are dropped and counted.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from launcher.check.diagnostics import DEFAULT_CAP_PER_FILE, Diagnostic
from launcher.convert.converter import (
    ConvertError,
    ConvertResult,
    check_options,
    check_paths,
    convert,
    detect_format,
    format_named,
    summary,
)
from launcher.convert.options import ReadOptions, parse_column_map, parse_weights
from launcher.convert.register import dataset_entry, plan_registration
from launcher.convert.register import register as register_entry
from launcher.errors import EXIT_OK, EXIT_USER_ERROR, UsageError

OUT_SUFFIXES = (".jsonl", ".json")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("convert", help="convert TRL/OpenAI/HH/UltraFeedback/alpaca pairs to LF's format",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", metavar="IN", help="input file: .json (array or JSON Lines), .jsonl, .parquet")
    parser.add_argument("--from", dest="fmt", metavar="FORMAT", help="input format (default: detect it)")
    parser.add_argument("--out", required=True, metavar="OUT.jsonl", help="output JSON Lines file")
    parser.add_argument("--to", choices=("ranking", "kto"), default="ranking",
                        help="ranking: pairs for dpo/orpo/simpo (default); kto: one desirable and one "
                             "undesirable row per pair")
    parser.add_argument("--register", metavar="DATASET_INFO", help="add OUT to this dataset_info.json")
    parser.add_argument("--name", help="dataset name for --register (default: OUT's file name without suffix)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite an existing OUT and replace an existing dataset_info.json entry")
    parser.add_argument("--strict", action="store_true", help="fail (exit 1, OUT not written) if any record "
                                                              "cannot be converted")
    parser.add_argument("--verbose", "-v", action="store_true", help="list every skipped record")
    parser.add_argument("--map", dest="column_map", metavar="FIELD=COLUMN,...",
                        help="read input columns under the field names the formats use, e.g. "
                             "prompt=question,chosen=better_response,rejected=worse_response")
    parser.add_argument("--weights", metavar="DIMENSION=W,...",
                        help="multi-objective data: weigh the records' dimensions scores and drop the pairs whose "
                             "weighted preference flips or ties, e.g. helpfulness=1,honesty=0.5")
    parser.add_argument("--min-margin", dest="min_margin", type=float, metavar="M",
                        help="with --weights: also drop pairs whose weighted margin is below M (default 0)")
    parser.set_defaults(handler=run)


def run(input: str, out: str, fmt: str | None = None, to: str = "ranking", register: str | None = None,
        name: str | None = None, force: bool = False, strict: bool = False, verbose: bool = False,
        column_map: str | None = None, weights: str | None = None, min_margin: float | None = None) -> int:
    try:
        fmt = format_named(fmt)
        options = _read_options(column_map, weights, min_margin)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    source, target = Path(input), Path(out)
    name = _check_usage(target, register, name)
    try:
        return _run(source, target, fmt, to, register, name, force, strict, verbose, options)
    except ConvertError as exc:
        print(exc.diagnostic.render(), file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as exc:  # disk full, permissions, a failed rename: the old files are intact (atomic writes)
        where = exc.filename or target
        print(Diagnostic("error", "io", f"cannot write: {exc.strerror or exc}", file=str(where)).render(),
              file=sys.stderr)
        return EXIT_USER_ERROR


def _read_options(column_map: str | None, weights: str | None, min_margin: float | None) -> ReadOptions:
    if min_margin is not None and weights is None:
        raise ValueError("--min-margin needs --weights (the margin is the weighted preference's)")
    if min_margin is not None and not min_margin >= 0:
        raise ValueError(f"--min-margin: expected a number >= 0 but got {min_margin}")
    return ReadOptions(columns=parse_column_map(column_map) if column_map is not None else {},
                       weights=parse_weights(weights) if weights is not None else {},
                       min_margin=min_margin or 0.0)


def _check_usage(target: Path, register: str | None, name: str | None) -> str | None:
    if target.suffix.lower() not in OUT_SUFFIXES:
        raise UsageError(f"--out: expected a .jsonl or .json file name but got '{target}' "
                         "(LLaMA-Factory picks its reader from the extension)")
    if name is not None and register is None:
        raise UsageError("--name needs --register DATASET_INFO (the dataset_info.json to add the entry to)")
    return (name or target.stem) if register is not None else None


def _run(source: Path, target: Path, fmt: str | None, to: str, register: str | None, name: str | None,
         force: bool, strict: bool, verbose: bool, options: ReadOptions) -> int:
    check_paths(source, target, force)
    check_options(source, options)
    info = Path(register) if register is not None else None
    entry = dataset_entry(target, info, to) if info is not None else None
    if info is not None:
        plan_registration(info, name, entry, force)  # a name clash stops us before OUT is written
    if fmt is None:
        fmt, rule, index = detect_format(source, options)
        print(f"{source}: detected format '{fmt}' from record {index}: {rule}; pass --from to override",
              file=sys.stderr)
    result = ConvertResult()
    try:
        convert(source, target, fmt, to, strict, result, options)
    except ConvertError as exc:
        message = f"{exc.diagnostic.message}; {target} not written"
        raise ConvertError(dataclasses.replace(exc.diagnostic, message=message)) from None
    finally:
        _report_skipped(result.skipped, verbose)
    print(summary(result, to, target))
    if info is not None:
        try:
            action = register_entry(info, name, entry, force)
        except OSError as exc:
            raise ConvertError(Diagnostic("error", "io", f"cannot write: {exc.strerror or exc}; the file is "
                                          "unchanged", file=str(info))) from None
        print(_REGISTERED[action].format(name=name, info=info, file=entry["file_name"]))
    return EXIT_OK


_REGISTERED = {
    "create": "created {info} with '{name}' (file_name '{file}')",
    "add": "registered '{name}' in {info} (file_name '{file}')",
    "replace": "replaced '{name}' in {info} (file_name '{file}')",
    "unchanged": "'{name}' is already registered in {info} with file_name '{file}'; left unchanged",
}


def _report_skipped(skipped: list[Diagnostic], verbose: bool) -> None:
    shown = skipped if verbose else skipped[:DEFAULT_CAP_PER_FILE]
    for diagnostic in shown:
        print(diagnostic.render(), file=sys.stderr)
    if len(skipped) > len(shown):
        print(f"{skipped[0].file}: {len(skipped) - len(shown)} more records not converted; "
              "use --verbose to list them", file=sys.stderr)
