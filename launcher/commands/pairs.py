"""`dpo-launch pairs CANDIDATES --judge JUDGE --out PAIRS.jsonl [--register DATASET_INFO --name NAME]`:
preference pairs from the candidates `generate` wrote: per prompt the best and the worst response by the judge,
as LLaMA-Factory ShareGPT ranking data (which `validate` passes), with the judge's scores and verdicts kept in
PAIRS.audit.jsonl. OUT is never replaced without --force."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from launcher.commands.judging import add_judge_arguments, judge_options
from launcher.convert.converter import ConvertError
from launcher.convert.register import dataset_entry, plan_registration, register
from launcher.errors import EXIT_OK, UserError
from launcher.evaluate.generation import read_candidates
from launcher.evaluate.judges import make_judge
from launcher.evaluate.pairs import audit_path, build_pairs, write_jsonl


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("pairs", help="judge candidates into LLaMA-Factory preference pairs",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("candidates", metavar="CANDIDATES", help="the output of `dpo-launch generate`")
    parser.add_argument("--out", required=True, metavar="PAIRS.jsonl")
    parser.add_argument("--register", metavar="DATASET_INFO", help="add OUT to this dataset_info.json")
    parser.add_argument("--name", help="the dataset name for --register (default: OUT's file name)")
    parser.add_argument("--force", action="store_true", help="replace OUT, and an existing --register entry")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    add_judge_arguments(parser, required=True)
    parser.set_defaults(handler=run)


def run(candidates: str, out: str, register: str | None, name: str | None, force: bool, format: str,
        **judge_flags: object) -> int:
    options = judge_options(dict(judge_flags))
    assert options is not None  # argparse requires --judge
    target = Path(out)
    if target.exists() and not force:
        raise UserError(f"{target} exists; pass --force to replace it, or choose another --out")
    if register and not name:
        name = target.name.split(".")[0]
    info = Path(register) if register else None
    if info is not None:
        _check_registration(info, str(name), target, force)
    records = read_candidates(Path(candidates))
    template = _template(Path(candidates))
    judge = make_judge(options, target.with_name(target.name + ".judge"), target.with_name(
        target.name.removesuffix(".jsonl") + ".human-verdicts.jsonl"), template)
    result = build_pairs(records, judge)
    write_jsonl(audit_path(target), result.audit)
    summary = {"out": str(target), "audit": str(audit_path(target)), "judge": judge.name, "prompts": len(records),
               "pairs": len(result.rows), "outcomes": dict(result.counts), "judge_stats": getattr(judge, "stats", None)}
    if not result.rows:
        print(_text(summary).split("\n", 1)[-1], file=sys.stderr)  # the audit and judge lines
        raise UserError(f"no pairs: the judge preferred no candidate in any of the {len(records)} prompts "
                        f"({_outcomes(result.counts)}); see {audit_path(target)}")
    write_jsonl(target, result.rows)
    if info is not None:
        summary["registered"] = register_pairs(info, str(name), target, force)
    print(json.dumps(summary, indent=2) if format == "json" else _text(summary))
    return EXIT_OK


def _check_registration(info: Path, name: str, target: Path, force: bool) -> None:
    try:
        plan_registration(info, name, dataset_entry(target, info, "ranking"), force)
    except ConvertError as exc:
        found = exc.diagnostic
        raise UserError(f"{found.file}:{found.line}: {found.message} ({found.hint})") from None


def register_pairs(info: Path, name: str, target: Path, force: bool) -> str:
    return register(info, name, dataset_entry(target, info, "ranking"), force)


def _template(candidates: Path) -> str | None:
    try:
        meta = json.loads(candidates.with_name(candidates.name + ".meta.json").read_text(encoding="utf-8"))
        return meta["identity"]["model"]["template"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _outcomes(counts) -> str:
    return ", ".join(f"{n} {what}" for what, n in sorted(counts.items()))


def _text(summary: dict) -> str:
    lines = [f"wrote {summary['out']}: {summary['pairs']} pairs from {summary['prompts']} prompts judged by "
             f"{summary['judge']} ({_outcomes(summary['outcomes'])})", f"audit: {summary['audit']}"]
    stats = summary["judge_stats"]
    if stats:
        lines.append(f"judge requests: {stats['requests']} ({stats['retries']} retried, {stats['errors']} failed), "
                     f"{stats['unparseable']} unparseable answers, at most {stats['max_in_flight']} in flight")
    if summary.get("registered"):
        lines.append(f"registered in dataset_info.json: {summary['registered']}")
    return "\n".join(lines)
