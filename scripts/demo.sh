#!/usr/bin/env bash
# The README's demo: build a tiny model locally, then validate, plan and train DPO on the bundled data (CPU),
# write the report, and say where the TensorBoard logs are and how reward accuracy moved.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
PY=.venv/bin/python
CONFIG=config/demo_dpo.yaml
RUN_DIR=.demo/runs/demo_dpo

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Building the tiny model (random init, local tokenizer, no model hub) in .demo/tiny-llama"
"$PY" scripts/tiny_model.py .demo/tiny-llama

step "dpo-launch validate $CONFIG"
"$PY" -m launcher validate "$CONFIG"

step "dpo-launch plan $CONFIG"
"$PY" -m launcher plan "$CONFIG"

step "dpo-launch train $CONFIG --overwrite"
# --overwrite: the demo always starts over; a real run refuses to touch a previous run without it.
"$PY" -m launcher train "$CONFIG" --overwrite --no-monitor

step "dpo-launch report $RUN_DIR"
"$PY" -m launcher report "$RUN_DIR"

step "Result"
"$PY" scripts/demo_summary.py "$RUN_DIR"
