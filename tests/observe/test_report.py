"""`dpo-launch report RUN_DIR`: PNG plots and report.md in <RUN_DIR>/dpo-launch/report/."""

from __future__ import annotations

import json

import pytest

from launcher.observe.report import ema, final_and_best
from launcher.observe.run_state import RunState

from support.cli import run_cli, run_main
from support.events import EventWriter
from support.training import live_run

PLOTS = ["loss.png", "rewards_chosen.png", "rewards_rejected.png", "rewards_margins.png",
         "rewards_accuracies.png", "logps_chosen.png", "logps_rejected.png", "learning_rate.png", "overview.png"]


@pytest.fixture
def report(tmp_path_factory, tiny_model_dir):
    run = live_run(tmp_path_factory, tiny_model_dir)
    assert run.returncode == 0, run.output[-3000:]
    result = run_cli("report", run.out)
    assert result.returncode == 0, result.stderr
    return run.out, result


@pytest.mark.slow
def test_report_lists_what_it_wrote(report):
    out, result = report
    assert result.stdout == (f"wrote 10 files to {out / 'dpo-launch' / 'report'}:\n"
                             + "".join(f"  {name}\n" for name in [*PLOTS, "report.md"]))


@pytest.mark.slow
def test_plots_are_real_images_with_content(report):
    import matplotlib.image

    out, _ = report
    for name in PLOTS:
        image = matplotlib.image.imread(out / "dpo-launch" / "report" / name)
        height, width = image.shape[:2]
        assert width >= 600 and height >= 400, name
        assert image[..., :3].std() > 0.05, f"{name} is nearly blank"


@pytest.mark.slow
def test_report_states_the_resolved_loss_and_reference_and_the_alerts(report):
    out, _ = report
    text = (out / "dpo-launch" / "report" / "report.md").read_text(encoding="utf-8")
    plan = json.loads((out / "dpo-launch" / "plan.json").read_text(encoding="utf-8"))
    lines = text.splitlines()
    assert lines[0] == "# dpo-launch report: out"
    assert f"- Loss: `sigmoid`: `{plan['loss']['formula']}` (pref_beta=0.5, dpo_label_smoothing=0.0, pref_ftx=0.0, " \
           "pref_bco_weight=0.0); first-batch loss 0.6931, expected 0.6931, self-test passed" in lines
    reference = [line for line in lines if line.startswith("- Reference model:")]
    expected = (f"- Reference model: `frozen-copy`: {plan['reference']['description']}; built by the worker: kind "
                f"`frozen-copy`, class `LlamaForCausalLM`, 147,776 parameters")
    assert reference == [expected]
    alerts_file = out / "dpo-launch" / "alerts.jsonl"
    rules = [json.loads(x)["rule"] for x in alerts_file.read_text().splitlines()] if alerts_file.exists() else []
    if rules:
        assert f"{len(rules)} alert(s) (raised live by the worker, from dpo-launch/alerts.jsonl):" in lines
    else:
        assert "None (raised live by the worker, from dpo-launch/alerts.jsonl)." in lines


@pytest.mark.slow
def test_metrics_table_has_final_and_best_for_train_and_eval(report):
    out, _ = report
    state = RunState(out)
    state.poll(final=True)
    final, best = final_and_best(state, "eval/rewards/accuracies", "max")
    rows = [line for line in (out / "dpo-launch" / "report" / "report.md").read_text().splitlines()
            if line.startswith("| rewards/accuracies |")]
    assert len(rows) == 1
    assert rows[0].endswith(f"| {final[1]:.4f} (step {final[0]}) | {best[1]:.4f} (step {best[0]}) |")


def test_report_tables_and_plots_the_log_probabilities(tmp_path):
    writer = EventWriter(tmp_path / "run" / "tensorboard")
    for step in range(1, 6):
        for tag, value in (("train/loss", 0.7 - step / 100), ("train/logps/chosen", -40.0 - step),
                           ("train/logps/rejected", -45.0 - 2 * step)):
            writer.add_scalar(tag, value, step, walltime=1000.0 + step)
    result = run_main("report", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "run" / "dpo-launch" / "report"
    lines = (folder / "report.md").read_text(encoding="utf-8").splitlines()
    assert "| logps/chosen | -45.0000 (step 5) | n/a | - | n/a |" in lines
    assert "| logps/rejected | -55.0000 (step 5) | n/a | - | n/a |" in lines
    assert {"logps_chosen.png", "logps_rejected.png"} <= {p.name for p in folder.iterdir()}


def test_a_run_dir_without_event_files_is_a_clear_error(tmp_path):
    result = run_main("report", tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith(f"dpo-launch report: error: {tmp_path}: no TensorBoard directory")
    assert not (tmp_path / "dpo-launch").exists()


def test_smoothing_is_debiased_so_it_starts_at_the_first_value():
    assert ema([1.0, 1.0, 1.0]) == pytest.approx([1.0, 1.0, 1.0])
    assert ema([0.0, 10.0], weight=0.5)[1] == pytest.approx(10 * 0.5 / 0.75)
