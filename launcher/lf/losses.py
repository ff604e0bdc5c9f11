"""The loss registry: the one source of truth for what each `pref_loss` (and `stage: kto`) computes.

The schema's `pref_loss` enum, `validate`'s warnings, `plan`'s formulas and the worker's first-batch
self-test all read this table; a test checks the schema against it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KTO_STAGE_LOSS = "kto"

# h = (log π(y_w|x) − log π_ref(y_w|x)) − (log π(y_l|x) − log π_ref(y_l|x))
MARGIN = "h = [log π(y_w|x) − log π_ref(y_w|x)] − [log π(y_l|x) − log π_ref(y_l|x)]"


@dataclass(frozen=True)
class Loss:
    name: str
    stage: str
    uses_reference: bool
    averaged_logps: bool
    formula: str
    parameters: tuple[str, ...]
    # Under `llamafactory-cli train` with trl >= 0.20, LF calls trl's dpo_loss without loss_type, so these
    # run the sigmoid loss instead (docs/upstream-notes.md#silent-sigmoid). dpo-launch's worker runs them as themselves.
    silently_sigmoid_under_llamafactory_cli: bool = False

    def first_step_loss(self, config: Mapping[str, Any]) -> float | None:
        """The loss of the first batch when policy == reference (None where no closed form exists)."""
        if _has_extra_terms(config):
            return None
        beta = float(config.get("pref_beta", 0.1))
        if self.name in ("sigmoid",):
            return math.log(2.0)
        if self.name == "hinge":
            return 1.0
        if self.name == "ipo":
            return (1.0 / (2.0 * beta)) ** 2
        if self.name == "kto_pair":
            return 0.5
        if self.name == KTO_STAGE_LOSS:
            chosen_weight = float(config.get("kto_chosen_weight", 1.0))
            rejected_weight = float(config.get("kto_rejected_weight", 1.0))
            # 0.5 per example times its class weight: exact only when both weights agree.
            return 0.5 * chosen_weight if chosen_weight == rejected_weight else None
        return None  # orpo, simpo: depend on the policy's own log-probs


@dataclass(frozen=True)
class FirstStepCheck:
    """Whether the worker checks the first batch's loss against its closed form (`plan` says the same)."""

    expected: float | None  # the closed form the worker compares with; None: the check is skipped
    skipped_because: str = ""  # why it is skipped ("" when it runs)


def first_step_check(config: Mapping[str, Any]) -> FirstStepCheck:
    """The one decision, read by the worker's self-test (launcher/worker/selftest.py) and by `plan`: the closed form
    holds only when the policy equals its reference at step 0, and exists only for some losses."""
    loss = resolve_loss(config)
    if config.get("ref_model"):
        return FirstStepCheck(None, "an explicit ref_model may differ from the policy at step 0")
    if config.get("resume_from_checkpoint"):  # `train --resume` sets it too
        return FirstStepCheck(None, "training resumes from a checkpoint, where the policy has already moved from its "
                                    "reference")
    if config.get("adapter_name_or_path"):
        return FirstStepCheck(None, "the policy starts from an adapter, so it may differ from its reference at step 0")
    if config.get("neftune_noise_alpha") or config.get("pissa_init"):
        return FirstStepCheck(None, "NEFTune noise / PiSSA init make the policy differ from its reference at step 0")
    expected = loss.first_step_loss(config)
    if expected is None:
        return FirstStepCheck(None, f"{loss.name} has no closed form at step 0 for this config")
    return FirstStepCheck(expected)


def precomputable_reference(config: Mapping[str, Any]) -> bool:
    """Whether `train --precompute-ref` applies: stage dpo with a loss that reads a reference (the cache stands in
    for the reference of LF's CustomDPOTrainer only: launcher/worker/ref_cache.py). `train`, the worker and `plan`
    all ask this."""
    return config.get("stage") == "dpo" and resolve_loss(config).uses_reference


def _has_extra_terms(config: Mapping[str, Any]) -> bool:
    """SFT, BCO and LD-DPO terms move the step-0 loss away from the closed form."""
    return (float(config.get("pref_ftx", 0.0) or 0.0) > 0
            or float(config.get("pref_bco_weight", 0.0) or 0.0) > 0
            or config.get("ld_alpha") is not None)


LOSSES: dict[str, Loss] = {
    loss.name: loss
    for loss in (
        Loss("sigmoid", "dpo", True, False,
             "L = −(1−ε)·log σ(β·h) − ε·log σ(−β·h),  " + MARGIN + " (summed log-probs)",
             ("pref_beta", "dpo_label_smoothing", "pref_ftx", "pref_bco_weight", "ld_alpha")),
        Loss("hinge", "dpo", True, False,
             "L = relu(1 − β·h),  " + MARGIN + " (summed log-probs)",
             ("pref_beta", "pref_ftx", "pref_bco_weight", "ld_alpha"), True),
        Loss("ipo", "dpo", True, True,
             "L = (h − 1/(2β))²,  " + MARGIN + " (log-probs averaged over tokens)",
             ("pref_beta", "pref_ftx", "pref_bco_weight"), True),
        Loss("kto_pair", "dpo", True, False,
             "L = mean[1 − σ(β·(r_w − KL_l)), 1 − σ(β·(KL_w − r_l))],  r = log π − log π_ref, "
             "KL = batch mean of r clamped at 0 (HALOs eqn 7)",
             ("pref_beta", "pref_ftx"), True),
        Loss("orpo", "dpo", False, True,
             "L = −log π(y_w|x)/|y_w| + β·(−log σ(log odds(y_w|x) − log odds(y_l|x))),  "
             "odds(y|x) = p/(1−p) with p the average per-token probability",
             ("pref_beta",)),
        Loss("simpo", "dpo", False, True,
             "L = −log σ(β·(log π(y_w|x)/|y_w| − log π(y_l|x)/|y_l|) − γ)",
             ("pref_beta", "simpo_gamma", "pref_ftx")),
        Loss(KTO_STAGE_LOSS, "kto", True, False,
             "L = mean over examples of w_D·(1 − σ(β·(r − z))) for desirable, w_U·(1 − σ(β·(z − r))) "
             "for undesirable,  r = log π(y|x) − log π_ref(y|x), z = KL estimate from mismatched pairs",
             ("pref_beta", "kto_chosen_weight", "kto_rejected_weight", "pref_ftx")),
    )
}

PREF_LOSS_NAMES = tuple(name for name, loss in LOSSES.items() if loss.stage == "dpo")


def resolve_loss(config: Mapping[str, Any]) -> Loss:
    """The loss a config asks for: stage kto -> KTO; stage dpo -> its pref_loss (default sigmoid)."""
    if config.get("stage") == "kto":
        return LOSSES[KTO_STAGE_LOSS]
    name = config.get("pref_loss")
    name = "sigmoid" if name is None else str(name)  # LF's default; `pref_loss: null` means the default too
    if name not in PREF_LOSS_NAMES:
        raise ValueError(f"pref_loss: expected one of {', '.join(PREF_LOSS_NAMES)} but got '{name}'")
    return LOSSES[name]
