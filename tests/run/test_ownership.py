"""One run per output_dir, and what is in it is what the run did: a second launch on an output_dir in use is refused
naming the holder; `overwrite_output_dir: true` starts over like `--overwrite`; contradictions (`--overwrite` with a
config resuming from a checkpoint inside output_dir, `--resume` with `overwrite_output_dir`) and an output_dir that
holds the model it trains are refused before anything is deleted; `--overwrite` never follows a symbolic link out of
output_dir and removes all or nothing."""

from __future__ import annotations

import errno
import json
import os
import signal
import time
from pathlib import Path

import pytest
from test_train import loss_steps, workspace
from test_train_faults import LONG_RUN, start_train, wait_for_training

from launcher.lifeline import this_host
from launcher.run.overwrite import clear_previous_run
from launcher.run.rundir import RunDirRefused

from support.cli import run_cli, run_main
from support.training import TRAIN_DEFAULTS, Workspace, make_workspace, training_env


def listing(root: Path) -> dict[str, bytes]:
    """Every file and link under `root` with its content (a link: its target), to prove nothing changed."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            found[str(path.relative_to(root))] = os.readlink(path).encode()
        elif path.is_file():
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


def old_checkpoint(out: Path, step: int) -> Path:
    """A complete checkpoint as transformers leaves it (state and weights), for runs we do not need to train."""
    folder = out / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    (folder / "model.safetensors").write_bytes(b"weights")
    return folder


def fake_model(root: Path) -> Path:
    """A model directory as far as `validate` checks one (config.json); for runs refused before anything loads."""
    model = root / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"base weights")
    return model


# --- item 3: one launcher per output_dir --------------------------------------------------------------------

@pytest.mark.subprocess
def test_a_second_launch_on_an_output_dir_in_use_is_refused_with_who_holds_it_and_nothing_is_touched(
        tmp_path, tiny_model_dir):
    ws = workspace(tmp_path / "ws", tiny_model_dir, **{**LONG_RUN, "save_strategy": "steps", "save_steps": 5})
    out = ws.out
    first = start_train(tmp_path, ws)
    wait_for_training(first, out, tmp_path)
    holder = json.loads((out / "dpo-launch" / "lock").read_text())
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder["started_at"]))
    for flags in [(), ("--resume",), ("--overwrite",)]:
        second = run_cli("train", ws.config, "--no-monitor", *flags, cwd=ws.root, env=training_env())
        assert (second.returncode, second.stderr) == (1, (
            f"dpo-launch train: error: {out} is in use by another dpo-launch train (pid {first.pid} on host "
            f"{this_host()}, started {started}); wait for it to end, stop it (Ctrl-C or kill PID), or choose "
            "another output_dir\n")), flags
    assert first.poll() is None  # the first run is still training: the --overwrite above deleted nothing
    first.send_signal(signal.SIGINT)
    assert first.wait(timeout=120) == 130
    assert json.loads((out / "dpo-launch" / "launches.jsonl").read_text().splitlines()[-1])["state"] == "interrupted"


# --- item 4: overwrite_output_dir in the config means --overwrite -------------------------------------------

@pytest.mark.subprocess
def test_overwrite_output_dir_in_the_config_starts_over_like_overwrite_and_leaves_a_linked_folder_alone(
        tmp_path, tiny_model_dir):
    ws = workspace(tmp_path / "ws", tiny_model_dir, max_steps=2, save_steps=2, overwrite_output_dir=True)
    out = ws.out
    for step in (20, 30, 40):  # an older, longer run
        old_checkpoint(out, step)
    shared = tmp_path / "shared-tensorboard"  # the old run's tensorboard/ is a link to a shared folder
    shared.mkdir()
    (shared / "events.out.tfevents.old").write_bytes(b"old events")
    (out / "tensorboard").symlink_to(shared)

    result = run_cli("train", ws.config, "--no-monitor", cwd=ws.root, env=training_env())

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    start = lines.index("dpo-launch train: overwrite_output_dir: true in the config: starting over, as with "
                        "--overwrite")
    assert lines[start + 1:start + 5] == [
        f"dpo-launch train: --overwrite: removed {out / 'checkpoint-20'}",
        f"dpo-launch train: --overwrite: removed {out / 'checkpoint-30'}",
        f"dpo-launch train: --overwrite: removed {out / 'checkpoint-40'}",
        f"dpo-launch train: --overwrite: removed {out / 'tensorboard'} (a symbolic link; what it points to, {shared}, "
        "is left as it is)"]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]
    assert loss_steps(out) == [1, 2]
    assert listing(shared) == {"events.out.tfevents.old": b"old events"}
    assert not list(out.glob(".dpo-launch-trash-*"))


# --- items 4, 5, 6: contradictions and inputs inside output_dir, refused before anything is removed ----------

def refused_workspace(root: Path, **changes) -> Workspace:
    return make_workspace(root, fake_model(root.parent / "models"), **changes)


def test_overwrite_with_a_config_resuming_from_a_checkpoint_inside_output_dir_is_refused_and_nothing_removed(tmp_path):
    ws = refused_workspace(tmp_path / "ws", resume_from_checkpoint="out/checkpoint-10")
    old_checkpoint(ws.out, 10)
    before = listing(ws.out)

    result = run_main("train", ws.config, "--overwrite", cwd=ws.root)

    assert (result.returncode, result.stderr) == (1, (
        f"dpo-launch train: error: --overwrite would delete {ws.out / 'checkpoint-10'}, which resume_from_checkpoint "
        "asks to resume from; nothing was removed: drop resume_from_checkpoint to start over, or drop --overwrite to "
        "resume\n"))
    assert listing(ws.out) == before and sorted(p.name for p in ws.out.iterdir()) == ["checkpoint-10"]


def test_resume_with_overwrite_output_dir_in_the_config_is_refused(tmp_path):
    ws = refused_workspace(tmp_path / "ws", overwrite_output_dir=True)
    old_checkpoint(ws.out, 10)
    before = listing(ws.out)

    result = run_main("train", ws.config, "--resume", cwd=ws.root)

    assert (result.returncode, result.stderr) == (1, (
        "dpo-launch train: error: --resume contradicts overwrite_output_dir: true in the config (which starts over, as "
        "--overwrite does); remove the key to resume, or drop --resume to start over\n"))
    assert listing(ws.out) == before


def test_train_never_writes_into_the_model_it_reads(tmp_path):
    model = fake_model(tmp_path / "models")
    ws = make_workspace(tmp_path / "ws", model, output_dir=str(model))
    before = listing(model)

    result = run_main("train", ws.config, "--overwrite", cwd=ws.root)

    assert (result.returncode, result.stderr) == (1, f"dpo-launch train: {ws.config} has errors; nothing was started\n")
    assert (f"{ws.config}:{list(TRAIN_DEFAULTS).index('output_dir') + 2}:13: error[output-dir-holds-input]: "
            f"output_dir: '{model}' is model_name_or_path '{model}' ({model}): training writes checkpoints and weights "
            "into output_dir, and --overwrite removes what it finds there (choose an output_dir outside every model "
            "and adapter the run reads)") in result.stdout.splitlines()
    assert listing(model) == before


# --- item 8: --overwrite removes all or nothing, and never follows a link out of output_dir ------------------

def previous_run(out: Path, outside: Path) -> None:
    for step in (2, 4):
        old_checkpoint(out, step)
    outside.mkdir()
    (outside / "events.out.tfevents.1").write_bytes(b"kept")
    (out / "tensorboard").symlink_to(outside)
    (out / "dpo-launch" / "logs").mkdir(parents=True)
    (out / "dpo-launch" / "logs" / "launcher.log").write_text("old run\n")
    (out / "dpo-launch" / "lock").write_text("{}")
    (out / "final-notes.txt").write_text("the user's own file\n")


def test_overwrite_removes_a_linked_tensorboard_folder_as_a_link_and_keeps_the_lock(tmp_path, capsys):
    out = tmp_path / "out"
    previous_run(out, tmp_path / "elsewhere")

    clear_previous_run(out)

    assert listing(out) == {"dpo-launch/lock": b"{}", "final-notes.txt": b"the user's own file\n"}
    assert listing(tmp_path / "elsewhere") == {"events.out.tfevents.1": b"kept"}
    assert capsys.readouterr().out.splitlines() == [
        f"dpo-launch train: --overwrite: removed {out / 'checkpoint-2'}",
        f"dpo-launch train: --overwrite: removed {out / 'checkpoint-4'}",
        f"dpo-launch train: --overwrite: removed {out / 'tensorboard'} (a symbolic link; what it points to, "
        f"{tmp_path / 'elsewhere'}, is left as it is)",
        f"dpo-launch train: --overwrite: removed {out / 'dpo-launch'}"]


def test_overwrite_that_cannot_remove_one_entry_removes_nothing(tmp_path, monkeypatch):
    out = tmp_path / "out"
    previous_run(out, tmp_path / "elsewhere")
    before = listing(out)
    real_rename = os.rename

    def rename(source, destination):
        # A checkpoint that is a mount point fails like this (EXDEV); mounting one needs privileges tests lack.
        if Path(source).name == "tensorboard":
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), str(source))
        real_rename(source, destination)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(RunDirRefused) as refused:
        clear_previous_run(out)

    assert str(refused.value) == (f"--overwrite: cannot remove {out / 'tensorboard'}: [Errno {errno.EXDEV}] "
                                  f"{os.strerror(errno.EXDEV)}; nothing was removed")
    assert listing(out) == before
    assert not list(out.glob(".dpo-launch-trash-*"))
