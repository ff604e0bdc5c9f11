"""The loop's progress on disk, `<output_dir>/loop.json`: which steps of which round are finished, what each
produced (the round's starting model, its pairs, its metrics), written atomically after every step. A rerun
reads it and goes on at the first unfinished step; it refuses a loop file whose finished rounds now say
something else."""

from __future__ import annotations

import json
import time
from typing import Any

from launcher.atomic import write_text_atomic
from launcher.errors import UserError
from launcher.evaluate.loop_spec import LoopSpec, Round

STATE_FILE = "loop.json"


class LoopState:
    def __init__(self, spec: LoopSpec):
        self.spec = spec
        self.path = spec.output_dir / STATE_FILE
        self.data: dict[str, Any] = self._read() or {"loop": str(spec.file), "eval": spec.fingerprint(),
                                                      "status": "running", "rounds": {}}
        self._check()

    def _read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read the loop's progress {self.path}: {exc}") from None

    def _check(self) -> None:
        """Finished work must still be what the loop file asks for (new rounds may be appended)."""
        if self.data["eval"] != self.spec.fingerprint():
            raise UserError(f"the eval settings of {self.spec.file} changed since the loop in {self.spec.output_dir} "
                            "started (only the gate may change); restore them, or choose a new output_dir")
        by_index = {r.index: r for r in self.spec.rounds}
        for key, record in self.data["rounds"].items():
            current = by_index.get(int(key))
            if current is None or current.fingerprint() != record["fingerprint"]:
                raise UserError(f"round {key} ({record['name']}) of {self.spec.file} changed or was removed since it "
                                f"started in {self.spec.output_dir}; restore it, or choose a new output_dir")

    def round(self, spec: Round) -> dict[str, Any]:
        return self.data["rounds"].setdefault(str(spec.index), {"name": spec.name, "fingerprint": spec.fingerprint(),
                                                                "steps": {}})

    def done(self, spec: Round, step: str) -> bool:
        return step in self.round(spec)["steps"]

    def finish(self, spec: Round, name: str, **produced: Any) -> None:
        record = self.round(spec)
        record["steps"][name] = {"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **produced}
        self.save()

    def set(self, **values: Any) -> None:
        self.data.update(values)
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path, json.dumps(self.data, indent=2, ensure_ascii=False) + "\n")
