"""The benchmark machinery: a suite's rows, the report files, the CLI, the allocator switch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gancore.bench import report, worker
from gancore.bench.suites import instance_norm
from gancore.cli import build_parser


@pytest.fixture
def tiny_shapes(monkeypatch):
    monkeypatch.setattr(instance_norm, "SHAPES", {"tiny": (2, 4, 8, 8)})
    monkeypatch.setattr(instance_norm, "QUICK_SHAPES", ("tiny",))


def test_worker_runs_the_instance_norm_suite(tiny_shapes, tmp_path):
    out = tmp_path / "rows.json"
    worker.main(["--suite", "instance_norm", "--quick", "--repeats", "2", "--json", str(out)])
    rows = json.loads(out.read_text())
    contenders = {r["contender"] for r in rows}
    assert contenders == {"floor: copy_", "floor: clone", "eager", "gancore", "torch.compile"}
    assert len(rows) == instance_norm.count(worker.BenchContext(device="cpu", quick=True))
    assert all(r["ms"] > 0 and r["alloc"] == "default" and r["baseline"] == "eager" for r in rows)
    gancore_rows = [r for r in rows if r["contender"] == "gancore"]
    assert all(r["note"] == "backend cpu" for r in gancore_rows)
    assert {r["case"].rsplit(" ", 1)[1] for r in gancore_rows} == {"fwd", "fwd+bwd"}


def test_report_files(tmp_path):
    rows = [
        {"suite": "s", "case": "c", "contender": "eager", "alloc": "default", "baseline": "eager", "ms": 4.0,
         "bytes": 4e6},
        {"suite": "s", "case": "c", "contender": "gancore", "alloc": "default", "baseline": "eager", "ms": 1.0,
         "bytes": 4e6, "note": "backend cpu"},
        {"suite": "s", "case": "c", "contender": "gancore", "alloc": "tuned", "baseline": "eager", "ms": 0.5,
         "bytes": 4e6},
    ]
    report.add_speedups(rows)
    assert rows[1]["speedup"] == 4.0 and rows[1]["gbps"] == pytest.approx(4.0)
    assert rows[2]["speedup"] is None  # no eager row under the tuned allocator: no ratio invented
    paths = report.write_all(rows, report.machine_info("cpu"), str(tmp_path))
    assert json.loads(open(paths["json"]).read())["rows"][1]["speedup"] == 4.0
    markdown = open(paths["markdown"]).read()
    assert "| s | c | gancore | 1.000 | 4.00x | 4.0 | 0.500 |" in markdown
    console = report.format_console(rows)
    assert "4.00x" in console and "backend cpu" in console


def test_cli_parses_bench_options():
    args = build_parser().parse_args(["bench", "--suite", "instance_norm", "--quick", "--tuned-alloc"])
    assert args.suite == ["instance_norm"] and args.quick and args.alloc == "tuned"
    assert build_parser().parse_args(["bench"]).alloc == "both"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_tune_cpu_allocator_takes_effect_in_a_fresh_process():
    code = ("import gancore; from gancore.utils.allocator import cpu_allocator_tuned;"
            "assert not cpu_allocator_tuned(); assert gancore.tune_cpu_allocator(); assert cpu_allocator_tuned()")
    subprocess.run([sys.executable, "-c", code], check=True)
