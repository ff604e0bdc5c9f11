# The two set-up commands of the README: `make demo` and `make test`. Both create .venv on first use.
# `make test-fast` is the tier to run while working: the in-process tests, under a minute on 2 cores.
VENV ?= .venv
PY := $(VENV)/bin/python
export OMP_NUM_THREADS ?= 1

.PHONY: setup browser demo demo-loop test test-fast lint clean

setup:
	bash scripts/setup_env.sh

# chromium + chromedriver for the human-judge page test (apt; see the script)
browser:
	bash scripts/setup_browser.sh

demo: setup
	bash scripts/demo.sh

# one round of online DPO with a reward-model judge (generate, judge, pairs, train, eval, gate), under 3 minutes
demo-loop: setup
	bash scripts/demo_loop.sh

test: setup browser
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not subprocess" --hypothesis-profile=fast

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .demo
