"""Make the `pref_loss` a config asks for the loss that trains, inside the worker process.

LLaMA-Factory 0.9.5 calls trl's `dpo_loss(chosen, rejected, ref_chosen, ref_rejected)` with four positional
arguments (`train/dpo/trainer.py`, `compute_preference_loss`). Since trl 0.20 (the MPO change, commit d8702302)
that method branches on a `loss_type` parameter defaulting to "sigmoid" instead of on `self.loss_type`, so hinge,
ipo and kto_pair silently train the sigmoid loss (docs/upstream-notes.md#silent-sigmoid; nearest upstream report:
https://github.com/hiyouga/LlamaFactory/issues/8725). trl 0.20 also dropped `kto_pair`, which LF still advertises.

`install()` wraps `CustomDPOTrainer.dpo_loss` so that it receives `loss_type=self.loss_type`, and computes
`kto_pair` itself. Only the worker imports this module, and only inside functions (it imports torch).
"""

from __future__ import annotations

import inspect
import os

# For tests only: prove that the first-batch self-test catches the upstream bug when the fix is absent.
DISABLE_ENV = "DPO_LAUNCH_DISABLE_LOSS_PATCH"
_PATCHED_FLAG = "_dpo_launch_loss_patch"


def kto_pair_loss(beta: float, chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps):
    """The paired KTO loss of trl <= 0.19 (HALOs eqn 7): returns (losses, chosen_rewards, rejected_rewards).

    The KL term of each half is estimated from the other half's batch-mean log-ratio, clamped at 0 (not
    detached, as in trl 0.8-0.19, the version LF's `kto_pair` was written against). Old trl returned the 2B losses
    concatenated; we return the per-pair mean of the two halves (shape B): the same batch mean, and it stays
    compatible with LF adding `pref_ftx`/BCO terms per pair.
    """
    import torch

    chosen_logratios = chosen_logps - ref_chosen_logps
    rejected_logratios = rejected_logps - ref_rejected_logps
    chosen_kl = chosen_logratios.mean().clamp(min=0)
    rejected_kl = rejected_logratios.mean().clamp(min=0)
    chosen_losses = 1 - torch.sigmoid(beta * (chosen_logratios - rejected_kl))
    rejected_losses = 1 - torch.sigmoid(beta * (chosen_kl - rejected_logratios))
    losses = (chosen_losses + rejected_losses) / 2
    return losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


def _make_dpo_loss(original):
    takes_loss_type = "loss_type" in inspect.signature(original).parameters

    def dpo_loss(self, chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, *args, **kwargs):
        loss_type = kwargs.pop("loss_type", None) or self.loss_type
        if loss_type == "kto_pair":
            device = self.accelerator.device
            return kto_pair_loss(self.beta, chosen_logps.to(device), rejected_logps.to(device),
                                 ref_chosen_logps.to(device), ref_rejected_logps.to(device))
        if takes_loss_type:  # trl >= 0.20; older trl reads self.loss_type itself
            kwargs["loss_type"] = loss_type
        return original(self, chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, *args, **kwargs)

    setattr(dpo_loss, _PATCHED_FLAG, True)
    dpo_loss.__wrapped__ = original
    return dpo_loss


def install() -> bool:
    """Patch LF's DPO trainer class in this process; returns False when disabled by the test switch."""
    if os.environ.get(DISABLE_ENV) == "1":
        return False
    from llamafactory.train.dpo.trainer import CustomDPOTrainer

    if not getattr(CustomDPOTrainer.dpo_loss, _PATCHED_FLAG, False):
        CustomDPOTrainer.dpo_loss = _make_dpo_loss(CustomDPOTrainer.dpo_loss)
    return True
