#!/usr/bin/env bash
# Creates .venv with the full stack (CPU torch, llamafactory, deepspeed, tensorboard) and proves it imports.
# Idempotent: a venv whose stamp matches pyproject.toml is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
stamp="$VENV/.dpo-launch-stamp"
want=$(sha256sum pyproject.toml scripts/setup_env.sh | sha256sum | cut -c1-16)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -d "$VENV" ] || "$PY" -m venv "$VENV"
pip="$VENV/bin/python -m pip"
$pip install -q --upgrade pip
# torch first, pinned: the CPU wheel lies on local disk; an unpinned torch pulls a multi-GB CUDA build.
$pip install -q "torch==2.13.0"
$pip install -q -e ".[train,test]" "torch==2.13.0"
# PyPI's torchvision/torchaudio are CUDA builds that break CPU torch at import
# ("operator torchvision::nms does not exist"); llamafactory pulls them in. Remove torchvision and
# disable torchaudio's native libs so transformers and llamafactory import cleanly.
$pip uninstall -y -q torchvision || true
ta_lib=$("$VENV/bin/python" - <<'PY'
import importlib.util, os
spec = importlib.util.find_spec("torchaudio")
print(os.path.join(os.path.dirname(spec.origin), "lib") if spec else "")
PY
)
if [ -n "$ta_lib" ] && ls "$ta_lib"/*.so >/dev/null 2>&1; then
  mkdir -p "$ta_lib/disabled-cuda-libs"
  mv "$ta_lib"/*.so "$ta_lib/disabled-cuda-libs/"
fi
# Prove the stack imports before anyone relies on it.
OMP_NUM_THREADS=1 "$VENV/bin/python" -c "import torch, transformers, trl, deepspeed, tensorboard; from llamafactory.train.tuner import run_exp; print('stack ok: torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'deepspeed', deepspeed.__version__)"
echo "$want" > "$stamp"
