"""Shared fixtures: the CLI runners (tests/support/cli.py) and the tiny model and workspaces for real training
runs (tests/support/training.py). Test folders mirror the package: tests/check, tests/plan, tests/run, ..."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import settings

# `make test-fast` runs with --hypothesis-profile=fast: the property tests try a tenth of their examples.
settings.register_profile("fast", max_examples=10)

from support.cli import HEAVY, run_cli  # noqa: E402  (after the profile is registered)
from support.reward_model import tiny_reward_model  # noqa: E402,F401  (the evaluation tests' judge)
from support.training import *  # noqa: E402,F401,F403  (tiny model and workspace fixtures)


@pytest.fixture
def cli():
    return run_cli


# `make test-fast` runs the tests marked neither `slow` nor `subprocess`. So that tier stays fast and in process,
# an unmarked test that starts a process (in its body or in a fixture it sets up) or imports the training stack
# fails, naming the marker to add.
_unmarked: list[str] = []
_real_popen_init = subprocess.Popen.__init__


def _guarded_popen_init(self, args, *rest, **kwargs):
    if _unmarked:
        raise AssertionError(f"{_unmarked[0]} starts a process ({args!r}): mark it @pytest.mark.subprocess, or test "
                             "the behaviour in process (support.cli.run_main)")
    _real_popen_init(self, args, *rest, **kwargs)


def pytest_configure(config):
    subprocess.Popen.__init__ = _guarded_popen_init


_heavy_before: set[str] = set()


def _heavy_loaded() -> set[str]:
    return {name.split(".")[0] for name in sys.modules if name.split(".")[0] in HEAVY}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if not (item.get_closest_marker("subprocess") or item.get_closest_marker("slow")):
        _unmarked[:] = [item.nodeid]
        _heavy_before.clear()
        _heavy_before.update(_heavy_loaded())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    unmarked, _unmarked[:] = list(_unmarked), []
    result = yield  # pytest's own teardown runs in full first
    if unmarked:
        heavy = sorted(_heavy_loaded() - _heavy_before)
        assert not heavy, f"{item.nodeid} imports the training stack in process ({', '.join(heavy)}), in the test " \
                          "or a fixture it sets up: mark it @pytest.mark.slow"
    return result
