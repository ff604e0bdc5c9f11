"""A training run, from a validated config to the job's exit code.

Choose the topology -> the plan -> check this machine against it (packages, GPUs, memory; launcher.run.preflight)
-> take ownership of `output_dir` (one launcher per run; launcher.run.ownership) -> guard it (no silent resume
or overwrite; launcher.run.rundir) -> the LLaMA-Factory arguments and the launch (launcher.plan.launch) ->
`--dry-run` prints them, else check what a resume would change (launcher.run.history), remove a previous run on
`--overwrite` (launcher.run.overwrite), record `<output_dir>/dpo-launch/` (with the plan and this launch in the
run's history), mark the run running, and run the job under supervision (launcher.run.supervise), passing its
exit code through and recording how it ended (status.json, launches.jsonl).

Faults: `--resume` picks the last *complete* checkpoint and first drops the TensorBoard records,
trainer_log.jsonl and alerts.jsonl lines logged after it (launcher.run.rewind), so no step shows twice.
Ctrl-C / SIGTERM / SIGHUP make every rank save a checkpoint before stopping (launcher.worker.graceful_stop;
exit 130 / 143 / 129); ranks whose launcher dies stop the same way on their own (launcher.lifeline); a rank
that stops moving for `--stall-timeout` stops the job (launcher.run.stall; exit 5).

The console: the ranks' INFO logs, config dumps and progress bars go to their logs only, dpo-launch's lines,
warnings and errors to the console too (`verbose`: everything; launcher.run.tee); on a terminal the live view
from the launch on, else one line per logged step (launcher.observe.train_console); at the end the summary
(launcher.observe.run_summary).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from launcher.check.validation import ValidationResult
from launcher.errors import EXIT_OK, UserError
from launcher.layout import RESOLVED_CONFIG, lock_file, logs_dir, run_dir, tensorboard_dir
from launcher.lf.deepspeed import zero_settings
from launcher.lifeline import this_host
from launcher.observe.run_summary import summary_lines
from launcher.observe.train_console import LiveView, StepLines
from launcher.plan.build import build_plan
from launcher.plan.gpus import gpu_memory
from launcher.plan.launch import LaunchSpec, absolute_output_dir, describe, launch_for_node, resolve_args
from launcher.plan.topology import Topology, choose_topology
from launcher.run.history import check_resume, record_end, start_entry
from launcher.run.overwrite import clear_previous_run
from launcher.run.ownership import Ownership, take_ownership
from launcher.run.preflight import detect_machine, preflight
from launcher.run.rundir import (
    dataset_fingerprints,
    dump_json,
    effective_consent,
    guard_output_dir,
    record_run,
    rewind_to_checkpoint,
)
from launcher.run.stall import DEFAULT_STALL_SECONDS, StallWatch
from launcher.run.supervise import JobEnd, launcher_identity, supervise
from launcher.run.tee import write_out
from launcher.run_status import RUNNING, RunStatus, read_status, state_for_exit_code, write_status

Consent = Literal["resume", "overwrite"] | None


def start_run(result: ValidationResult, launch_flags: Mapping[str, Any], cwd: Path, env: Mapping[str, str],
              *, consent: Consent = None, dry_run: bool = False, monitor: bool = True,
              gpu_memory_flag: str | None = None, check_memory: bool = True,
              stall_timeout: float | None = DEFAULT_STALL_SECONDS, allow_changes: bool = False,
              verbose: bool = False, resume_command: Sequence[str] | None = None) -> int:
    """Run the job `result` validated; its exit code. Raises a UserError before anything starts when it cannot.

    `monitor`: the live view on a terminal (else step lines); `verbose`: every line the ranks print on the
    console; `resume_command`: the argv the end-of-run summary offers when the run stopped with a checkpoint."""
    assert result.config is not None, "start a config that loaded"  # callers refuse a result that is not ok
    values = result.config.values
    machine = detect_machine(env)
    gpus = machine.gpus
    topology = choose_topology(launch_flags, env, gpus)
    plan = build_plan(result, topology, cwd, env, gpu_memory=gpu_memory(gpu_memory_flag, machine.details))
    preflight(result.config, machine, zero_settings(values, cwd), plan, env, check_memory=check_memory)
    output_dir = absolute_output_dir(values, cwd)
    if dry_run:
        decided = guard_output_dir(output_dir, values, effective_consent(output_dir, values, consent, cwd))
        print(describe(launch_for_node(resolve_args(values, output_dir, decided), topology, cwd, env, gpus=gpus)))
        return EXIT_OK
    job = _Job(result, topology, cwd, env, gpus, output_dir, monitor, stall_timeout, plan, verbose, resume_command)
    created = [path for path in (output_dir, run_dir(output_dir)) if not path.exists()]
    ownership = take_ownership(output_dir, topology)
    try:
        if ownership.writer:
            return job.write_and_run(ownership, consent, allow_changes)
        return job.join_and_run(ownership, consent)
    except UserError:  # refused before anything started: leave no trace
        if ownership.writer:
            ownership.restore_lock_file()
            _remove_what_we_created(output_dir, created)
        raise
    finally:
        ownership.release()


class _Job:
    def __init__(self, result: ValidationResult, topology: Topology, cwd: Path, env: Mapping[str, str], gpus: int,
                 output_dir: Path, monitor: bool, stall_timeout: float | None, plan: dict[str, Any],
                 verbose: bool = False, resume_command: Sequence[str] | None = None):
        self.result, self.topology, self.cwd, self.env, self.gpus = result, topology, cwd, env, gpus
        self.output_dir, self.monitor, self.stall_timeout, self.plan = output_dir, monitor, stall_timeout, plan
        self.verbose, self.resume_command = verbose, resume_command
        assert result.config is not None
        self.values = result.config.values

    def write_and_run(self, ownership: Ownership, consent: Consent, allow_changes: bool) -> int:
        """The launcher that owns the run: it guards, clears, records, and says how the run ended."""
        output_dir, values = self.output_dir, self.values
        consent = effective_consent(output_dir, values, consent, self.cwd)  # type: ignore[assignment]
        resolved = resolve_args(values, output_dir, guard_output_dir(output_dir, values, consent))
        spec = launch_for_node(resolved, self.topology, self.cwd, self.env, gpus=self.gpus)
        datasets = dataset_fingerprints(self.result.data_summary, self.cwd)
        if consent == "resume" or values.get("resume_from_checkpoint"):
            check_resume(output_dir, resolved, datasets, allow_changes)
        if consent == "overwrite":
            clear_previous_run(output_dir)
        number, history = start_entry(output_dir, resolved, datasets, self._facts(consent, allow_changes))
        record_run(resolved, datasets, self.plan, history)
        _status(output_dir, RunStatus(RUNNING, launcher_pid=os.getpid(), host=this_host(), started_at=time.time(),
                                      extra={"launch": number}))
        if consent == "resume":
            rewind_to_checkpoint(output_dir, Path(resolved["resume_from_checkpoint"]))
        end = self._supervised(spec, keep_fds=(ownership.fd,) if ownership.fd is not None else ())
        state = state_for_exit_code(end.code)
        _status(output_dir, RunStatus(state, end.code, os.getpid(), this_host(), _started(output_dir), time.time(),
                                      end.message, {"launch": number}))
        record_end(output_dir, number, end.code, state)
        self._summarize()
        return end.code

    def join_and_run(self, ownership: Ownership, consent: Consent) -> int:
        """Another node of the same job owns the run directory (a shared file system): run this node's ranks,
        writing nothing there but logs; the arguments go to a private file."""
        holder = ownership.holder
        node = f"node {holder.node_rank}" if holder and holder.node_rank is not None else "another node"
        writer = f"{node} ({holder.describe()})" if holder else node
        print(f"dpo-launch train: joining the run in {self.output_dir}, whose run directory {writer} records",
              flush=True)
        consent = effective_consent(self.output_dir, self.values, consent, self.cwd)  # type: ignore[assignment]
        resolved = resolve_args(self.values, self.output_dir, guard_output_dir(self.output_dir, self.values, consent))
        with tempfile.TemporaryDirectory(prefix="dpo-launch-node-") as folder:
            args_file = Path(folder) / RESOLVED_CONFIG
            args_file.write_text(dump_json(resolved), encoding="utf-8")
            spec = launch_for_node(resolved, self.topology, self.cwd, self.env, gpus=self.gpus, args_file=args_file)
            return self._supervised(spec, keep_fds=()).code

    def _supervised(self, spec: LaunchSpec, keep_fds: tuple[int, ...]) -> JobEnd:
        output_dir = self.output_dir
        print(f"dpo-launch train: run directory {output_dir}; TensorBoard: tensorboard --logdir "
              f"{tensorboard_dir(output_dir)}", flush=True)
        stall = StallWatch(output_dir, launcher_identity(), self.stall_timeout, self.topology.nproc_per_node) \
            if self.stall_timeout else None
        view = LiveView(output_dir) if self.monitor and sys.stdout.isatty() else StepLines(output_dir)
        try:
            return supervise(spec, logs_dir(output_dir), cwd=self.cwd, keep_fds=keep_fds, stall=stall,
                             output_dir=output_dir, verbose=self.verbose, job_ended=view.stop)
        finally:
            view.stop()

    def _summarize(self) -> None:
        """The end-of-run block; a run directory it cannot read changes nothing about how the run ended."""
        try:
            lines = summary_lines(self.output_dir, self.resume_command)
        except Exception as exc:  # noqa: BLE001 - the run is over and recorded; the summary is a courtesy
            lines = [f"dpo-launch train: no summary ({type(exc).__name__}: {exc}); see dpo-launch report "
                     f"{self.output_dir}"]
        for line in lines:
            write_out(sys.stdout, line + "\n")

    def _facts(self, consent: Consent, allow_changes: bool) -> dict[str, Any]:
        """What launches.jsonl records about this launch besides its config and data."""
        topology = self.topology
        return {"pid": os.getpid(), "host": this_host(), "consent": consent, "allow_changes": allow_changes,
                "nnodes": topology.nnodes, "node_rank": topology.node_rank,
                "nproc_per_node": topology.nproc_per_node, "world_size": topology.world_size,
                "stall_timeout": self.stall_timeout}


def _status(output_dir: Path, status: RunStatus) -> None:
    try:
        write_status(output_dir, status)
    except OSError as exc:
        print(f"dpo-launch train: warning: cannot write {run_dir(output_dir) / 'status.json'}: "
              f"{exc.strerror or exc}", flush=True)


def _started(output_dir: Path) -> float | None:
    status = read_status(output_dir)
    return status.started_at if status else None


def _remove_what_we_created(output_dir: Path, created: list[Path]) -> None:
    """A launch refused before it recorded anything leaves no trace: the lock file and the folders it made."""
    if run_dir(output_dir) in created:
        try:
            lock_file(output_dir).unlink()
        except OSError:
            pass
    for folder in reversed(created):
        try:
            folder.rmdir()  # only when empty
        except OSError:
            pass
