"""The human judge's page in a real browser (headless chromium through chromedriver): pairs labeled with the
mouse and with the keyboard shortcuts, the page reloaded and the command restarted mid-labeling, and every
verdict on disk exactly once, mapped back through the order the page showed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from test_judges import write_candidates

from support.cli import cli_env, unused_port
from support.webdriver import Browser


def start_page(tmp_path, port):
    argv = [sys.executable, "-m", "launcher", "pairs", str(write_candidates(tmp_path)), "--judge", "human",
            "--port", str(port), "--out", "pairs.jsonl"]
    process = subprocess.Popen(argv, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5):
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError(f"the page did not come up: {process.communicate()}")


def shown(browser):
    """(key, text shown as A, text shown as B) once the page shows a pair."""
    prompt = browser.wait_for("#prompt", lambda text: "key " in text)
    key = prompt.split("key ", 1)[1].split(")", 1)[0]
    return key, browser.value("#response-a textarea"), browser.value("#response-b textarea")


def labeled(browser, count):
    browser.wait_for("#progress", lambda text: text.startswith(f"{count} of 4 labeled") or
                     (count == 4 and text.startswith("All 4 pairs")))


@pytest.mark.subprocess
def test_labels_by_mouse_and_keyboard_survive_a_reload_and_a_restart_exactly_once(tmp_path):
    port = unused_port()
    url = f"http://127.0.0.1:{port}/"
    page = start_page(tmp_path, port)
    seen = {}
    with Browser() as browser:
        browser.open(url)
        key, a, b = shown(browser)
        seen[key] = ("A", a)
        browser.click("#choose-a")  # the mouse
        labeled(browser, 1)
        browser.open(url)  # reload mid-labeling: the next unlabeled pair
        key, a, b = shown(browser)
        assert key not in seen
        seen[key] = ("B", b)
        browser.press("b")  # the keyboard
        labeled(browser, 2)
        page.send_signal(signal.SIGINT)  # stop the command mid-labeling: the verdicts so far stay
        _, err = page.communicate(timeout=60)
        assert page.returncode == 130, err
        page = start_page(tmp_path, port)
        browser.open(url)
        key, a, b = shown(browser)
        assert key not in seen
        seen[key] = ("tie", None)
        browser.press("t")
        labeled(browser, 3)
        key, a, b = shown(browser)
        seen[key] = ("A", a)
        browser.press("a")
        labeled(browser, 4)
    out, err = page.communicate(timeout=60)
    assert page.returncode == 0, err
    log = [json.loads(line) for line in (tmp_path / "pairs.human-verdicts.jsonl").read_text().splitlines()]
    assert sorted(r["key"] for r in log) == sorted(seen) == ["p1:0-1", "p1:0-2", "p1:1-2", "p2:0-1"]
    candidates = {r["id"]: r["responses"] for r in map(json.loads, (tmp_path / "cands.jsonl").read_text().splitlines())}
    for record in log:
        choice, text = seen[record["key"]]
        assert record["choice"] == choice
        if choice != "tie":  # the winner, mapped back through the shown order, is the text the person picked
            ident, pair = record["key"].split(":")
            index = int(pair.split("-")[0 if record["winner"] == "a" else 1])
            assert candidates[ident][index] == text
    assert out.startswith("wrote pairs.jsonl: ")
