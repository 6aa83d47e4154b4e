#!/usr/bin/env bash
# The test suite: sets up .venv if needed, lints, then runs pytest. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest -q "$@" tests
