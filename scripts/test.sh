#!/usr/bin/env bash
# The test suite: sets up .venv if needed, lints, then runs pytest in parallel (pytest-xdist; set
# GANCORE_TEST_WORKERS=0 for one process). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/ruff check .
# One worker per core; a module's tests stay on one worker, so its module-scoped fixtures run once.
.venv/bin/python -m pytest -q -n "${GANCORE_TEST_WORKERS:-auto}" --dist loadscope "$@" tests
