"""The `validate --stats` worker: token statistics with the config's tokenizer and LLaMA-Factory's own code.

    python -m launcher.stats.worker --args-file <stats_dir>/request.json

Started by `launcher.stats.runner` (the CLI side, which never imports transformers or llamafactory) as a separate
process. The request names the config values, the working directory, the datasets and where to write; the
worker writes `stats.json` ({"ok": true, ...} or {"ok": false, "error": {...}}) and one histogram PNG per
dataset there, and exits 0, or 1 when the user's tokenizer/template/arguments cannot be loaded.

LF pieces reused: `HfArgumentParser` over its ModelArguments/DataArguments/FinetuningArguments,
`load_tokenizer`, `get_template_and_fix_tokenizer`, `get_dataset_list` (the DatasetAttr of each name),
the dataset converters and `infer_seqlen`. Records are read with launcher.check.data.files (the validate reader).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from launcher.atomic import write_text_atomic
from launcher.check.data.files import iter_records, resolve_files
from launcher.stats.measure import CachedTokenizer, Columns, Measurer
from launcher.stats.plot import write_histogram
from launcher.stats.summary import kto_summary, pairwise_summary

# Records are split between processes in blocks of this many, by index: block b goes to process b % n.
BLOCK = 1000
# Records checked against LF's exact path (the real tokenizer) before trusting the fast path.
SAMPLE_CHECK = 200
_STATE: dict = {}  # set before forking, read by the pool's processes


class StatsError(Exception):
    """A user-facing failure: code, config key, message and hint for a Diagnostic."""
    def __init__(self, code: str, key: str | None, message: str, hint: str | None = None):
        super().__init__(message)
        self.code, self.key, self.message, self.hint = code, key, message, hint

    def as_dict(self) -> dict:
        return {"code": self.code, "key": self.key, "message": self.message, "hint": self.hint}


class _Row(dict):
    """A record as `datasets` hands it to LF's converter: a column the record lacks reads as None."""
    def __missing__(self, key):
        return None


def load_arguments(config: dict):
    """LF's own argument dataclasses, with their __post_init__ (e.g. packing shortens cutoff_len by 1)."""
    from llamafactory.hparams import DataArguments, FinetuningArguments, ModelArguments
    from transformers import HfArgumentParser

    parser = HfArgumentParser((ModelArguments, DataArguments, FinetuningArguments))
    try:
        return parser.parse_dict(config, allow_extra_keys=True)
    except (ValueError, TypeError) as exc:
        raise StatsError("stats-arguments", None, f"LLaMA-Factory rejects the arguments: {exc}") from exc


def load_template(model_args, data_args):
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.model import load_tokenizer

    try:
        tokenizer = load_tokenizer(model_args)["tokenizer"]
    except Exception as exc:  # LF wraps every failure in OSError("Failed to load tokenizer.")
        cause = exc.__cause__ or exc
        raise StatsError("stats-tokenizer", "model_name_or_path",
                         f"cannot load the tokenizer of {model_args.model_name_or_path!r}: "
                         f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}".rstrip(": "),
                         "the statistics need the model's tokenizer: a local folder with tokenizer files, or a Hub "
                         "id reachable from here (set HF_HOME/HF_ENDPOINT, or HF_HUB_OFFLINE=1 for the cache)") from exc
    try:
        template = get_template_and_fix_tokenizer(tokenizer, data_args)
    except ValueError as exc:
        raise StatsError("stats-template", "template", f"LLaMA-Factory rejects the template: {exc}") from exc
    return tokenizer, template


def dataset_source(name: str, data_args, cwd: Path):
    """(DatasetAttr, converter, [DataFile]) for one dataset name, resolved as LF and `validate` resolve it."""
    from llamafactory.data.converter import get_dataset_converter
    from llamafactory.data.parser import get_dataset_list

    attr = get_dataset_list([name], data_args.dataset_dir)[0]
    files, error, _ = resolve_files(data_args.dataset_dir, attr.dataset_name, cwd)
    if error:
        raise StatsError("stats-dataset", "dataset", f"dataset '{name}': {error}")
    return attr, get_dataset_converter(attr.formatting, attr, data_args), files


def iter_examples(files, converter, max_samples: int | None, part: int = 0, parts: int = 1):
    """(global index, converted example or a reason string) for this process's share of the records."""
    offset = 0
    for data_file in files:
        count = 0
        for index, _, record in iter_records(data_file, check_keys=False):  # validate has checked them
            count = index + 1
            position = offset + index
            if max_samples is not None and position >= max_samples:
                return
            if (position // BLOCK) % parts != part:
                continue
            yield position, convert(converter, record)
        offset += count


def convert(converter, record):
    if type(record) is not dict:
        return "unreadable"
    try:
        return converter(_Row(record))
    except Exception:  # noqa: BLE001 - LF would crash on it; validate already reported where and why
        return "unreadable"


def measure_part(part: int) -> tuple[dict, dict]:
    """Measure one process's share; runs in a pool process (forked, so _STATE is inherited)."""
    measurer, files, converter, max_samples, parts = (_STATE[k] for k in (
        "measurer", "files", "converter", "max_samples", "parts"))
    columns = Columns(measurer.fields())
    counts = {"records": 0, "dropped": 0, "unreadable": 0}
    measure, dropped, add = measurer.measure, measurer.dropped, columns.add
    for index, example in iter_examples(files, converter, max_samples, part, parts):
        counts["records"] += 1
        if type(example) is str:
            counts["unreadable"] += 1
        elif dropped(example):
            counts["dropped"] += 1
        else:
            add(measure(index, example))
    return columns.data, counts


def pick_mode(setup: dict, files, converter, max_samples) -> str:
    """The fastest tokenizer mode that gives LF's exact lengths (the real tokenizer, uncached, through
    `encode_oneturn`) on the first SAMPLE_CHECK measurable records."""
    exact = make_measurer(setup, setup["tokenizer"])
    sample = []
    for index, example in iter_examples(files, converter, max_samples):
        if type(example) is not str and not exact.dropped(example):
            sample.append((index, example, exact.measure(index, example)))
        if len(sample) >= SAMPLE_CHECK:
            break
    for mode in CachedTokenizer.available_modes(setup["tokenizer"]):
        candidate = make_measurer(setup, CachedTokenizer(setup["tokenizer"], mode))
        if all(candidate.measure(index, example) == expected for index, example, expected in sample):
            return mode
    return "exact"


def make_measurer(setup: dict, tokenizer):
    return Measurer(setup["template"], tokenizer, setup["data_args"].cutoff_len, setup["infer_seqlen"], setup["kto"])


def run_parts(parts: int) -> tuple[dict, dict]:
    """All records, split over `parts` forked processes (one process: in place), merged in record order."""
    if parts == 1:
        return measure_part(0)
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(parts) as pool:
        results = pool.map(measure_part, range(parts))
    counts = {name: sum(r[1][name] for r in results) for name in results[0][1]}
    merged = {name: [v for r in results for v in r[0][name]] for name in results[0][0]}
    order = sorted(range(len(merged["index"])), key=merged["index"].__getitem__)
    return {name: [values[i] for i in order] for name, values in merged.items()}, counts


def process_count(requested: int | None) -> int:
    """The request's count, else DPO_LAUNCH_STATS_PROCESSES, else the usable CPUs (at most 8)."""
    requested = requested or int(os.environ.get("DPO_LAUNCH_STATS_PROCESSES") or 0)
    if requested:
        return max(1, requested)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, 8))


def measure_dataset(name: str, setup: dict, request: dict) -> dict:
    """Statistics of one dataset name (all its files, first max_samples rows, as LF loads them)."""
    attr, converter, files = dataset_source(name, setup["data_args"], Path.cwd())
    data_args, finetuning_args, kto = setup["data_args"], setup["finetuning_args"], setup["kto"]
    mode = pick_mode(setup, files, converter, data_args.max_samples)
    measurer = make_measurer(setup, CachedTokenizer(setup["tokenizer"], mode))
    parts = process_count(request.get("processes"))
    _STATE.update(measurer=measurer, files=files, converter=converter, max_samples=data_args.max_samples, parts=parts)
    started = time.perf_counter()
    columns, counts = run_parts(parts)
    if kto:
        stats = kto_summary(columns, data_args.cutoff_len, finetuning_args.kto_chosen_weight,
                            finetuning_args.kto_rejected_weight)
    else:
        stats = pairwise_summary(columns, data_args.cutoff_len)
    stats.update(counts, files=[f.display for f in files], with_media=sum(columns["media"]),
                 num_samples_ignored=attr.num_samples, tokenizer_mode=mode, processes=parts,
                 seconds=round(time.perf_counter() - started, 3))
    stats["histogram"] = plot(name, columns, stats, Path(request["stats_dir"]))
    return stats


def plot(name: str, columns: dict, stats: dict, stats_dir: Path) -> str | None:
    return write_histogram(name, columns, stats, stats_dir)


def load_setup(config: dict) -> dict:
    from llamafactory.data.processor.processor_utils import infer_seqlen

    model_args, data_args, finetuning_args = load_arguments(config)
    tokenizer, template = load_template(model_args, data_args)
    return {"tokenizer": tokenizer, "template": template, "data_args": data_args, "infer_seqlen": infer_seqlen,
            "finetuning_args": finetuning_args, "kto": config.get("stage") == "kto",
            "template_name": data_args.template, "model": model_args.model_name_or_path}


def compute(request: dict) -> dict:
    setup = load_setup(request["config"])
    # request["datasets"]: name -> what the run uses it for ("train", "eval"), as launcher.stats.runner found them
    datasets = {name: {**measure_dataset(name, setup, request), "used_for": uses}
                for name, uses in request["datasets"].items()}
    return {"ok": True, "model": setup["model"], "template": setup["template_name"],
            "cutoff_len": setup["data_args"].cutoff_len, "datasets": datasets}


def import_llamafactory() -> None:
    """The modules compute() needs, imported ahead of the request."""
    import llamafactory.data.converter  # noqa: F401
    import llamafactory.data.parser  # noqa: F401
    import llamafactory.data.processor.processor_utils  # noqa: F401
    import llamafactory.data.template  # noqa: F401
    import llamafactory.hparams  # noqa: F401
    import llamafactory.model  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="python -m launcher.stats.worker")
    parser.add_argument("--args-file", required=True,
                        help="the request JSON, or '-' to import first and then read it from standard input")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # we fork; tokenizers would warn and disable it anyway
    if args.args_file == "-":
        # Started before the CLI validates: the imports (several seconds) overlap with validation.
        import_llamafactory()
        text = sys.stdin.read()
        if not text.strip():  # validation found errors: nothing to measure
            return 0
        request = json.loads(text)
    else:
        request = json.loads(Path(args.args_file).read_text(encoding="utf-8"))
    try:
        result, code = compute(request), 0
    except StatsError as exc:
        result, code = {"ok": False, "error": exc.as_dict()}, 1
    write_json(Path(request["result_file"]), result)
    return code


def write_json(path: Path, payload: dict) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    exit_code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The result is written (atomically) and flushed: skip the interpreter's teardown, which takes 1-2 s with
    # torch and transformers loaded. An exception above still exits the normal way, with its traceback.
    os._exit(exit_code)
