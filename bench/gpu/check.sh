#!/usr/bin/env bash
# The GPU check in one command; bench/gpu/check.py says what it runs and what the table means.
#   bash bench/gpu/check.sh [--out DIR] [--steps N] [--budget-s S]     on the GPU box, no network needed
#   bash bench/gpu/check.sh --cpu-smoke [--out DIR]                      the same flow on CPU, tiny model
# On the box it first installs the wheels that bench/gpu/prepare.sh put in .whl/ (WHEELS=DIR for another folder)
# into a temporary folder that goes ahead of the box's own packages for this check only, and removes it at the
# end. --cpu-smoke installs nothing and uses this Python's packages. PYTHON picks the interpreter (python3).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
py="${PYTHON:-python3}"
wheels="${WHEELS:-$repo/.whl}"
check=("$py" "$repo/bench/gpu/check.py")
smoke=0
for arg in "$@"; do
  case "$arg" in
    --cpu-smoke) smoke=1 ;;
    -h | --help) exec "${check[@]}" --help ;;
  esac
done
if [ "$smoke" = 1 ]; then
  exec "${check[@]}" "$@"
fi
# Arguments and the wheel folder first: a mistake costs no install.
"${check[@]}" --validate-only --wheels "$wheels" "$@"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/dpo-launch-gpu-check.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
site="$tmp/site"
install_log="$tmp/install.log"
count=("$wheels"/*.whl)
echo "installing ${#count[@]} wheels from $wheels into $site"
if ! "$py" -m pip install --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check --upgrade \
    --target "$site" "$wheels"/*.whl >"$install_log" 2>&1; then
  cat "$install_log" >&2
  echo "check: error: pip could not install the wheels of $wheels (its output is above)" >&2
  exit 1
fi
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$site/bin:$PATH"
status=0
"${check[@]}" --site "$site" --install-log "$install_log" "$@" || status=$?
exit "$status"
