#!/usr/bin/env bash
# The README's loop demo: one round of online DPO (generate -> reward-model judge -> pairs -> train -> eval ->
# gate) on the tiny model, on CPU, in under 3 minutes. It starts over every time (.demo/loop is removed).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
PY=.venv/bin/python

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Building the tiny model in .demo/tiny-llama"
"$PY" scripts/tiny_model.py .demo/tiny-llama

if [ ! -f .demo/tiny-rm/value_head.safetensors ]; then
  step "Training the judge: a reward model (llamafactory-cli train config/loop/demo_rm.yaml)"
  "$PY" -m llamafactory.cli train config/loop/demo_rm.yaml >.demo/tiny-rm.log 2>&1 || { tail -20 .demo/tiny-rm.log; exit 1; }
fi

step "dpo-launch loop config/loop/demo_loop.yaml"
rm -rf .demo/loop
"$PY" -m launcher loop config/loop/demo_loop.yaml

step "Result"
echo "table: .demo/loop/loop.md   plot: .demo/loop/loop.png   round: .demo/loop/round-1/ (config.yaml, run/, data/pairs.jsonl)"
