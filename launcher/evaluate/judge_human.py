"""The human judge, `--judge human`: a small labeling page (gradio) on 127.0.0.1.

It shows the prompt and the two responses side by side, in a random order per showing (recorded with the
verdict), with four buttons: A better, B better, tie, skip, and the keys a, b, t and s. Every verdict is appended
to the verdicts log and fsync'ed before the next pair is shown, so a closed page, a reload or a killed process
loses nothing; a rerun shows only the pairs without a verdict. A pair gets one verdict: a second answer for it
(two tabs, a double key press) is dropped. The page is bound to 127.0.0.1 unless --host says otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import threading
import time
from pathlib import Path

from launcher.evaluate.judging import SKIP, TIE, Item, Verdict

CHOICES = {"A": "choose-a", "B": "choose-b", "tie": "choose-tie", "skip": "choose-skip"}
SHORTCUTS = """<script>
document.addEventListener('keydown', (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const ids = {a: 'choose-a', b: 'choose-b', t: 'choose-tie', s: 'choose-skip'};
  const id = ids[(event.key || '').toLowerCase()];
  const button = id && document.getElementById(id);
  if (button && !button.disabled) { event.preventDefault(); button.click(); }
});
</script>"""


class VerdictLog:
    """The human verdicts on disk: one JSON line each, appended and fsync'ed; the first verdict of a key wins."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.records = read_log(path)

    def add(self, key: str, choice: str, shown: list[str]) -> bool:
        """Record a verdict; False when the pair already had one."""
        with self.lock:
            if key in self.records:
                return False
            winner = choice if choice in (TIE, SKIP) else shown[0] if choice == "A" else shown[1]
            record = {"key": key, "choice": choice, "shown": shown, "winner": winner,
                      "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            self.records[key] = record
            return True


def read_log(path: Path) -> dict[str, dict]:
    records: dict[str, dict] = {}
    if not path.exists():
        return records
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash mid-write; its pair is shown again
            records.setdefault(record["key"], record)
    return records


class HumanJudge:
    pointwise = False
    name = "human"

    def __init__(self, log: Path, host: str = "127.0.0.1", port: int | None = None):
        self.log, self.host, self.port = VerdictLog(log), host, port

    def compare(self, items: list[Item]) -> list[Verdict]:
        pending = [item for item in items if item.key not in self.log.records]
        if pending:
            self.serve(pending, len(items))
        return [Verdict(item.key, self.log.records[item.key]["winner"],
                        {"choice": self.log.records[item.key]["choice"], "shown": self.log.records[item.key]["shown"]})
                for item in items]

    def serve(self, pending: list[Item], total: int) -> None:
        """Run the page until every pending pair has a verdict (Ctrl-C stops it; the verdicts stay)."""
        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        finished = threading.Event()
        page = build_page(pending, total, self.log, finished)
        page.queue()
        page.launch(server_name=self.host, server_port=self.port, prevent_thread_lock=True, quiet=True,
                    share=False, inbrowser=False, show_api=False)
        print(f"dpo-launch: label {len(pending)} pairs at {page.local_url} (keys: a, b, t = tie, s = skip); "
              "Ctrl-C stops, the verdicts so far are kept", file=sys.stderr, flush=True)
        try:
            while not finished.wait(0.5):
                pass
            time.sleep(1.0)  # let the page show that it is done
        finally:
            with contextlib.redirect_stdout(sys.stderr):  # gradio prints "Closing server ..."; stdout is ours
                page.close()


def build_page(pending: list[Item], total: int, log: VerdictLog, finished: threading.Event):
    import gradio as gr

    by_key = {item.key: item for item in pending}

    def next_view(_state=None):
        remaining = [item for item in pending if item.key not in log.records]
        labeled = total - len(remaining)
        if not remaining:
            finished.set()
            return (None, f"All {total} pairs are labeled. You can close this page.", "", "", "")
        item = remaining[0]
        shown = ["a", "b"] if random.random() < 0.5 else ["b", "a"]
        prompt = f"**Prompt** ({labeled + 1} of {total}, key `{item.key}`)\n\n" + \
            ("".join(f"> {line}\n" for line in item.question.splitlines()) or "> (empty)")
        return ((item.key, shown), f"{labeled} of {total} labeled", prompt, getattr(item, shown[0]),
                getattr(item, shown[1]))

    def choose(choice: str):
        def handler(state):
            if state is not None and state[0] in by_key:
                log.add(state[0], choice, list(state[1]))
            return next_view()
        return handler

    with gr.Blocks(title="dpo-launch: which response is better?", head=SHORTCUTS, analytics_enabled=False) as page:
        state = gr.State(None)
        progress = gr.Markdown(elem_id="progress")
        prompt = gr.Markdown(elem_id="prompt")
        with gr.Row():
            left = gr.Textbox(label="Response A", elem_id="response-a", interactive=False, lines=8)
            right = gr.Textbox(label="Response B", elem_id="response-b", interactive=False, lines=8)
        with gr.Row():
            buttons = {choice: gr.Button(label, elem_id=CHOICES[choice]) for choice, label in (
                ("A", "A is better [a]"), ("B", "B is better [b]"), ("tie", "Tie [t]"), ("skip", "Skip [s]"))}
        outputs = [state, progress, prompt, left, right]
        page.load(next_view, inputs=None, outputs=outputs)
        for choice, button in buttons.items():
            button.click(choose(choice), inputs=[state], outputs=outputs)
    return page
