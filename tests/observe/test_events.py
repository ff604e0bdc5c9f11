"""launcher.observe.events reads TensorBoard event files by hand; tensorboard's own EventAccumulator is the referee.

tensorboard and torch are imported here, in the test process only; the CLI never imports them.
"""

from __future__ import annotations

import math
import shutil
import struct

import pytest

from launcher.observe.events import (
    CorruptEventFile,
    EventReader,
    Scalar,
    Text,
    event_files,
    masked_crc32c,
    read_all,
    split_records,
)

from support.events import EventWriter
from support.training import live_run


def accumulated_scalars(logdir) -> dict[str, list[tuple[int, float, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return {tag: [(e.step, e.value, e.wall_time) for e in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]}


def our_scalars(logdir, run: str = ".") -> dict[str, list[tuple[int, float, float]]]:
    out: dict[str, list] = {}
    for event in read_all(logdir):
        if isinstance(event, Scalar) and event.run == run:
            out.setdefault(event.tag, []).append((event.step, event.value, event.wall_time))
    return out


@pytest.fixture
def torch_writer(tmp_path):
    """torch's SummaryWriter, what HF's TensorBoardCallback writes with (imports the training stack)."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "tb"))
    yield writer
    writer.close()


@pytest.fixture
def writer(tmp_path):
    """Event files framed and encoded as TensorBoard writes scalars, without torch (tests/support/events.py)."""
    return EventWriter(tmp_path / "tb")


@pytest.mark.slow
def test_reader_matches_event_accumulator_on_a_real_dpo_launch_train_run(tmp_path_factory, tiny_model_dir):
    run = live_run(tmp_path_factory, tiny_model_dir)
    assert run.returncode == 0, run.output[-3000:]
    logdir = run.out / "tensorboard"
    assert len(event_files(logdir)) >= 1
    # EventAccumulator reads one directory (one run): compare HF's run and our dpo-launch/ run separately.
    ours, expected = our_scalars(logdir), accumulated_scalars(logdir)
    assert "train/rewards/accuracies" in expected
    assert ours == expected
    assert our_scalars(logdir, "dpo-launch") == accumulated_scalars(logdir / "dpo-launch")


@pytest.mark.slow  # imports the training stack in process
def test_reader_matches_event_accumulator_on_values_steps_and_wall_times(torch_writer, tmp_path):
    writer = torch_writer
    for step in range(50):
        writer.add_scalar("train/loss", 0.7 - step / 100, step)
        writer.add_scalar("train/rewards/margins", step * 1e-3, step, walltime=1_700_000_000.25 + step)
    writer.add_scalar("train/grad_norm", float("nan"), 50)
    writer.flush()
    ours, expected = our_scalars(tmp_path / "tb"), accumulated_scalars(tmp_path / "tb")
    assert math.isnan(ours["train/grad_norm"][0][1]) and math.isnan(expected["train/grad_norm"][0][1])
    del ours["train/grad_norm"], expected["train/grad_norm"]
    assert ours == expected


@pytest.mark.slow  # imports the training stack in process
def test_tensor_encoded_float_scalars_and_text_are_read(torch_writer, tmp_path):
    writer = torch_writer
    writer.add_scalar("train/loss", 0.5, 3, new_style=True)  # a TensorProto, as the newer summary API writes
    writer.add_scalar("train/loss", 0.25, 4, double_precision=True, new_style=True)
    writer.add_text("dpo-launch/plan", "hello **world**", 0)
    writer.flush()
    events = read_all(tmp_path / "tb")
    assert [(e.tag, e.step, e.value) for e in events if isinstance(e, Scalar)] == [("train/loss", 3, 0.5),
                                                                                 ("train/loss", 4, 0.25)]
    assert [(e.tag, e.text) for e in events if isinstance(e, Text)] == [("dpo-launch/plan/text_summary",
                                                                         "hello **world**")]


def test_each_poll_returns_only_what_was_appended(writer, tmp_path):
    reader = EventReader(tmp_path / "tb")
    writer.add_scalar("a", 1.0, 1)
    writer.flush()
    assert [(e.tag, e.step) for e in reader.poll() if isinstance(e, Scalar)] == [("a", 1)]
    assert reader.poll() == []
    writer.add_scalar("a", 2.0, 2)
    writer.add_scalar("b", 3.0, 2)
    writer.flush()
    assert [(e.tag, e.step, e.value) for e in reader.poll()] == [("a", 2, 2.0), ("b", 2, 3.0)]


def test_a_record_still_being_written_is_left_for_the_next_poll(writer, tmp_path):
    for step in range(3):
        writer.add_scalar("a", float(step), step)
    writer.flush()
    (source,) = event_files(tmp_path / "tb")
    data = source.read_bytes()
    growing = tmp_path / "copy" / source.name
    growing.parent.mkdir()
    growing.write_bytes(data[:-7])  # the last record lacks 7 bytes
    reader = EventReader(growing.parent)
    assert [e.step for e in reader.poll() if isinstance(e, Scalar)] == [0, 1]
    with open(growing, "ab") as handle:
        handle.write(data[-7:])
    assert [e.step for e in reader.poll() if isinstance(e, Scalar)] == [2]


def test_a_damaged_record_is_reported_not_misread(writer, tmp_path):
    writer.add_scalar("a", 1.0, 1)
    writer.flush()
    (source,) = event_files(tmp_path / "tb")
    data = bytearray(source.read_bytes())
    data[-6] ^= 0xFF  # a byte of the last record's payload
    with pytest.raises(CorruptEventFile, match="bad data checksum"):
        split_records(bytes(data))


@pytest.mark.slow  # imports tensorboard
def test_masked_crc32c_matches_tensorboards():
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as reference

    for payload in (b"", b"a", struct.pack("<Q", 1234), bytes(range(256)) * 3):
        assert masked_crc32c(payload) == reference(payload)


def test_event_files_in_subdirectories_are_separate_runs(tmp_path):
    for sub in ("", "dpo-launch"):
        EventWriter(tmp_path / "tb" / sub).add_scalar("x", 1.0, 1)
    assert sorted(e.run for e in read_all(tmp_path / "tb")) == [".", "dpo-launch"]


def test_a_missing_logdir_reads_as_empty(tmp_path):
    assert EventReader(tmp_path / "absent").poll() == []


def test_a_copied_run_reads_the_same(writer, tmp_path):
    writer.add_scalar("a", 1.5, 7)
    writer.flush()
    shutil.copytree(tmp_path / "tb", tmp_path / "elsewhere")
    assert [(e.tag, e.step, e.value) for e in read_all(tmp_path / "elsewhere")] == [("a", 7, 1.5)]
