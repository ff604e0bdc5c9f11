"""`--overwrite`: remove the previous run from output_dir, all or nothing, never outside output_dir.

What goes: the `checkpoint-N` directories (a later `--resume` must not pick one up), `tensorboard/` (TensorBoard
would draw two runs' steps on one curve) and our own records of the old run in `dpo-launch/` (logs,
manifest, history, status, alerts), except the lock the launcher is holding. Final weights are replaced by
the new run.

How: every entry is first renamed into a trash folder inside output_dir. A rename moves a symbolic link
itself, never what it points to, so a `tensorboard/` that links to a shared folder loses the link and the
shared folder is left alone. If one rename fails, the ones already made are undone and nothing was removed;
only once all are in the trash is it deleted (`shutil.rmtree` does not follow links either). A trash folder
that a killed launcher left behind is deleted with it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from launcher.layout import LOCK_FILE, checkpoints, run_dir, tensorboard_dir
from launcher.run.rundir import RunDirRefused, os_error

TRASH_PREFIX = ".dpo-launch-trash-"


def previous_run(output_dir: Path) -> list[Path]:
    """What `--overwrite` removes, in this order."""
    found = [*checkpoints(output_dir)]
    if os.path.lexists(tensorboard_dir(output_dir)):
        found.append(tensorboard_dir(output_dir))
    own = run_dir(output_dir)
    if own.is_dir() and not own.is_symlink():
        found += sorted(entry for entry in own.iterdir() if entry.name != LOCK_FILE)
    return found


def clear_previous_run(output_dir: Path) -> list[Path]:
    """Remove the previous run (see the module's docstring); the paths removed. RunDirRefused, with nothing
    removed, when one of them cannot be moved."""
    targets = previous_run(output_dir)
    leftovers = sorted(output_dir.glob(TRASH_PREFIX + "*"))
    if not targets and not leftovers:
        return []
    trash = Path(tempfile.mkdtemp(prefix=TRASH_PREFIX, dir=output_dir))
    moved = _move_all(targets, trash)
    own = run_dir(output_dir)
    shown = [path for path in targets if path.parent != own] + ([own] if own in {p.parent for p in targets} else [])
    for path in shown:
        link = f" (a symbolic link; what it points to, {os.readlink(moved[path])}, is left as it is)" \
            if path in moved and moved[path].is_symlink() else ""
        print(f"dpo-launch train: --overwrite: removed {path}{link}", flush=True)
    for folder in [trash, *leftovers]:
        _delete(folder)
    return targets


def _move_all(targets: list[Path], trash: Path) -> dict[Path, Path]:
    moved: dict[Path, Path] = {}
    for number, path in enumerate(targets):
        destination = trash / f"{number}-{path.name}"
        try:
            os.rename(path, destination)
        except OSError as exc:
            _undo(moved, trash)
            raise RunDirRefused(f"--overwrite: cannot remove {path}: {os_error(exc)}; nothing was removed") from None
        moved[path] = destination
    return moved


def _undo(moved: dict[Path, Path], trash: Path) -> None:
    """Put every moved entry back; the trash folder goes only when empty (it never deletes what it holds)."""
    for path, destination in reversed(moved.items()):
        try:
            os.rename(destination, path)
        except OSError as exc:  # cannot happen short of a concurrent change; say where the entry is
            print(f"dpo-launch train: warning: could not put {path} back from {destination}: {os_error(exc)}",
                  file=sys.stderr, flush=True)
    try:
        trash.rmdir()
    except OSError:
        pass


def _delete(folder: Path) -> None:
    """The run directory is already clean; a trash folder that cannot be deleted is a warning, not a failure."""
    try:
        shutil.rmtree(folder)
    except OSError as exc:
        print(f"dpo-launch train: warning: could not delete {folder} ({os_error(exc)}); delete it by hand",
              file=sys.stderr, flush=True)
