"""The process that trains, one per rank: `python -m launcher.worker --args-file RESOLVED_CONFIG_JSON`.

`dpo-launch train` starts it under torchrun (or alone for one process). It reads the flat LLaMA-Factory argument
dict, makes the requested loss the loss that runs (launcher.worker.loss_patch), arms the first-batch loss self-test and
the runtime report (launcher.worker.selftest), then calls LLaMA-Factory's `run_exp(args=..., callbacks=[...])`
in-process, the only way to add callbacks (docs/upstream-notes.md#callbacks).

This is the only dpo-launch module that may import torch/llamafactory, and it does so inside `main` so that
`--help` and argument errors stay fast. Exit codes: 0 ok, 1 failure (one-line cause on stderr, traceback in
`<output_dir>/dpo-launch/logs/crash-rank-<N>.txt`), 4 stopped by an alert named in --stop-on, 130 SIGINT,
143 SIGTERM, 129 SIGHUP or a lost launcher. A signal during the training loop, or a --stop-on alert, saves a
checkpoint on every rank first (launcher.worker.graceful_stop, launcher.worker.metrics); under `dpo-launch
train` the rank also watches its launcher and keeps a heartbeat (launcher.worker.supervision).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from launcher.errors import EXIT_ALERT_STOP
from launcher.layout import logs_dir, tensorboard_dir
from launcher.lf.losses import PREF_LOSS_NAMES, precomputable_reference, resolve_loss
from launcher.versions import package_versions
from launcher.worker import console, loss_patch, ref_cache, selftest, upstream_fixes
from launcher.worker.graceful_stop import StopRequest, make_callback
from launcher.worker.metrics import AlertStop, make_callbacks
from launcher.worker.selftest import LossSelfTestFailed
from launcher.worker.supervision import Lifeline
from launcher.worker.supervision import make_callback as heartbeat_callbacks
from launcher.worker.write_failure import describe_write_failure

PREFIX = "dpo-launch worker"


class WorkerError(Exception):
    """A problem with the worker's own input; the message is the whole diagnostic."""


def read_args_file(path: Path) -> dict[str, Any]:
    """The flat LF argument dict, as `dpo-launch train` resolved it."""
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WorkerError(f"cannot read --args-file {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise WorkerError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    if not isinstance(values, dict):
        raise WorkerError(f"{path}: expected a JSON object of LLaMA-Factory arguments, got {type(values).__name__}")
    return values


def check_loss_name(cfg: dict[str, Any]) -> None:
    """Refuse an unknown pref_loss before loading anything (trl would otherwise fail at step 1, or not at all)."""
    name = cfg.get("pref_loss", "sigmoid")
    if cfg.get("stage") == "dpo" and name not in PREF_LOSS_NAMES:
        raise WorkerError(f"pref_loss: expected one of {', '.join(PREF_LOSS_NAMES)} but got {name!r}")


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def prepare_environment(cfg: dict[str, Any]) -> None:
    """TensorBoard files go to `<output_dir>/tensorboard`: transformers 5.x ignores `logging_dir` and reads
    TENSORBOARD_LOGGING_DIR (docs/upstream-notes.md#tensorboard-directory). The launcher sets it too; a direct run
    gets the same place."""
    if cfg.get("output_dir"):
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(tensorboard_dir(cfg["output_dir"])))


def announce_loss(cfg: dict[str, Any], patched: bool) -> None:
    """One line on rank 0 saying which loss trains, and why we had to intervene."""
    loss = resolve_loss(cfg)
    if rank() != 0:
        return
    trl = package_versions()["trl"]
    if not loss.silently_sigmoid_under_llamafactory_cli:
        note = "as LLaMA-Factory runs it"
    elif patched and loss.name == "kto_pair":
        note = f"computed by dpo-launch, as trl {trl} has no kto_pair (llamafactory-cli would train sigmoid)"
    elif patched:
        note = f"loss_type passed through to trl {trl} (llamafactory-cli would train sigmoid)"
    else:
        note = f"loss patch DISABLED by DPO_LAUNCH_DISABLE_LOSS_PATCH; trl {trl} may train sigmoid"
    console.say(f"{PREFIX}: training {'stage kto' if loss.name == 'kto' else 'pref_loss ' + loss.name}: {note}")


def train(cfg: dict[str, Any], stop: StopRequest, lifeline: Lifeline) -> None:
    """Patch, arm the probe, run LLaMA-Factory in this process; the stop-on-signal callback goes last, so
    the metrics writers are closed before it ends the run."""
    patched = loss_patch.install()
    upstream_fixes.install()  # multi-rank CPU resume (transformers 5.6 map_location "cpu:0"); see the module
    selftest.install_probe(selftest.FirstBatchProbe(cfg))
    announce_loss(cfg, patched)
    cache_root = ref_cache.cache_root_from_env()
    if cache_root is not None and precomputable_reference(cfg):
        ref_cache.install(*ref_cache.prepare(cfg, cache_root, rank()))
    from llamafactory.train.tuner import run_exp

    callbacks = [*make_callbacks(cfg.get("output_dir")), *heartbeat_callbacks(lifeline), make_callback(stop)]
    run_exp(args=dict(cfg), callbacks=callbacks)


def write_crash_log(cfg: dict[str, Any]) -> Path | None:
    """Keep the traceback for a bug report without flooding the terminal with it."""
    if not cfg.get("output_dir"):
        return None
    path = logs_dir(Path(cfg["output_dir"]).absolute()) / f"crash-rank-{rank()}.txt"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(traceback.format_exc(), encoding="utf-8")
    except OSError:
        return None
    return path


def close_progress_bars() -> None:
    """The trainer's tqdm bar is otherwise closed at exit, after our message, hiding the cause's line."""
    tqdm = sys.modules.get("tqdm.std")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        bar.close()


def fail(message: str) -> int:
    close_progress_bars()
    console.say(f"{PREFIX}: {message}" if not message.startswith(PREFIX) else message, sys.stderr)
    return 1


def interrupted(exc: KeyboardInterrupt, lifeline: Lifeline) -> int:
    """128 + the signal: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP or a lost launcher, with the checkpoint
    saved on the way out."""
    signum = getattr(exc, "signum", signal.SIGINT)
    checkpoint = getattr(exc, "checkpoint", None)
    close_progress_bars()
    saved = f"; saved {checkpoint}" if checkpoint else ""
    lost = lifeline.confirm_lost()
    cause = "stopped: its launcher was lost" if lost else f"interrupted by {signal.Signals(signum).name}"
    console.say(f"{PREFIX}: {cause} (rank {rank()}){saved}", sys.stderr)
    if lost:
        done = f"saved {checkpoint}" if checkpoint else "no checkpoint (it was not training yet)"
        lifeline.record(f"the launcher died; rank {rank()} stopped on its own: {done}", checkpoint)
    leave_process_group()
    return 128 + signum


def alert_stopped(exc: AlertStop) -> int:
    """EXIT_ALERT_STOP on every rank, with the checkpoint saved; the launcher says it once for the whole job.

    Once one rank has exited, torchrun SIGTERMs the others, which are exiting too. A stop signal is ignored from
    here on: the interpreter's teardown restores the default action of signals that have a Python handler (CPython
    Modules/signalmodule.c `_PySignal_Fini`), so a SIGTERM arriving then would turn this rank's exit 4 into a
    death by SIGTERM; an ignored signal stays ignored.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    close_progress_bars()
    saved = f"; saved {exc.checkpoint}" if exc.checkpoint else ""
    console.say(f"{PREFIX}: {exc} (--stop-on) (rank {rank()}){saved}", sys.stderr)
    leave_process_group()
    return EXIT_ALERT_STOP


def leave_process_group() -> None:
    """Every rank stopped at the same step, so the group can be torn down cleanly (LF does it only on success)."""
    dist = sys.modules.get("torch.distributed")
    try:
        if dist is not None and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # noqa: BLE001, S110 - leaving anyway; the process exits next
        pass


def training_failed(cfg: dict[str, Any], exc: Exception) -> int:
    """One line naming the cause (for a failed write: which file, which error, the last good checkpoint)."""
    crash = write_crash_log(cfg)
    where = f" (traceback in {crash})" if crash else ""
    described = describe_write_failure(exc, cfg.get("output_dir"))
    if described:
        return fail(f"training failed on rank {rank()}: {described}{where}")
    cause = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return fail(f"training failed on rank {rank()}: {type(exc).__name__}: {cause}{where}")


def run(args_file: Path) -> int:
    lifeline = Lifeline()
    console.install()  # before LLaMA-Factory logs anything: which lines the launcher's console shows
    stop = StopRequest()
    stop.install()  # from the start: a signal while loading ends the worker with 130/143/129, not a traceback
    try:
        cfg = read_args_file(args_file)
        check_loss_name(cfg)
        prepare_environment(cfg)
        lifeline.start(cfg.get("output_dir"))
    except WorkerError as exc:
        return fail(str(exc))
    except KeyboardInterrupt as exc:
        return interrupted(exc, lifeline)
    try:
        train(cfg, stop, lifeline)
    except (LossSelfTestFailed, ref_cache.RefCacheError) as exc:
        return fail(str(exc))
    except AlertStop as exc:
        return alert_stopped(exc)
    except KeyboardInterrupt as exc:
        return interrupted(exc, lifeline)
    except Exception as exc:  # LF raises ValueError/OSError etc. for bad runs; keep one line, log the rest
        return training_failed(cfg, exc)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="python -m launcher.worker",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--args-file", type=Path, required=True,
                        help="JSON object of LLaMA-Factory arguments (<output_dir>/dpo-launch/resolved_config.json)")
    return run(parser.parse_args(argv).args_file)


def exit_after_success() -> None:
    """End a finished run without the interpreter's teardown. After a finished multi-rank run, a rank's teardown
    can abort on gloo's C++ threads (SIGABRT, "terminate called without an active exception"; seen once here,
    see pytorch/pytorch#179291), which turns a finished run into a failed rank. Nothing is pending by now: the
    trainer's end closed the TensorBoard writers and LF's log pool, and checkpoints are written synchronously."""
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
