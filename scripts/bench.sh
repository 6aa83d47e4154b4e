#!/usr/bin/env bash
# The main job: sets up .venv if needed and runs the benchmark suite on built-in shapes.
# Extra args go to `gancore bench` (e.g. --quick, --suite instance_norm, --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/python -m gancore bench "$@"
