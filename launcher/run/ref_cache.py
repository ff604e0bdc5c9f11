"""`dpo-launch train --precompute-ref`: where the reference log-probs cache is, handed to the worker.

The worker computes, reuses and reads the cache (launcher.worker.ref_cache); the launcher only checks that the
run has a reference to precompute and passes the cache root through the environment (`PRECOMPUTE_REF_ENV`), so
the YAML stays LLaMA-Factory's. Default root: `<output_dir's parent>/.dpo-launch-cache/ref-logps`, which the runs
of a sweep with sibling output_dirs share.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from launcher.errors import UsageError
from launcher.layout import PRECOMPUTE_REF_ENV, default_ref_cache
from launcher.lf.losses import precomputable_reference, resolve_loss


def cache_root(values: Mapping[str, Any], cwd: Path, cache_dir: str | None) -> Path:
    """The absolute cache root for this run; UsageError for a run without a reference model."""
    if not precomputable_reference(values):
        stage = values.get("stage")
        what = f"pref_loss {resolve_loss(values).name}" if stage == "dpo" else f"stage {stage}"
        raise UsageError(f"--precompute-ref: this run ({what}) uses no reference model, so there is nothing to "
                         "precompute; drop the flag")
    if cache_dir is not None:
        return (cwd / Path(cache_dir).expanduser()).absolute()
    return default_ref_cache((cwd / str(values.get("output_dir") or "saves")).absolute())


def cache_env(values: Mapping[str, Any], cwd: Path, enabled: bool, cache_dir: str | None) -> dict[str, str]:
    """The environment entry that turns the cache on in every rank ({} without --precompute-ref)."""
    if cache_dir is not None and not enabled:
        raise UsageError("--precompute-ref-cache goes with --precompute-ref")
    if not enabled:
        return {}
    return {PRECOMPUTE_REF_ENV: str(cache_root(values, cwd, cache_dir))}
