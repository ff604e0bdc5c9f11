"""The GPUs as nvidia-smi reports them: parsing its CSV, CUDA_VISIBLE_DEVICES, and `--gpu-memory` sizes."""

from __future__ import annotations

import os
import stat

import pytest

from launcher.errors import UsageError
from launcher.plan import gpus
from launcher.plan.gpus import Gpu, GpuMemory, gpu_memory, parse_gpus, parse_memory_size, visible

H100_AND_T4 = ("0, GPU-5f1c-aaaa, NVIDIA H100 80GB HBM3, 9.0, 81559\n"
               "1, GPU-77e2-bbbb, Tesla T4, 7.5, 15360\n")
H100 = Gpu(0, "GPU-5f1c-aaaa", "NVIDIA H100 80GB HBM3", (9, 0), 81559 / 1024)
T4 = Gpu(1, "GPU-77e2-bbbb", "Tesla T4", (7, 5), 15.0)


def test_nvidia_smi_csv_becomes_gpus_with_capability_and_memory_in_gib():
    assert parse_gpus(H100_AND_T4) == [H100, T4]


def test_fields_the_driver_does_not_know_stay_unknown_and_stray_lines_are_ignored():
    text = "No devices were found\n0, GPU-x, Some GPU, [N/A], [N/A]\n"

    assert parse_gpus(text) == [Gpu(0, "GPU-x", "Some GPU", None, None)]


@pytest.mark.parametrize(("selection", "expected"), [
    (None, [H100, T4]), ("1", [T4]), ("1,0", [T4, H100]), ("GPU-77e2", [T4]), ("", []), ("0,7,1", [H100]),
    ("-1", []),
])
def test_cuda_visible_devices_selects_by_index_or_uuid_and_stops_at_the_first_it_cannot_match(selection, expected):
    env = {} if selection is None else {"CUDA_VISIBLE_DEVICES": selection}

    assert visible([H100, T4], env) == expected


@pytest.mark.parametrize(("text", "gib"), [
    ("80GiB", 80.0), ("80gib", 80.0), ("80", 80.0), ("24GB", 24e9 / 2 ** 30), ("81920MiB", 80.0), ("1TiB", 1024.0),
    ("0.5 GiB", 0.5),
])
def test_gpu_memory_sizes_read_binary_and_decimal_units(text, gib):
    assert parse_memory_size(text) == pytest.approx(gib)


@pytest.mark.parametrize("text", ["80 gigs", "-4GiB", "0", "GiB", "8O"])
def test_a_gpu_memory_size_that_is_not_one_is_a_usage_error(text):
    with pytest.raises(UsageError) as error:
        parse_memory_size(text)

    assert str(error.value) == f"--gpu-memory: expected a size such as 80GiB, 24GB or 81920MiB but got {text!r}"


def test_the_memory_planned_against_is_the_flag_else_the_smallest_detected_gpu():
    assert gpu_memory("40GiB", [H100, T4]) == GpuMemory(40.0, "--gpu-memory 40GiB")
    assert gpu_memory(None, [H100, T4]) == GpuMemory(15.0, "GPU 1, Tesla T4, from nvidia-smi")
    assert gpu_memory(None, None) is None
    assert gpu_memory(None, []) is None


@pytest.mark.subprocess
def test_nvidia_smi_is_asked_for_exactly_the_fields_that_are_parsed(tmp_path, monkeypatch):
    called = tmp_path / "argv"
    script = tmp_path / "bin" / "nvidia-smi"
    script.parent.mkdir()
    script.write_text(f"#!/bin/sh\necho \"$@\" > '{called}'\nprintf '{H100_AND_T4}'\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(script.parent) + os.pathsep + os.environ.get("PATH", ""))

    assert gpus.detect_gpus({"CUDA_VISIBLE_DEVICES": "0"}) == [H100]
    assert called.read_text() == "--query-gpu=index,uuid,name,compute_cap,memory.total --format=csv,noheader,nounits\n"


@pytest.mark.subprocess
def test_a_failing_nvidia_smi_means_the_details_are_unknown(tmp_path, monkeypatch):
    script = tmp_path / "nvidia-smi"
    script.write_text("#!/bin/sh\necho 'Field \"compute_cap\" is not a valid field to query.' >&2\nexit 2\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(tmp_path))

    assert gpus.detect_gpus({}) is None
