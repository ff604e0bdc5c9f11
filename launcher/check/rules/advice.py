"""What LLaMA-Factory 0.9.5 lets through for DPO/KTO, and advice from the literature, as warnings.

The silent-sigmoid losses come from the loss registry (launcher/lf/losses.py); the reference-model and SimPO
findings come from launcher/lf/resolve.py, which `plan` prints too, so both commands say the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from launcher.check.diagnostics import Diagnostic
from launcher.check.rules.context import RuleContext
from launcher.check.schema_words import shown
from launcher.lf.losses import LOSSES
from launcher.lf.resolve import Finding, resolve_loss_plan, resolve_reference

# Above these, DPO tends to push both rewards down and overfit within an epoch. The DPO paper and LLaMA-Factory's
# examples use 5e-7 to 5e-6; adapters (LoRA, OFT) tolerate about ten times more.
MAX_ADVISED_LR = {"full": 1e-5, "freeze": 1e-5, "lora": 1e-4, "oft": 1e-4}
MAX_ADVISED_EPOCHS = 3
_NUMERIC_LOSS_KEYS = ("pref_beta", "simpo_gamma", "pref_ftx", "pref_bco_weight", "ld_alpha",
                      "kto_chosen_weight", "kto_rejected_weight")


def _preference_stage(ctx: RuleContext) -> bool:
    return ctx.stage in ("dpo", "kto")


def _known_loss(ctx: RuleContext) -> str | None:
    loss = ctx.text("pref_loss")
    return loss if loss in LOSSES and LOSSES[loss].stage == "dpo" else None


def silently_sigmoid(ctx: RuleContext) -> Iterator[Diagnostic]:
    """LF calls trl's dpo_loss without loss_type, so trl >= 0.20 runs its default, sigmoid
    (docs/upstream-notes.md#silent-sigmoid)."""
    loss = _known_loss(ctx)
    if ctx.stage != "dpo" or not loss or not LOSSES[loss].silently_sigmoid_under_llamafactory_cli:
        return
    if ctx.launching:
        yield ctx.note(
            "loss-silently-sigmoid",
            f"pref_loss: {shown(loss)}: `dpo-launch train` runs {loss} itself (it patches the loss LLaMA-Factory "
            "hands to trl, which `llamafactory-cli train` would silently run as sigmoid) and checks it on the first "
            "batch",
            "pref_loss")
    else:
        yield ctx.warning(
            "loss-silently-sigmoid",
            f"pref_loss: {shown(loss)} silently trains the sigmoid loss under `llamafactory-cli train` with the "
            "installed trl (>= 0.20): LLaMA-Factory passes no loss_type to trl's dpo_loss, which then defaults to "
            "sigmoid",
            "pref_loss",
            f"launch with `dpo-launch train`, which runs {loss} as itself and checks it on the first batch")


def reference_ignored(ctx: RuleContext) -> Iterator[Diagnostic]:
    loss = _known_loss(ctx)
    if ctx.stage != "dpo" or loss not in ("orpo", "simpo"):
        return
    for key in ("ref_model", "ref_model_adapters", "ref_model_quantization_bit"):
        if ctx.is_set(key):
            yield ctx.warning("reference-ignored",
                              f"{key} is ignored: pref_loss {shown(loss)} is reference-free, so no reference model "
                              "is built",
                              key, f"remove {key}, or use a loss with a reference (sigmoid, ipo, hinge)")


def reference_findings(ctx: RuleContext) -> Iterator[Diagnostic]:
    """The SFT-adapter trap (LF #8459, #8974) and the unquantized explicit reference, from resolve_reference."""
    if not _preference_stage(ctx) or (ctx.stage == "dpo" and not _known_loss(ctx)):
        return
    for key in ("do_train", "create_new_adapter", "use_unsloth", "use_kt"):
        ctx.flag(key)  # raises NotApplicable on a wrong type, as do the getters below
    for key in ("adapter_name_or_path", "ref_model_adapters"):
        ctx.names(key)
    for key in ("finetuning_type", "ref_model"):
        ctx.text(key)
    ctx.number("quantization_bit")
    yield from _from_findings(ctx, resolve_reference(_set_values(ctx), ctx.zero_stage()).warnings)


def simpo_beta(ctx: RuleContext) -> Iterator[Diagnostic]:
    """LF #4414: SimPO's β is pref_beta (default 0.1), so the margin γ/β comes out ten times the paper's."""
    if ctx.stage != "dpo" or _known_loss(ctx) != "simpo":
        return
    for key in _NUMERIC_LOSS_KEYS:
        ctx.number(key)
    beta = ctx.number("pref_beta")
    if beta is None or beta <= 0:
        return
    findings = [f for f in resolve_loss_plan(_set_values(ctx)).findings if f.code == "simpo-beta-small"]
    yield from _from_findings(ctx, findings)


def _set_values(ctx: RuleContext) -> dict:
    """The config without null values: resolve.py reads a null as a value, LLaMA-Factory as the default."""
    return {key: value for key, value in ctx.values.items() if value is not None}


def _from_findings(ctx: RuleContext, findings: Iterable[Finding]) -> Iterator[Diagnostic]:
    for finding in findings:
        yield ctx.at(finding.severity, finding.code, finding.message, finding.key, finding.hint)


def report_to_tensorboard(ctx: RuleContext) -> Iterator[Diagnostic]:
    if not _preference_stage(ctx):
        return
    targets = ctx.names("report_to")
    if targets is None or "tensorboard" in targets or "all" in targets:
        return
    got = "is not set (transformers' default is 'none')" if not ctx.is_set("report_to") else \
        f"is {shown(ctx.raw('report_to'))}, without tensorboard"
    if ctx.launching:
        yield ctx.note(
            "report-to-without-tensorboard",
            f"report_to {got}: `dpo-launch train` adds tensorboard, so rewards/* and logps/* reach TensorBoard, "
            "the monitor and the health alerts",
            "report_to")
        return
    yield ctx.warning(
        "report-to-without-tensorboard",
        f"report_to {got}: `llamafactory-cli train` will not log rewards/* and logps/* to TensorBoard",
        "report_to",
        "add tensorboard, e.g. report_to: [tensorboard]; `dpo-launch train` adds it by itself")


def learning_rate_advice(ctx: RuleContext) -> Iterator[Diagnostic]:
    method, lr = ctx.finetuning_type, ctx.number("learning_rate")
    limit = MAX_ADVISED_LR.get(method or "")
    if not _preference_stage(ctx) or limit is None or lr is None or lr <= limit:
        return
    written = f"learning_rate: {shown(lr)}" if ctx.is_set("learning_rate") else \
        f"learning_rate is not set, so transformers' default {shown(lr)} applies; it"
    yield ctx.warning(
        "learning-rate-high",
        f"{written} is above {shown(limit)}, high for {str(ctx.stage).upper()} with {method} fine-tuning: the "
        "policy drifts from the reference and both rewards fall",
        "learning_rate",
        "the DPO paper and LLaMA-Factory's examples use 5e-7 to 5e-6; LoRA tolerates about 10x more")


def epochs_advice(ctx: RuleContext) -> Iterator[Diagnostic]:
    epochs, max_steps = ctx.number("num_train_epochs"), ctx.number("max_steps")
    if not _preference_stage(ctx) or epochs is None or epochs <= MAX_ADVISED_EPOCHS or (max_steps or -1) > 0:
        return
    yield ctx.warning(
        "too-many-epochs",
        f"num_train_epochs: {shown(epochs)} is more than {MAX_ADVISED_EPOCHS}: preference training overfits within "
        "1-3 epochs (accuracies near 1.0 while chosen rewards fall)",
        "num_train_epochs", "use 1-3 epochs; watch rewards/margins and eval loss")


def json_config(ctx: RuleContext) -> Iterator[Diagnostic]:
    if ctx.loaded.path.suffix.lower() == ".json":
        yield ctx.warning(
            "json-config",
            "LLaMA-Factory 0.9.5 cannot read JSON configs: `llamafactory-cli train` fails with \"AttributeError: "
            "'PosixPath' object has no attribute 'read'\" (LLaMA-Factory #10316)",
            None, "`dpo-launch train` reads JSON configs; for llamafactory-cli, save the config as YAML")


RULES = (silently_sigmoid, reference_ignored, reference_findings, simpo_beta, report_to_tensorboard,
         learning_rate_advice, epochs_advice, json_config)
