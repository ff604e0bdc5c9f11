"""The demo's last words: where the TensorBoard logs are and how reward accuracy moved, read from the events."""

from __future__ import annotations

import sys
from pathlib import Path
from statistics import mean

from launcher.observe.run_state import RunState

WINDOW = 20  # logged steps averaged at each end, so one noisy batch does not decide the verdict


def main(run_dir: str) -> int:
    state = RunState(run_dir)
    state.poll(final=True)
    accuracies = state.values("train/rewards/accuracies")
    margins = state.values("train/rewards/margins")
    logdir = Path(run_dir, "tensorboard").resolve()
    print(f"TensorBoard logs: {logdir}")
    print(f"  view them with: dpo-launch tensorboard {run_dir}   (or: tensorboard --logdir '{logdir}')")
    if len(accuracies) < 2 * WINDOW:
        print(f"only {len(accuracies)} reward points were logged; expected at least {2 * WINDOW}", file=sys.stderr)
        return 1
    first, last = mean(accuracies[:WINDOW]), mean(accuracies[-WINDOW:])
    print(f"reward accuracy: {first:.2f} (mean of the first {WINDOW} steps) -> {last:.2f} (last {WINDOW} steps); "
          f"margin {mean(margins[:WINDOW]):.3f} -> {mean(margins[-WINDOW:]):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
