"""Derive the synthetic alert streams from the recorded ones: `python make_synthetic.py` (deterministic).

Real tiny runs do not show every failure on demand, so each synthetic stream is a recorded stream with
one documented edit (its `_source` line says which); each has a near-miss twin that must not fire.
"""

import json
import math
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load(name: str) -> list[dict]:
    return [r for r in map(json.loads, (HERE / f"{name}.jsonl").read_text().splitlines()) if "step" in r]


def save(name: str, note: str, records: list[dict]) -> None:
    lines = [json.dumps({"_source": note})] + [json.dumps(r) for r in records]
    (HERE / f"{name}.jsonl").write_text("\n".join(lines) + "\n")


def edited(base: str, edit) -> list[dict]:
    return [edit(dict(r)) for r in load(base)]


def saturate_from(first_step: int):
    def edit(r):
        if r["step"] >= first_step:
            r.update({"train/rewards/accuracies": 1.0, "train/loss": 0.01, "train/rewards/margins": 5.0,
                      "train/logps/chosen": -20.0})
        return r
    return edit


def displace(margin_slope: float):
    def edit(r):
        r["train/logps/chosen"] = -43.6 - 0.1 * r["step"]
        r["train/rewards/margins"] = 0.2 + margin_slope * r["step"]
        return r
    return edit


def spike(factor: float):
    def edit(r):
        if r["step"] == 40:
            r["train/grad_norm"] *= factor
        return r
    return edit


def with_evals(values: list[float]):
    def edit(r):
        r["train/rewards/accuracies"] = min(1.0, r["train/rewards/accuracies"] + 0.006 * r["step"])
        if r["step"] % 10 == 0:
            r["eval/rewards/accuracies"] = values[r["step"] // 10 - 1]
            r["eval/loss"] = 0.65
        return r
    return edit


def rewards_falling(chosen_slope: float):
    """Both rewards fall steadily (rejected faster), so margins grow; the recorded rewards, scaled by 0.05, stay on
    as noise. Margins are chosen - rejected and logps the step-1 logps + reward / beta (0.5), as TRL logs them."""
    def edit(r):
        r["train/rewards/chosen"] = 0.05 * r["train/rewards/chosen"] + chosen_slope * r["step"]
        r["train/rewards/rejected"] = 0.05 * r["train/rewards/rejected"] - 0.03 * r["step"]
        r["train/rewards/margins"] = r["train/rewards/chosen"] - r["train/rewards/rejected"]
        r["train/logps/chosen"] = -43.595 + r["train/rewards/chosen"] / 0.5
        r["train/logps/rejected"] = -43.669 + r["train/rewards/rejected"] / 0.5
        return r
    return edit


def eval_loss(values: list[float], eval_accuracy: list[float]):
    """Train accuracy 1.0 throughout; every 10 steps an eval with the given loss and a low accuracy."""
    def edit(r):
        r["train/rewards/accuracies"] = 1.0
        if r["step"] % 10 == 0:
            r["eval/loss"] = values[r["step"] // 10 - 1]
            r["eval/rewards/accuracies"] = eval_accuracy[r["step"] // 10 - 1]
        return r
    return edit


def wobble(r):
    r["train/loss"] = math.log(2) + 0.01 * math.sin(r["step"])
    return r


def main() -> None:
    src = "synthetic from healthy_dpo: "
    save("saturated_early", src + "from step 10 accuracies 1.0, loss 0.01, margins 5, logps/chosen -20",
         edited("healthy_dpo", saturate_from(10)))
    save("saturated_late", src + "from step 52 (after early_steps 50) accuracies 1.0, loss 0.01, margins 5, "
         "logps/chosen -20", edited("healthy_dpo", saturate_from(52)))
    save("displacement", src + "logps/chosen = -43.6 - 0.1*step, margins = 0.2 + 0.02*step",
         edited("healthy_dpo", displace(0.02)))
    save("both_falling", src + "logps/chosen = -43.6 - 0.1*step, margins = 0.2 - 0.02*step (no displacement: "
         "margins shrink too)", edited("healthy_dpo", displace(-0.02)))
    save("grad_spike", src + "grad_norm at step 40 multiplied by 30", edited("healthy_dpo", spike(30)))
    save("grad_bump", src + "grad_norm at step 40 multiplied by 5 (below spike_factor 10)",
         edited("healthy_dpo", spike(5)))
    save("eval_falling", src + "train accuracy + 0.006*step; eval accuracy every 10 steps 0.6, 0.7, 0.75, 0.7, "
         "0.62, 0.55", edited("healthy_dpo", with_evals([0.6, 0.7, 0.75, 0.7, 0.62, 0.55])))
    save("eval_rising", src + "train accuracy + 0.006*step; eval accuracy every 10 steps 0.55, 0.6, 0.65, 0.7, "
         "0.72, 0.75", edited("healthy_dpo", with_evals([0.55, 0.6, 0.65, 0.7, 0.72, 0.75])))
    save("rewards_falling", src + "rewards/chosen = 0.05*recorded - 0.0138*step (-0.64 at step 50), rewards/rejected "
         "= 0.05*recorded - 0.03*step, margins = chosen - rejected, logps = step-1 logps + reward/beta",
         edited("healthy_dpo", rewards_falling(-0.0138)))
    save("rewards_falling_near", src + "rewards/chosen = 0.05*recorded - 0.0045*step (-0.27 at step 60, above "
         "falling_chosen_reward -0.3), rewards/rejected = 0.05*recorded - 0.03*step, margins = chosen - rejected, "
         "logps = step-1 logps + reward/beta",
         edited("healthy_dpo", rewards_falling(-0.0045)))
    low_eval_accuracy = [0.3, 0.25, 0.3, 0.3, 0.25, 0.3]
    save("eval_loss_rising", src + "train accuracy 1.0; eval every 10 steps: loss 4.6, 5.9, 7.4, 9.0, 10.5, 11.8, "
         "accuracy 0.3, 0.25, 0.3, 0.3, 0.25, 0.3",
         edited("healthy_dpo", eval_loss([4.6, 5.9, 7.4, 9.0, 10.5, 11.8], low_eval_accuracy)))
    save("eval_loss_rising_near", src + "train accuracy 1.0; eval every 10 steps: loss 4.6, 4.9, 5.1, 5.3, 5.5, "
         "5.7 (the last two 18% above the first two, under eval_loss_rise 25%), accuracy 0.3, 0.25, 0.3, 0.3, 0.25, "
         "0.3", edited("healthy_dpo", eval_loss([4.6, 4.9, 5.1, 5.3, 5.5, 5.7], low_eval_accuracy)))
    save("lr_zero_99_steps", "synthetic from lr_zero_dpo: only steps 1-99 (margins-near-zero waits for step 100)",
         [r for r in load("lr_zero_dpo") if r["step"] <= 99])
    save("ln2_wobble", "synthetic from lr_zero_dpo: loss = ln 2 + 0.01*sin(step) (moves more than ln2_tol)",
         edited("lr_zero_dpo", wobble))


if __name__ == "__main__":
    main()
