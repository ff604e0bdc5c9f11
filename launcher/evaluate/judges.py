"""Build the judge `--judge` names, with its options (launcher.evaluate.judging describes the interface)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from launcher.evaluate.judge_http import HttpSettings, OpenAIJudge
from launcher.evaluate.judge_human import HumanJudge
from launcher.evaluate.judge_rm import RewardModelJudge
from launcher.evaluate.judging import DEFAULT_KEY_ENV, Judge, JudgeSpec, parse_judge


@dataclass
class JudgeOptions:
    spec: JudgeSpec
    template: str | None = None  # the reward model's template (default: the judged model's)
    http: HttpSettings = field(default_factory=HttpSettings)
    prompt_file: str | None = None
    host: str = "127.0.0.1"
    port: int | None = None


def make_judge(options: JudgeOptions, folder: Path, human_log: Path, template: str | None = None) -> Judge:
    """The judge; its worker files go under `folder`, a person's verdicts to `human_log`."""
    spec = options.spec
    if spec.kind == "rm":
        return RewardModelJudge(str(spec.target), options.template or template, folder / "rm")
    if spec.kind == "openai":
        return OpenAIJudge(str(spec.target), str(spec.model), options.http, options.prompt_file)
    return HumanJudge(human_log, options.host, options.port)


def options_from(values: dict) -> JudgeOptions:
    """JudgeOptions from judge_* keys (a loop file's); UsageError for a judge that cannot be read."""
    http = HttpSettings(concurrency=int(values.get("judge_concurrency", 4)),
                        key_env=str(values.get("judge_api_key_env", DEFAULT_KEY_ENV)))
    return JudgeOptions(parse_judge(str(values["judge"]), values.get("judge_model")), values.get("judge_template"),
                        http, values.get("judge_prompt"), port=values.get("port"))
