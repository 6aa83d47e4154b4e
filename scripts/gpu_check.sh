#!/usr/bin/env bash
# One prepared GPU run (issue 8, section 6), meant to finish in under 8 minutes on an H100/H200:
#   1. .venv (created with --system-site-packages, so a GPU image's own CUDA torch is usable)
#   2. a CUDA build of torch==2.13.0 from the default index (on Linux x86_64 its default wheel is a CUDA
#      build), unless a 2.13.0 that sees the GPU is already there; when the install fails (no network,
#      no such wheel) the torch already present is used, and the log and summary say which
#   3. the other dependencies (only those that do not import)
#   4. gancore._C built with its CUDA kernels (TORCH_CUDA_ARCH_LIST=9.0: one architecture, half the time)
#   5. pytest tests/gpu
#   6. gancore bench --quick --device cuda (CUDA events, torch.cuda.max_memory_allocated)
#   7. the gpu-marked tests elsewhere (FID on the GPU, the trainer's fp16 with GradScaler)
#   8. a short summary: $OUT/summary.txt when $OUT is set, else bench-results/gpu_summary.txt;
#      all logs and bench results under bench-results/gpu-check (also as $OUT/gpu_check.tar.gz)
# Every step runs under `timeout`, and no step may run past the overall budget (GPU_CHECK_BUDGET
# seconds, default 450), so one hang cannot eat the machine's time. A failed step is recorded and
# the later steps still run where they can.
# GPU_CHECK_DRY_RUN=1 prints the plan (steps, limits, commands) and runs nothing.
# GPU_CHECK_STEPS="build bench" runs only the steps named (default: all); GPU_CHECK_PYTHON replaces
# .venv/bin/python; GPU_CHECK_WORK replaces bench-results/gpu-check.
set -uo pipefail
cd "$(dirname "$0")/.."

BUDGET=${GPU_CHECK_BUDGET:-450}
DRY=${GPU_CHECK_DRY_RUN:-0}
WORK=${GPU_CHECK_WORK:-bench-results/gpu-check}
ONLY=${GPU_CHECK_STEPS:-}
SUMMARY=${OUT:+$OUT/summary.txt}
SUMMARY=${SUMMARY:-bench-results/gpu_summary.txt}
PY=${GPU_CHECK_PYTHON:-.venv/bin/python}
START=$(date +%s)
STEPS=()
FAILED=0

export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export MAX_JOBS=${MAX_JOBS:-$(nproc 2>/dev/null || echo 4)}
export TRITON_INTERPRET=0  # tests/conftest.py defaults it to 1 for CPU machines; here Triton compiles for the GPU
export PYTHONUNBUFFERED=1
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_RETRIES=0 PIP_DEFAULT_TIMEOUT=15  # an offline machine fails fast
CUDA_TORCH='import sys, torch; sys.exit(0 if torch.__version__.startswith("2.13.0") and torch.cuda.is_available() else 1)'
SHOW_TORCH='import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda); assert torch.cuda.is_available(), "this torch cannot use the GPU"'

if [ "$DRY" != 1 ]; then
  mkdir -p "$WORK" "$(dirname "$SUMMARY")"
fi

# step NAME LIMIT_SECONDS COMMAND...: runs COMMAND under timeout, output to $WORK/NAME.log.
step() {
  local name=$1 limit=$2
  shift 2
  if [ -n "$ONLY" ] && [[ " $ONLY " != *" $name "* ]]; then
    return 0
  fi
  local left=$((BUDGET - ($(date +%s) - START)))
  [ "$limit" -gt "$left" ] && limit=$left
  if [ "$DRY" = 1 ]; then
    printf '%-12s limit %4ss  %s\n' "$name" "$limit" "$*"
    return 0
  fi
  if [ "$limit" -lt 10 ]; then
    STEPS+=("$name: SKIPPED (overall budget of ${BUDGET}s spent)")
    FAILED=1
    return 1
  fi
  echo "== $name (limit ${limit}s): $*" >&2
  local t0 status=0
  t0=$(date +%s)
  timeout --kill-after=15 "$limit" "$@" >"$WORK/$name.log" 2>&1 || status=$?
  local took=$(($(date +%s) - t0)) result
  case $status in
    0) result="ok" ;;
    124|137) result="TIMED OUT after ${limit}s" ;;
    *) result="FAILED (exit $status)" ;;
  esac
  STEPS+=("$name: $result in ${took}s")
  echo "   $result in ${took}s (log: $WORK/$name.log)" >&2
  if [ "$status" != 0 ]; then
    FAILED=1
    tail -n 15 "$WORK/$name.log" >&2
  fi
  return "$status"
}

# The limits of every step; the dry run prints them (the step function takes the limit as $2 there).
plan() {
  step venv 60 bash -c '[ -x .venv/bin/python ] || python3 -m venv --system-site-packages .venv'
  step torch 150 bash -c "$PY -c '$CUDA_TORCH' 2>/dev/null || $PY -m pip install -q torch==2.13.0 \
    || echo 'gpu_check: could not install torch==2.13.0 from the index; using the torch already present'; \
    $PY -c '$SHOW_TORCH'"
  step deps 90 bash -c "$PY -c 'import numpy, tqdm, PIL, yaml, matplotlib, scipy, pytest, triton, ninja' 2>/dev/null \
    || $PY -m pip install -q numpy tqdm pillow pyyaml matplotlib scipy pytest triton ninja setuptools wheel"
  step build 180 bash -c "{ $PY -m pip install -q --no-build-isolation --no-deps -e . \
      || $PY setup.py build_ext --inplace; } && $PY -c 'from gancore import _ext; assert _ext.cuda_built(), \"gancore._C was built without CUDA\"'"
  step tests_gpu 90 "$PY" -m pytest -q -p no:cacheprovider tests/gpu
  step bench 180 "$PY" -m gancore bench --quick --device cuda --out "$WORK/bench"
  step tests_marked 60 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests --ignore=tests/gpu
}

if [ "$DRY" = 1 ]; then
  echo "gpu_check plan (dry run; overall budget ${BUDGET}s; summary -> $SUMMARY; logs -> $WORK):"
  echo "env: TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST MAX_JOBS=$MAX_JOBS TRITON_INTERPRET=$TRITON_INTERPRET"
  plan
  exit 0
fi

plan

{
  echo "gancore gpu_check $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'
  $PY -c 'import torch; print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, sees GPU: {torch.cuda.is_available()}")' \
    2>/dev/null || echo "torch: not importable"
  $PY -c 'from gancore import _ext; print(f"gancore._C with CUDA: {_ext.cuda_built()}")' 2>/dev/null \
    || echo "gancore._C: not importable"
  echo "total $(($(date +%s) - START))s of a ${BUDGET}s budget"
  printf '%s\n' "${STEPS[@]}"
  for t in tests_gpu tests_marked; do
    [ -f "$WORK/$t.log" ] && echo "$t: $(grep -E '(passed|failed|error|skipped|no tests ran)' "$WORK/$t.log" | tail -n 1)"
  done
  if [ -f "$WORK/bench.log" ]; then
    echo
    grep -E "^(targets met|  missed|FAILED|!!)" "$WORK/bench.log" || true
    echo
    sed -n '/^suite  /,/^$/p' "$WORK/bench.log" | grep -E "^suite|gancore" | cut -c1-200
  fi
} >"$SUMMARY"
cat "$SUMMARY"
if [ -n "${OUT:-}" ]; then
  tar -czf "$OUT/gpu_check.tar.gz" "$WORK" 2>/dev/null || true
fi
exit "$FAILED"
