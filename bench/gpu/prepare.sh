#!/usr/bin/env bash
# Downloads into .whl/ (ignored) the wheels the GPU box lacks for the pinned stack, checks them, and prints their
# sizes and the total: bash bench/gpu/prepare.sh [--dest DIR] [--write-lock]. Needs PyPI; the logic is in
# bench/gpu/prepare.py. PYTHON picks the interpreter (default: the project's .venv, else python3); it needs pip
# and packaging, and its own version does not matter: the wheels are chosen for CPython 3.12.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  if [ -x "$repo/.venv/bin/python" ]; then py="$repo/.venv/bin/python"; else py=python3; fi
fi
exec "$py" "$repo/bench/gpu/prepare.py" "$@"
