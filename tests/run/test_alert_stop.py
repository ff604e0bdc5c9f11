"""A run ended by an alert named in --stop-on: every rank saves a checkpoint at the same step and exits
EXIT_ALERT_STOP (4), `dpo-launch train` exits 4 too, and its closing message, `report` and `monitor` say which
alert stopped it at which step. pref_beta 1e38 overflows the first step's gradient, so grad_norm is NaN at
step 1 and loss-not-finite (stopping by default) fires there."""

from __future__ import annotations

import pytest

from launcher.errors import EXIT_ALERT_STOP

from support.cli import run_cli
from support.training import make_workspace, training_env

NAN_RUN = {"pref_beta": 1e38, "max_steps": 30, "learning_rate": 1e-2, "save_strategy": "no"}


def closing_message(out, logs) -> str:
    return (f"dpo-launch: training stopped by the loss-not-finite alert at step 1 (--stop-on; exit 4); every rank "
            f"saved {out / 'checkpoint-1'}; logs in {logs}")


@pytest.mark.slow
def test_one_process_stopped_by_an_alert_exits_4_and_every_output_names_the_alert_and_step(tmp_path, tiny_model_dir):
    ws = make_workspace(tmp_path / "ws", tiny_model_dir, **NAN_RUN)
    result = run_cli("train", ws.config, "--no-monitor", cwd=ws.root, env=training_env())
    assert result.returncode == EXIT_ALERT_STOP, result.stdout[-3000:] + result.stderr[-3000:]
    logs = ws.out / "dpo-launch" / "logs"
    assert result.stderr.splitlines()[-1] == closing_message(ws.out, logs)
    assert (f"dpo-launch worker: stopped by the loss-not-finite alert at step 1 (--stop-on) (rank 0); saved "
            f"{ws.out}/checkpoint-1") in result.stdout + result.stderr
    assert (logs / "launcher.log").read_text().splitlines()[-1] == closing_message(ws.out, logs)

    report = run_cli("report", ws.out)
    assert report.returncode == 0, report.stderr
    [status] = [line for line in (ws.out / "dpo-launch" / "report" / "report.md").read_text().splitlines()
                if line.startswith("- Status: ")]
    assert status.startswith("- Status: stopped by the loss-not-finite alert at step 1")  # "(exit 4)" with status.json
    assert status.endswith(", last logged step 1 of 30") or ", last logged step 1 of 30, train_runtime " in status

    snapshot = run_cli("monitor", ws.out, "--once")
    assert snapshot.returncode == 0, snapshot.stderr
    [line] = [line.strip("│ ") for line in snapshot.stdout.splitlines() if line.startswith("│ step 1/30")]
    assert line.startswith("step 1/30 (3%) · stopped by the loss-not-finite alert at step 1")
    assert "ETA" not in line


@pytest.mark.slow
def test_with_two_ranks_both_stop_on_the_alert_and_the_job_exits_4(tmp_path, tiny_model_dir):
    ws = make_workspace(tmp_path / "ws", tiny_model_dir, **NAN_RUN)
    result = run_cli("train", ws.config, "--no-monitor", "--nproc-per-node", "2", cwd=ws.root, env=training_env())
    output = result.stdout + result.stderr
    assert result.returncode == EXIT_ALERT_STOP, output[-4000:]
    logs = ws.out / "dpo-launch" / "logs"
    for rank in (0, 1):  # each rank's closing line in its own log (rank 1's once went to rank 0's: tee.py)
        assert (f"dpo-launch worker: stopped by the loss-not-finite alert at step 1 (--stop-on) (rank {rank}); "
                f"saved {ws.out}/checkpoint-1") in (logs / f"rank-{rank}.log").read_text()
    # torchrun's failure list holds every rank's exit code once all have ended (SIGTERMed ranks included)
    assert "torchrun: rank(s) 0, 1 exited 4: stopped by a --stop-on alert\n" in output
    assert "ChildFailedError" not in output and "Traceback" not in output
    assert result.stderr.splitlines()[-1] == closing_message(ws.out, logs)
    assert sorted(p.name for p in ws.out.glob("checkpoint-*")) == ["checkpoint-1"]
