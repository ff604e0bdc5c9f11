"""A real browser for tests: Debian's chromium driven through chromedriver's W3C WebDriver HTTP API.

Selenium is a client for this same protocol; the few calls the page tests need (open a URL, find an element,
click it, press a key, read text) are plain JSON over HTTP, so no client package is needed. `make test`
installs chromium and chromium-driver (scripts/setup_browser.sh).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request

from support.cli import unused_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C key of an element reference


class Browser:
    """A headless chromium session; use as a context manager."""

    def __init__(self) -> None:
        self.port = unused_port()
        self.driver = subprocess.Popen([CHROMEDRIVER, f"--port={self.port}"], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        self._wait_for_driver()
        options = {"binary": CHROMIUM, "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                                                 "--disable-dev-shm-usage", "--window-size=1200,900"]}
        session = self._call("POST", "/session", {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": options}}})
        self.session = f"/session/{session['sessionId']}"

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._call("DELETE", self.session)
        finally:
            self.driver.terminate()
            self.driver.wait(timeout=30)

    def open(self, url: str) -> None:
        self._call("POST", f"{self.session}/url", {"url": url})

    def find(self, css: str) -> str:
        found = self._call("POST", f"{self.session}/element", {"using": "css selector", "value": css})
        return found[ELEMENT]

    def text(self, css: str) -> str:
        try:
            return self._call("GET", f"{self.session}/element/{self.find(css)}/text")
        except RuntimeError:
            return ""

    def value(self, css: str) -> str:
        """The value of an input or textarea inside the element matched by css."""
        script = "const e = document.querySelector(arguments[0]); return e ? e.value : null;"
        return self._call("POST", f"{self.session}/execute/sync", {"script": script, "args": [css]}) or ""

    def click(self, css: str) -> None:
        self._call("POST", f"{self.session}/element/{self.find(css)}/click", {})

    def press(self, key: str) -> None:
        """A key press on the page (keyboard shortcut), as a user types it."""
        actions = [{"type": "key", "id": "keyboard", "actions": [{"type": "keyDown", "value": key},
                                                                 {"type": "keyUp", "value": key}]}]
        self._call("POST", f"{self.session}/actions", {"actions": actions})

    def wait_for(self, css: str, predicate, timeout: float = 60) -> str:
        """Poll the element's text until predicate(text) holds; its text."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.text(css)
            if predicate(text):
                return text
            time.sleep(0.1)
        raise AssertionError(f"{css} never satisfied the condition; last text {text!r}")

    def _wait_for_driver(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self._call("GET", "/status")
                return
            except (OSError, RuntimeError):
                time.sleep(0.1)
        raise RuntimeError(f"chromedriver did not start on port {self.port}")

    def _call(self, method: str, path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"WebDriver {method} {path}: {exc.code} {exc.read()[:300]!r}") from None
