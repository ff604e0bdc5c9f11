"""bench/validate_speed.py runs end to end on a small file: it times validate with one job and with N against a
bare orjson parse of the same file in the same run, and the config-only path against `python -c pass`, finds
every seeded defect, and gets the same diagnostics from every job count. Its speed figures are not asserted
(speed goes to bench/, not to tests); the shape of its report and its consistency are."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from support.cli import REPO, cli_env

SCRIPT = REPO / "bench" / "validate_speed.py"


@pytest.mark.subprocess
def test_it_reports_speed_ratios_and_peak_memory_for_1_and_n_jobs_and_finds_every_seeded_defect():
    result = subprocess.run([sys.executable, str(SCRIPT), "--records", "400", "--defects", "21", "--jobs", "3",
                             "--repeat", "1"], check=False, cwd=REPO, env=cli_env(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert (report["records"], report["defects"], report["bytes"] > 400 * 1000) == (400, 21, True)
    assert set(report["records_per_s"]) == {"orjson", "orjson_1mib", "jobs_1", "jobs_3"}
    assert set(report["ratio_to_orjson"]) == set(report["ratio_to_orjson_1mib"]) == {"jobs_1", "jobs_3"}
    timed = {"orjson", "orjson_1mib", "jobs_1", "jobs_3", "python_pass", "config_only"}
    assert set(report["median_s"]) == set(report["median_cpu_s"]) == set(report["peak_rss_mb"]) == timed
    median = report["median_s"]
    for name, ratio in report["ratio_to_orjson"].items():
        assert ratio == pytest.approx(median["orjson"] / median[name], abs=0.01 + 0.05 * ratio)  # rounded figures
        # one repeat: its own ratio is the ratio of the medians
        assert report["paired_ratio_to_orjson"][name] == pytest.approx(median["orjson"] / median[name],
                                                                       abs=0.01 + 0.05 * ratio)
        floor = report["ratio_to_orjson_1mib"][name]
        assert floor == pytest.approx(median["orjson_1mib"] / median[name], abs=0.01 + 0.05 * floor)
    assert all(value > 0 for value in report["peak_rss_mb"].values())
    cpu = report["median_cpu_s"]
    assert report["ratio_to_orjson_cpu"] == pytest.approx(cpu["orjson"] / cpu["jobs_1"], abs=0.01 + 0.05 * ratio)
    assert report["config_only_over_python_s"] == pytest.approx(median["config_only"] - median["python_pass"],
                                                                abs=0.002)
    assert report["defects_missed"] == {"jobs_1": [], "jobs_3": []}
    assert report["all_defects_found"] is True and report["same_diagnostics"] is True


def test_every_kind_of_seeded_defect_is_written_at_its_line(tmp_path):
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import validate_speed
    finally:
        sys.path.remove(str(SCRIPT.parent))
    seeded = validate_speed.write_data(tmp_path / "data.jsonl", 50, 14)
    assert sorted(set(seeded.values())) == sorted(validate_speed.DEFECTS)
    lines = (tmp_path / "data.jsonl").read_text().splitlines()
    assert len(lines) == 50
    for number, line in enumerate(lines, 1):
        kind = seeded.get(number)
        assert (line.count('"chosen"') == 2) == (kind == "repeated-key")
        if kind == "syntax":
            with pytest.raises(json.JSONDecodeError):
                json.loads(line)
        else:
            assert isinstance(json.loads(line), dict)
