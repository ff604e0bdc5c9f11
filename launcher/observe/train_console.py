"""What `dpo-launch train` shows of the run it launched while it runs, besides the ranks' own lines (dpo-launch's
lines, warnings and errors: launcher.run.tee).

- Not on a terminal (a pipe, a file, CI), or with `--no-monitor`: one line per logged step, read from the event
  files the ranks write (never from LLaMA-Factory's text), and one per evaluation:
  `step 5/30 · loss 0.6924 · acc 0.5000 · margin 0.0012 · chosen 0.0278 · rejected 0.0266 · lr 0.0010 · ETA 0:00:02`
  (`StepLines`). Alerts reach the console as the ranks' own lines, when they fire.
- On a terminal: the live view (launcher.observe.monitor) from the launch on; until the first event file exists
  it is one line saying the ranks are starting, for how long, and where their logs are (`LiveView`).

Both follow the run from a thread and stop with `stop()`, after reading what the run logged last.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from launcher.layout import logs_dir
from launcher.observe.monitor import fmt, fmt_duration, follow
from launcher.observe.run_state import RunDirError, RunState, Update, find_logdir

# (label, tag suffix) of a step line, in order; a metric the run does not log is left out
STEP_METRICS = (("loss", "loss"), ("acc", "rewards/accuracies"), ("margin", "rewards/margins"),
                ("chosen", "rewards/chosen"), ("rejected", "rewards/rejected"), ("lr", "learning_rate"))
POLL_SECONDS = 1.0


def step_line(state: RunState, step: int, kind: str = "train", rate: float | None = None) -> str:
    """One logged step (or evaluation) as a line; `rate` (steps per second) gives the ETA of a train step."""
    total = state.max_steps
    where = f"step {step}/{total}" if total else f"step {step}"
    parts = [where if kind == "train" else f"eval at {where}"]
    for label, suffix in STEP_METRICS:
        value = state.value_at(f"{kind}/{suffix}", step)
        if value is not None:
            parts.append(f"{label} {fmt(value)}")
    if kind == "train" and total:
        parts.append(f"ETA {fmt_duration((total - step) / rate) if rate else '-'}")
    return " · ".join(parts)


def new_lines(state: RunState, update: Update) -> list[str]:
    rate = state.steps_per_second()
    lines = [step_line(state, step, "train", rate) for step in update.train_steps]
    return lines + [step_line(state, step, "eval") for step in update.eval_steps]


def write_line(text: str) -> None:
    """To stdout as text (a closed pipe must not stop the launcher; see launcher.run.tee.write_out)."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        pass


class StepLines:
    """Prints a line per logged step and evaluation of the run in `output_dir`, from a thread. Created before the
    ranks start: what the event files already hold then (a resumed run's earlier launches, rewound to the
    checkpoint) is read once and not printed again."""

    def __init__(self, output_dir: Path, interval: float = POLL_SECONDS):
        self.output_dir = output_dir
        self.interval = interval
        self.state: RunState | None = None
        self._stop = threading.Event()
        self._stopped = False
        self._read_earlier_launches()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="dpo-launch-steps", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """After the job ended: print the steps it logged last, then return. Only the first call reads (train calls
        it when the job is gone, before the closing message, and again on its way out)."""
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        self._thread.join(timeout=30)
        self._print_new(final=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._print_new()

    def _read_earlier_launches(self) -> None:
        try:
            self.state = RunState(self.output_dir, find_logdir(self.output_dir))
            update = self.state.poll()
        except Exception:  # noqa: BLE001 - a new run (RunDirError: nothing logged yet), or files the thread's
            self.state = None  # first poll will say what is wrong with
            return
        self.state.take_warnings()
        if update.train_steps:
            write_line(f"dpo-launch train: steps up to {max(update.train_steps)} were logged by earlier launches "
                       "(dpo-launch monitor or TensorBoard show them); new steps follow")

    def _print_new(self, final: bool = False) -> None:
        with self._lock:  # the thread's last poll and stop()'s may overlap
            try:
                if self.state is None:
                    self.state = RunState(self.output_dir, find_logdir(self.output_dir))
                update = self.state.poll(final=final)
            except RunDirError:  # no event file yet
                return
            except Exception as exc:  # noqa: BLE001 - the step lines must never stop the run they show
                write_line(f"dpo-launch train: cannot read the run in {self.output_dir} any more "
                           f"({type(exc).__name__}: {exc}); training goes on without step lines: see dpo-launch "
                           "monitor or TensorBoard")
                self._stop.set()
                return
            self.state.take_warnings()  # `report` names damaged files; the step lines just skip them
            for line in new_lines(self.state, update):
                write_line(line)


class LiveView:
    """The live view of the run in `output_dir`, shown on the terminal from the launch on, from a thread."""

    def __init__(self, output_dir: Path, console=None):
        self.output_dir = output_dir
        self.console = console
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dpo-launch-monitor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            from rich.console import Console

            console = self.console or Console()
            if self._wait_for_events(console):
                follow(self.output_dir, wait=True, live=True, console=console, should_stop=self._stop.is_set)
            else:  # the job ended before the view saw its first step (a short run, a busy machine): its last state
                self._last_snapshot(console)
        except Exception as exc:  # noqa: BLE001 - the job's own output goes on below
            print(f"dpo-launch: the live view stopped ({type(exc).__name__}: {exc}); training goes on, its output "
                  "continues below", file=sys.stderr, flush=True)

    def _last_snapshot(self, console) -> None:
        try:
            find_logdir(self.output_dir)
        except RunDirError:  # it logged nothing: the summary says how it ended
            return
        follow(self.output_dir, once=True, console=console)

    def _wait_for_events(self, console) -> bool:
        """Until the ranks write their first event file, say that they are starting; False if the run ended
        before."""
        from rich.live import Live

        started = time.monotonic()
        with Live(self._starting(started), console=console, transient=True, refresh_per_second=4) as live:
            while not self._stop.is_set():
                try:
                    find_logdir(self.output_dir)
                    return True
                except RunDirError:
                    live.update(self._starting(started))
                    self._stop.wait(0.25)
        return False

    def _starting(self, started: float):
        from rich.text import Text

        return Text(f"dpo-launch train: starting the ranks: loading the model and the data "
                    f"({fmt_duration(time.monotonic() - started)}); their logs: {logs_dir(self.output_dir)}")
