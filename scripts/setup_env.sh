#!/usr/bin/env bash
# Creates .venv in the checkout (once), installs the pinned CPU torch, triton and the
# package in editable mode, and builds the C++ extension. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# pip, quiet, without the local index's harmless "is ignored" notes; failures still fail.
pip() {
  local log status=0
  log=$(mktemp)
  .venv/bin/python -m pip --disable-pip-version-check -q "$@" >"$log" 2>&1 || status=$?
  grep -v "is ignored: it is neither" "$log" >&2 || true
  rm -f "$log"
  return "$status"
}
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  pip install torch==2.13.0
fi
.venv/bin/python -c "import torch" >/dev/null 2>&1 || { echo "torch failed to install" >&2; exit 1; }
# Reinstalled when this list or the package metadata changes (the stamp holds the list it installed).
deps="triton numpy tqdm pillow pyyaml matplotlib scipy pytest pytest-benchmark pytest-xdist ruff setuptools wheel"
stamp=.venv/.gancore-deps
if [ "$(cat "$stamp" 2>/dev/null)" != "$deps" ] || [ setup.py -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  # shellcheck disable=SC2086  # the list is meant to split into words
  pip install $deps
  echo "$deps" > "$stamp"
fi
# Editable install builds gancore._C against the torch in .venv (hence no build isolation).
# Rebuilt only when the C++/CUDA sources or setup.py change (or the module does not import).
build_hash=$(cat setup.py $(find csrc -type f | sort) | sha256sum | cut -d' ' -f1)
if [ "$(cat .venv/.gancore-build 2>/dev/null)" != "$build_hash" ] || ! .venv/bin/python -c "import gancore._C" 2>/dev/null; then
  echo "building gancore._C (a minute or two on 2 cores)..." >&2
  pip install --no-build-isolation --no-deps -e .
  .venv/bin/python -c "import gancore._C" || { echo "gancore._C failed to build" >&2; exit 1; }
  echo "$build_hash" > .venv/.gancore-build
fi
