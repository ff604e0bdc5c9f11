"""Ctrl-C, SIGTERM and SIGHUP during training: finish the step, save a checkpoint on every rank, exit 130 / 143 /
129. A rank whose launcher is lost stops the same way (launcher.worker.supervision sends itself SIGHUP).

Imported only by the worker (`launcher/worker/main.py`), inside each rank; torch and transformers are imported inside
functions, so importing this module is cheap and safe anywhere.

How the signal travels: `dpo-launch train` forwards SIGINT/SIGTERM/SIGHUP to the job's process group. Alone, the
worker is in that group; under torchrun (which starts each rank in a session of its own) torchrun's agent
turns the signal into a `SignalException`, sends the same signal to every rank and SIGKILLs the ranks still
alive after its shutdown timeout (`TORCH_ELASTIC_SHUTDOWN_TIMEOUT`, 30 s unless set), see
torch/distributed/elastic/agent/server/api.py `run` and multiprocessing/api.py `_close`.

In a rank, the handler only records the signal (`StopRequest`). At the end of each optimizer step the
callback (`StopOnSignal.on_step_end`) takes the MAX of that record over all ranks when torch.distributed is
initialized, so every rank decides at the same step and none is left waiting in a collective; then it asks
the trainer to log, save `checkpoint-<step>` and stop. When the trainer has saved and ends, the callback
raises `Interrupted`, which skips LLaMA-Factory's after-training work (final weights, evaluation, plots:
an interrupted run is not a finished one) and makes the worker exit 128 + the signal number.
Outside the training loop (loading, after the last step) a signal interrupts at once, as it did before.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

from launcher.worker import console

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by SIGINT, SIGTERM or SIGHUP; `exit_code` is what the worker exits with."""

    def __init__(self, signum: int, checkpoint: str | None = None):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.checkpoint = checkpoint

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopRequest:
    """The first stop signal this rank received; the signal handler does nothing else while training runs."""

    def __init__(self) -> None:
        self.signum = 0
        self.in_training_loop = False

    def install(self) -> None:
        for sig in HANDLED:
            signal.signal(sig, self.handle)

    def handle(self, signum: int, _frame: Any) -> None:
        self.signum = self.signum or signum
        if not self.in_training_loop:  # nothing to checkpoint yet (or any more): stop now
            raise Interrupted(signum)


def agreed_signal(local: int, device: Any) -> int:
    """The largest signal number any rank recorded (0 for none); the local one when not distributed.

    One small all-reduce per step; `device` is the trainer's (CPU for gloo, the rank's GPU for NCCL).
    """
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return local
    flag = torch.tensor([local], dtype=torch.int64, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item())


class StopOnSignal:
    """The callback's logic, free of transformers so it can be unit-tested; see `make_callback`."""

    def __init__(self, request: StopRequest, announce=None):
        self.request = request
        self.stopped_at: int | None = None
        self.checkpoint: str | None = None
        self.announce = announce or _announce

    def on_train_begin(self, args, state, control, **kwargs):
        self.request.install()  # again: nothing loaded since the worker started may keep its own handler
        self.request.in_training_loop = True
        return control

    def on_step_end(self, args, state, control, **kwargs):
        signum = agreed_signal(self.request.signum, args.device)
        if signum:
            self.request.signum = signum  # a rank that got no signal itself adopts the others'
            self.stopped_at = state.global_step
            self.checkpoint = f"{args.output_dir}/checkpoint-{state.global_step}"
            control.should_log = control.should_save = control.should_training_stop = True
            if state.is_world_process_zero:
                self.announce(f"{signal.Signals(signum).name} received: saving {self.checkpoint} at step "
                              f"{state.global_step} of {state.max_steps}, then stopping")
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self.request.in_training_loop = False
        if self.stopped_at is not None:  # the checkpoint is saved; skip the after-training work
            raise Interrupted(self.request.signum, self.checkpoint)
        return control


def _announce(text: str) -> None:
    console.say(f"dpo-launch worker: {text}", sys.stderr)


def make_callback(request: StopRequest):
    """The TrainerCallback the worker passes to `run_exp(callbacks=...)`, last in the list."""
    from transformers import TrainerCallback

    callback_class = type("DpoLaunchStopOnSignal", (StopOnSignal, TrainerCallback), {})
    return callback_class(request)
