"""The --judge flags shared by `pairs` and `eval` (launcher.evaluate.judging: rm, openai, human)."""

from __future__ import annotations

import argparse

from launcher.evaluate.judge_http import HttpSettings
from launcher.evaluate.judges import JudgeOptions
from launcher.evaluate.judging import DEFAULT_KEY_ENV, parse_judge

JUDGE_FLAGS = ("judge", "judge_model", "judge_template", "judge_api_key_env", "judge_concurrency", "judge_timeout",
               "judge_retries", "judge_max_tokens", "judge_prompt", "host", "port")


def add_judge_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    group = parser.add_argument_group("judge")
    group.add_argument("--judge", required=required, metavar="JUDGE",
                       help="rm:PATH (a reward model), openai:BASE_URL (with --judge-model), or human (a web page)")
    group.add_argument("--judge-model", dest="judge_model", metavar="NAME", help="the model an openai judge asks")
    group.add_argument("--judge-template", dest="judge_template", metavar="NAME",
                       help="the reward model's template (default: the judged model's)")
    group.add_argument("--judge-api-key-env", dest="judge_api_key_env", default=DEFAULT_KEY_ENV, metavar="VAR",
                       help=f"environment variable holding the API key (default {DEFAULT_KEY_ENV}); "
                            "never written anywhere")
    group.add_argument("--judge-concurrency", dest="judge_concurrency", type=int, default=4, metavar="N",
                       help="requests in flight at most (default 4)")
    group.add_argument("--judge-timeout", dest="judge_timeout", type=float, default=120.0, metavar="SECONDS")
    group.add_argument("--judge-retries", dest="judge_retries", type=int, default=5, metavar="N",
                       help="retries of a request answered 429/5xx or timed out, with exponential backoff")
    group.add_argument("--judge-max-tokens", dest="judge_max_tokens", type=int, default=16, metavar="N")
    group.add_argument("--judge-prompt", dest="judge_prompt", metavar="FILE",
                       help="replace the default judge prompt; it must contain {question}, {answer_a}, {answer_b}")
    group.add_argument("--host", default="127.0.0.1", help="human judge: the page's address (default 127.0.0.1)")
    group.add_argument("--port", type=int, help="human judge: the page's port (default: the first free from 7860)")


def judge_options(arguments: dict) -> JudgeOptions | None:
    """Pop the judge flags out of `arguments`; None when no --judge was given."""
    values = {name: arguments.pop(name) for name in JUDGE_FLAGS}
    if not values["judge"]:
        return None
    http = HttpSettings(values["judge_concurrency"], values["judge_timeout"], values["judge_retries"],
                        max_tokens=values["judge_max_tokens"], key_env=values["judge_api_key_env"])
    return JudgeOptions(parse_judge(values["judge"], values["judge_model"]), values["judge_template"], http,
                        values["judge_prompt"], values["host"], values["port"])
