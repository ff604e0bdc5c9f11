"""monitor, report and the live view inside `train` on run directories with damage in them: one flipped byte in an
event file, a line of alerts.jsonl that is not an alert. What cannot be read is skipped and named once; the rest
is shown; the exit code is 0."""

from __future__ import annotations

import io
import json
import re
import struct

from launcher.observe.events import EventReader, Scalar, salvage_records

from support.cli import run_main
from support.events import record, scalar_event, write_run, write_scalars

ALERT = {"rule": "grad-norm-spike", "severity": "warning", "step": 2, "message": "grad_norm 50 is 50.0x the median",
         "hint": "bad batch, lr too high", "values": {"train/grad_norm": 50.0}}


def event_file(run_dir):
    return run_dir / "tensorboard" / "events.out.tfevents.1.host"


def flip(path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def record_offsets(path) -> list[int]:
    data, offsets, pos = path.read_bytes(), [], 0
    while pos < len(data):
        offsets.append(pos)
        pos += 12 + struct.unpack("<Q", data[pos:pos + 8])[0] + 4
    return offsets


def loss_steps(events) -> list[int]:
    return [e.step for e in events if isinstance(e, Scalar) and e.tag == "train/loss"]


# --- the reader ----------------------------------------------------------------------------------------------

def test_a_flipped_data_byte_drops_that_record_only_and_is_named_once(tmp_path):
    run = write_run(tmp_path / "run", 5)
    offsets = record_offsets(event_file(run))
    flip(event_file(run), offsets[4] + 14)  # the data of step 3's train/loss record
    reader = EventReader(run / "tensorboard")
    assert loss_steps(reader.poll()) == [1, 2, 4, 5]
    assert reader.take_warnings() == [f"{event_file(run)}: damaged event file (bad data checksum in the record at "
                                      f"byte {offsets[4]}; skipped it); what can be read is shown, the rest is skipped"]
    with open(event_file(run), "ab") as handle:  # the run goes on writing: read, and not named again
        handle.write(record(scalar_event("train/loss", 6, 0.6, 1003.0)))
    assert loss_steps(reader.poll()) == [6]
    assert reader.take_warnings() == []


def test_a_flipped_length_byte_skips_to_the_next_whole_record(tmp_path):
    run = write_run(tmp_path / "run", 5)
    offsets = record_offsets(event_file(run))
    flip(event_file(run), offsets[4] + 1)  # the length of step 3's train/loss record: where it ends is unknown
    records, used, problems = salvage_records(event_file(run).read_bytes())
    assert used == event_file(run).stat().st_size
    assert len(records) == len(offsets) - 1
    assert problems == [f"bad length checksum at byte {offsets[4]}; skipped {offsets[5] - offsets[4]} bytes"]


def test_damage_at_the_end_waits_for_more_bytes_instead_of_guessing(tmp_path):
    path = write_scalars(tmp_path / "events.out.tfevents.1.host", [("train/loss", 1, 0.7)])
    whole = path.stat().st_size
    with open(path, "ab") as handle:
        handle.write(b"\xff" * 20)  # garbage after the last record, nothing whole after it (yet)
    records, used, problems = salvage_records(path.read_bytes())
    assert (len(records), used) == (1, whole)
    assert problems == [f"bad length checksum at byte {whole}"]


# --- monitor, report, the live view ----------------------------------------------------------------------------

def write_alerts(run, lines: list[str]) -> None:
    (run / "dpo-launch").mkdir(parents=True, exist_ok=True)
    (run / "dpo-launch" / "alerts.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def test_monitor_once_shows_a_run_with_a_damaged_event_file_and_a_bad_alert_line(tmp_path):
    run = write_run(tmp_path / "run", 5, max_steps=10)
    flip(event_file(run), record_offsets(event_file(run))[4] + 14)
    write_alerts(run, ['{"rule": "loss-not-fin', json.dumps(ALERT), "[1, 2]"])
    result = run_main("monitor", run, "--once")
    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        f"dpo-launch monitor: {event_file(run)}: damaged event file (bad data checksum in the record at byte "
        f"{record_offsets(event_file(run))[4]}; skipped it); what can be read is shown, the rest is skipped",
        f"dpo-launch monitor: {run / 'dpo-launch' / 'alerts.jsonl'}:1: not an alert record (expected one JSON "
        "object per line); skipped it and any other such line"]
    screen = " ".join(line.strip("│ ") for line in result.stdout.splitlines())
    assert "step 5/10 (50%)" in screen
    assert "alerts (1):" in screen and "warning[grad-norm-spike] step 2: grad_norm 50 is 50.0x the median" in screen


def test_report_skips_what_it_cannot_read_says_so_and_lists_it_in_report_md(tmp_path):
    run = write_run(tmp_path / "run", 5, max_steps=5, finished=True)
    flip(event_file(run), record_offsets(event_file(run))[4] + 14)
    write_alerts(run, [json.dumps(ALERT), "not json at all"])
    result = run_main("report", run)
    assert result.returncode == 0, result.stderr
    warnings = result.stderr.splitlines()
    assert [w.split(": ", 2)[2].split(" (")[0] for w in warnings] == [
        "damaged event file", "not an alert record"]
    report = (run / "dpo-launch" / "report" / "report.md").read_text(encoding="utf-8").splitlines()
    assert [line for line in report if line.startswith("- Skipped")] == [
        f"- Skipped, could not be read: {w.removeprefix('dpo-launch report: ')}" for w in warnings]
    assert "1 alert(s) (raised live by the worker, from dpo-launch/alerts.jsonl):" in report


def test_the_live_view_inside_train_keeps_drawing_past_a_bad_alert_line(tmp_path, capsys):
    from rich.console import Console

    from launcher.observe.train_console import LiveView

    run = write_run(tmp_path / "run", 5)
    write_alerts(run, ["{truncated", json.dumps(ALERT)])
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    handle = LiveView(run, console=console)
    handle.stop()
    assert not handle._thread.is_alive()
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", console.file.getvalue())
    assert "warning[grad-norm-spike] step 2" in screen
    assert "Traceback" not in capsys.readouterr().err


def test_anything_else_that_breaks_the_live_view_ends_the_view_not_the_run(tmp_path, capsys, monkeypatch):
    from launcher.observe import train_console

    def broken(*args, **kwargs):
        raise ValueError("unexpected")

    write_run(tmp_path, 1)  # an event file: the view goes on to follow the run
    monkeypatch.setattr(train_console, "follow", broken)
    handle = train_console.LiveView(tmp_path)
    handle.stop()
    assert capsys.readouterr().err == ("dpo-launch: the live view stopped (ValueError: unexpected); training goes on, "
                                       "its output continues below\n")
