"""The wheels the GPU check carries resolve, without the network: bench/gpu/wheels.lock.json (what
bench/gpu/prepare.sh downloaded, with each wheel's Requires-Dist and the version gates LLaMA-Factory and
transformers run) against bench/gpu/wheels.toml (the pins) and bench/gpu/box.txt (what the GPU box has). Also
the checks themselves: a wrong wheel folder, a changed download and an unmet requirement on the box are caught."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import sys
import zipfile
from pathlib import Path

import pytest

from support.cli import REPO

sys.path.insert(0, str(REPO / "bench" / "gpu"))
import prepare  # noqa: E402
import probe  # noqa: E402
import wheels  # noqa: E402

PINS, LEFT_BEHIND = wheels.load_pins()
BOX = wheels.load_box()
LOCK = json.loads(wheels.LOCK_FILE.read_text(encoding="utf-8"))


def test_every_requirement_of_every_carried_wheel_is_met_by_a_carried_wheel_or_by_the_box():
    assert wheels.requirement_problems(LOCK, PINS, BOX, LEFT_BEHIND) == []


def test_the_lock_holds_one_wheel_per_pin_at_the_pinned_version():
    locked = sorted((entry["name"], entry["version"]) for entry in LOCK["wheels"])
    assert locked == sorted((pin.name, pin.version) for pin in PINS.values())


def test_the_locked_wheels_install_on_cpython_3_12_x86_64_and_stay_under_64_mib():
    supported = wheels.target_tags()
    assert [e["file"] for e in LOCK["wheels"] if not wheels.parse_wheel_filename(e["file"])[3] & supported] == []
    total = sum(entry["size"] for entry in LOCK["wheels"])
    assert total == LOCK["total_size"] < 64 * 2**20


def test_llamafactorys_gates_in_the_lock_are_the_ones_the_installed_llamafactory_runs():
    # The same release as the pin is installed here (pyproject's train extra): its source is the upstream truth.
    assert importlib.metadata.version("llamafactory") == PINS["llamafactory"].version
    package = Path(importlib.util.find_spec("llamafactory").origin).parent  # found, not imported
    source = (package / "extras" / "misc.py").read_text(encoding="utf-8")
    locked = next(e for e in LOCK["wheels"] if e["name"] == "llamafactory")["runtime_requires"]
    assert locked == wheels._function_strings(source, "check_dependencies")
    assert "transformers>=4.55.0,<=5.6.0" in locked


def test_the_box_tokenizers_would_fail_transformers_import_check_so_it_is_carried():
    pins = {name: pin for name, pin in PINS.items() if name != "tokenizers"}
    assert wheels.requirement_problems(LOCK, pins, BOX, LEFT_BEHIND) == [
        "transformers 5.5.4 requires tokenizers<=0.23.0,>=0.22.0: the box has tokenizers 0.23.2; carry a version "
        "that fits",
        "transformers 5.5.4 checks at run time tokenizers<=0.23.0,>=0.22.0: the box has tokenizers 0.23.2; carry a "
        "version that fits",
    ]


def test_a_requirement_neither_carried_nor_on_the_box_is_reported_for_each_wheel_that_needs_it():
    pins = {name: pin for name, pin in PINS.items() if name != "dill"}
    assert wheels.requirement_problems(LOCK, pins, BOX, LEFT_BEHIND) == [
        "datasets 4.0.0 requires dill<0.3.9,>=0.3.0: dill is neither carried nor on the box (carry it, or leave it "
        "behind with a reason)",
        "multiprocess 0.70.16 requires dill>=0.3.8: dill is neither carried nor on the box (carry it, or leave it "
        "behind with a reason)",
    ]


def test_only_a_requirement_left_behind_with_a_reason_may_stay_behind():
    left_behind = {name: why for name, why in LEFT_BEHIND.items() if name != "gradio"}
    assert wheels.requirement_problems(LOCK, PINS, BOX, left_behind) == [
        "llamafactory 0.9.5 requires gradio<=5.50.0,>=4.38.0: gradio is neither carried nor on the box (carry it, "
        "or leave it behind with a reason)",
    ]


def fake_wheel(folder: Path, filename: str, size: int = 100) -> Path:
    path = folder / filename
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("padding", b"x" * size)
    return path


def pinned_folder(folder: Path) -> list[Path]:
    return [fake_wheel(folder, entry["file"]) for entry in LOCK["wheels"]]


def test_a_folder_with_exactly_the_locked_files_passes(tmp_path):
    assert wheels.folder_problems(pinned_folder(tmp_path), PINS) == []


def test_a_folder_with_a_second_version_a_missing_pin_or_a_cp311_wheel_is_refused(tmp_path):
    files = [path for path in pinned_folder(tmp_path) if not path.name.startswith("dill-")]
    files.append(fake_wheel(tmp_path, "peft-0.21.0-py3-none-any.whl"))
    orjson = next(path for path in files if path.name.startswith("orjson-"))
    files[files.index(orjson)] = orjson.rename(tmp_path / "orjson-3.13.0-cp311-cp311-manylinux_2_17_x86_64.whl")
    assert wheels.folder_problems(files, PINS) == [
        "orjson-3.13.0-cp311-cp311-manylinux_2_17_x86_64.whl: does not install on CPython 3.12, manylinux x86_64",
        "peft-0.21.0-py3-none-any.whl: not a carried wheel (the pin is peft==0.18.1); remove it",
        "dill==0.3.8: no wheel for it",
    ]


def test_a_folder_over_the_size_limit_is_refused(tmp_path):
    files = pinned_folder(tmp_path)
    total = sum(path.stat().st_size for path in files)
    assert wheels.folder_problems(files, PINS, limit=total - 1) == [
        f"{total / 2**20:.1f} MiB in all, over the 0 MiB limit"]


def test_a_download_that_differs_from_the_lock_is_named_with_both_files():
    entries = [dict(entry) for entry in LOCK["wheels"]]
    trl = next(entry for entry in entries if entry["name"] == "trl")
    locked_sha = trl["sha256"]
    trl["sha256"] = "0" * 64
    deepspeed = next(entry for entry in entries if entry["name"] == "deepspeed")
    deepspeed["sha256"] = "1" * 64  # built here: its bytes differ on every build, so only the file name counts
    entries.remove(next(entry for entry in entries if entry["name"] == "hjson"))
    assert prepare.lock_problems(entries, LOCK) == [
        f"trl-0.24.0-py3-none-any.whl (sha256 000000000000): the lock has trl-0.24.0-py3-none-any.whl "
        f"(sha256 {locked_sha[:12]})",
        "hjson: in the lock but not downloaded",
    ]


def test_prepare_replaces_only_a_wheel_folder_it_wrote_itself(tmp_path):
    dest, staging = tmp_path / "dest folder", tmp_path / "staging"
    dest.mkdir()
    (dest / "mine.txt").write_text("a user's file\n")
    staging.mkdir()
    with pytest.raises(prepare.PrepareError, match="holds files this script did not write"):
        prepare.replace_dest(staging, dest)
    assert (dest / "mine.txt").read_text() == "a user's file\n"
    (dest / "mine.txt").unlink()
    (dest / prepare.MARKER).write_text("")
    fake_wheel(staging, "trl-0.24.0-py3-none-any.whl")
    prepare.replace_dest(staging, dest)
    assert sorted(p.name for p in dest.iterdir()) == [prepare.MARKER, "trl-0.24.0-py3-none-any.whl"]


def test_on_the_box_the_probe_lists_a_carried_requirement_the_installed_versions_do_not_meet(tmp_path):
    info = tmp_path / "site" / "demo_pkg-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\n"
                                   "Requires-Dist: packaging>=999\nRequires-Dist: pyyaml>=5.1\n"
                                   "Requires-Dist: gradio; extra == 'web'\n"
                                   "Requires-Dist: no-such-package-anywhere\nRequires-Dist: left-behind-one>=1\n")
    installed = importlib.metadata.version("packaging")
    assert probe.unmet_requirements(tmp_path / "site", frozenset({"left-behind-one"})) == (
        1, ["demo-pkg 1.0 requires no-such-package-anywhere, found nothing",
            f"demo-pkg 1.0 requires packaging>=999, found {installed}"])
