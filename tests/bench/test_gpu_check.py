"""scripts/gpu_check.sh on a machine without a GPU: its syntax, its plan, and a failing step's summary."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.sh"
STEPS = ["venv", "torch", "deps", "build", "tests_gpu", "bench", "tests_marked"]


def _run(env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env})


def test_the_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_dry_run_prints_the_plan_within_eight_minutes(tmp_path):
    done = _run({"GPU_CHECK_DRY_RUN": "1", "OUT": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert f"summary -> {tmp_path}/summary.txt" in lines[0]
    assert "TORCH_CUDA_ARCH_LIST=9.0" in lines[1] and "TRITON_INTERPRET=0" in lines[1]
    plan = [re.match(r"(\S+)\s+limit\s+(\d+)s\s+(.*)", line) for line in lines[2:]]
    assert [m.group(1) for m in plan] == STEPS
    budget = int(re.search(r"overall budget (\d+)s", lines[0]).group(1))
    assert budget <= 480  # the 8 minutes; each step's limit is also capped by what is left of it
    commands = {m.group(1): m.group(3) for m in plan}
    assert "torch==2.13.0" in commands["torch"]
    assert "--no-build-isolation --no-deps -e ." in commands["build"] and "cuda_built()" in commands["build"]
    assert commands["tests_gpu"].endswith("pytest -q -p no:cacheprovider tests/gpu")
    assert "gancore bench --quick --device cuda" in commands["bench"]
    assert list(tmp_path.iterdir()) == []  # a dry run writes nothing


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs GNU timeout")
def test_a_failing_step_is_recorded_and_summarised(tmp_path):
    # the bench step with this (CPU-only) Python: it must fail with the CLI's clear error, and be summarised
    env = {"OUT": str(tmp_path), "GPU_CHECK_WORK": str(tmp_path / "work"), "GPU_CHECK_STEPS": "bench",
           "GPU_CHECK_PYTHON": sys.executable, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = _run(env)
    summary = (tmp_path / "summary.txt").read_text()
    if "sees GPU: True" in summary:
        pytest.skip("a CUDA device is present")
    assert done.returncode == 1
    assert re.search(r"^bench: FAILED \(exit 2\) in \d+s$", summary, re.M)
    assert "CUDA is not available" in (tmp_path / "work" / "bench.log").read_text()
    assert (tmp_path / "gpu_check.tar.gz").stat().st_size > 0
    assert "venv:" not in summary  # steps not selected do not run


def test_no_step_runs_past_the_overall_budget(tmp_path):
    env = {"OUT": str(tmp_path), "GPU_CHECK_WORK": str(tmp_path / "work"), "GPU_CHECK_STEPS": "build tests_gpu",
           "GPU_CHECK_PYTHON": "/bin/false", "GPU_CHECK_BUDGET": "5"}
    done = _run(env, timeout=30)
    summary = (tmp_path / "summary.txt").read_text()
    assert done.returncode == 1 and "torch: not importable" in summary
    assert "build: SKIPPED (overall budget of 5s spent)" in summary
    assert "tests_gpu: SKIPPED (overall budget of 5s spent)" in summary
