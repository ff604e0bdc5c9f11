"""The worker's TrainerCallback: run explanation in TensorBoard, live health alerts, `--stop-on`.

Imported only by the worker (`launcher/worker/main.py`), inside each rank; transformers and torch are imported inside
functions so that importing this module stays cheap and safe anywhere.

What it does (HF's own TensorBoardCallback writes the metrics themselves, at `<logdir>` =
$TENSORBOARD_LOGGING_DIR, which `dpo-launch train` sets to `<output_dir>/tensorboard`):

- rank 0 writes into `<logdir>/dpo-launch/` (a second TensorBoard run, so two writers never share a
  directory; TensorBoard reads only the newest file of a directory by default): the resolved config
  and the plan as text once, `progress/max_steps`, each alert as text, and `train/kl_mean` for KTO;
- every rank evaluates the alert rules on the logs (the values are the cross-rank means LF and HF
  all-reduce, so all ranks agree), and when an alert named in `--stop-on` fires, every rank sets
  `should_save` and `should_training_stop`, so a checkpoint is saved and all ranks stop together; when the
  trainer ends, `on_train_end` raises `AlertStop`, which skips LLaMA-Factory's after-training work (final
  weights, evaluation, plots: a stopped run is not a finished one) and makes every rank exit
  EXIT_ALERT_STOP (4), as launcher.worker.graceful_stop does for signals;
- rank 0 appends each alert to `<output_dir>/dpo-launch/alerts.jsonl` (the one that stopped the run with
  `"stopped_run": true`) and prints it to stderr.

Environment read here (set by `dpo-launch train`):
- `DPO_LAUNCH_STOP_ON`: comma-separated alert names that end the run; unset means `loss-not-finite`,
  `none` means no alert stops the run.
- `DPO_LAUNCH_ALERT_THRESHOLDS`: comma-separated `name=value` (see `launcher.observe.alerts.Thresholds`).

KTO's `kl`: LF sums it over the micro-batches of the logging window and over the ranks
(`train/kto/trainer.py`, `log`), so `train/kl` grows with logging_steps x accumulation x world size.
We also write `train/kl_mean` = kl / (steps in the window x gradient_accumulation_steps x world size),
the per-micro-batch value trl computes. LF emits eval's `kl` without an `eval_` prefix, so `train/kl`
also has points at evaluation steps (sums over eval batches); `train/kl_mean` covers training logs only.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from launcher.layout import OWN_DIR, alerts_file, run_dir, tensorboard_dir
from launcher.observe.alerts import Alert, AlertEngine, settings_from_env
from launcher.worker import console


def logdir(output_dir: Path | str) -> Path:
    """Where HF writes the event files: TENSORBOARD_LOGGING_DIR, as `dpo-launch train` sets it."""
    return Path(os.environ.get("TENSORBOARD_LOGGING_DIR") or tensorboard_dir(output_dir))


def rewrite_tags(logs: Mapping[str, Any]) -> dict[str, float]:
    """HF's rewrite_logs: `eval_x` -> `eval/x`, `test_x` -> `test/x`, else `train/x`; numbers only."""
    out = {}
    for key, value in logs.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        for prefix in ("eval", "test"):
            if key.startswith(prefix + "_"):
                out[f"{prefix}/{key[len(prefix) + 1:]}"] = float(value)
                break
        else:
            out[f"train/{key}"] = float(value)
    return out


def as_markdown_code(text: str) -> str:
    """TensorBoard renders text as markdown: indent by 4 so JSON shows verbatim."""
    return "\n".join("    " + line for line in text.splitlines())


class AlertStop(Exception):
    """An alert named in --stop-on ended the run; every rank saved `checkpoint` and exits EXIT_ALERT_STOP."""

    def __init__(self, alert: Alert, checkpoint: str | None):
        super().__init__(f"stopped by the {alert.rule} alert at step {alert.step}")
        self.alert = alert
        self.checkpoint = checkpoint


class RewardMetrics:
    """The callback's logic, free of transformers so it can be unit-tested; see `make_callbacks`."""

    def __init__(self, output_dir: Path | str, stop_on: tuple[str, ...] = (), thresholds=None):
        self.output_dir = Path(output_dir)
        self.stop_on = stop_on
        self.engine = AlertEngine(thresholds)
        self.stopped_by: Alert | None = None
        self.checkpoint: str | None = None
        self.writer = None
        self.is_main = False
        self._last_train_step = 0
        self._divisor_per_step = 1
        self._texts_written: set[str] = set()

    def on_train_begin(self, args, state, control, **kwargs):
        self.is_main = bool(state.is_world_process_zero)
        self._divisor_per_step = max(1, args.gradient_accumulation_steps) * max(1, args.world_size)
        self._last_train_step = state.global_step
        if self.is_main:
            self.writer = self._open_writer()
            self._write_run_explanation(state)
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.writer is not None:
            self._write_run_files()  # runtime.json appears only after the first batch
        metrics = rewrite_tags(logs or {})
        self._add_kl_mean(metrics, state.global_step, logs or {})
        for alert in self.engine.feed(state.global_step, metrics):
            stops = alert.rule in self.stop_on and self.stopped_by is None
            self._report(alert, stops)
            if stops:
                self.stopped_by = alert
                self.checkpoint = f"{args.output_dir}/checkpoint-{state.global_step}"
                control.should_save = True  # checked after on_log in _maybe_log_save_evaluate
                control.should_training_stop = True
                self._say(f"stopping the run at step {alert.step} because of {alert.rule} (--stop-on); "
                          f"saving a checkpoint first")
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.stopped_by is not None:  # the checkpoint is saved (HF's writers are closed: their callbacks ran)
            raise AlertStop(self.stopped_by, self.checkpoint)
        return control

    def _add_kl_mean(self, metrics: dict, step: int, logs: Mapping[str, Any]) -> None:
        if "kl" not in logs or "loss" not in logs:  # eval's kl comes without a prefix: skip it
            return
        steps = max(1, step - self._last_train_step)
        self._last_train_step = step
        metrics["train/kl_mean"] = float(logs["kl"]) / (steps * self._divisor_per_step)
        if self.writer is not None:
            self.writer.add_scalar("train/kl_mean", metrics["train/kl_mean"], step)
            self.writer.flush()

    def _open_writer(self):
        from torch.utils.tensorboard import SummaryWriter  # rank 0 only, created lazily

        return SummaryWriter(log_dir=str(logdir(self.output_dir) / OWN_DIR))

    def _write_run_explanation(self, state) -> None:
        self.writer.add_scalar("progress/max_steps", state.max_steps, 0)
        self._write_run_files()

    def _write_run_files(self) -> None:
        """resolved_config.json, plan.json and runtime.json as TensorBoard text, each once, when present."""
        for name in ("resolved_config", "plan", "runtime"):
            path = run_dir(self.output_dir) / f"{name}.json"
            if name in self._texts_written or not path.is_file():
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except OSError:
                continue
            self.writer.add_text(f"dpo-launch/{name}", as_markdown_code(text), 0)
            self._texts_written.add(name)
        self.writer.flush()

    def _report(self, alert: Alert, stops_run: bool = False) -> None:
        if not self.is_main:
            return
        self._say(alert.render())
        record = {**alert.to_json(), "wall_time": time.time(), **({"stopped_run": True} if stops_run else {})}
        path = alerts_file(self.output_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(_json_safe(record), allow_nan=False) + "\n")
        if self.writer is not None:
            self.writer.add_text(f"alerts/{alert.rule}", f"**{alert.severity}** step {alert.step}: "
                                 f"{alert.message}\n\n{alert.hint}", alert.step)
            self.writer.flush()

    def _say(self, text: str) -> None:
        if self.is_main:
            console.say(f"dpo-launch: {text}", sys.stderr)


def _json_safe(record: dict) -> dict:
    """Strict JSON: NaN and inf become the strings 'nan', 'inf', '-inf'."""
    values = {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in record["values"].items()}
    return {**record, "values": values}


def make_callbacks(output_dir: Path | str) -> list:
    """The callbacks the worker passes to `run_exp(callbacks=...)`."""
    from transformers import TrainerCallback

    stop_on, thresholds = settings_from_env(os.environ)
    callback_class = type("DpoLaunchRewardMetrics", (RewardMetrics, TrainerCallback), {})
    return [callback_class(output_dir, stop_on=stop_on, thresholds=thresholds)]


