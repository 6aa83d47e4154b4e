"""The benchmark machinery: a suite's rows, the report files, the CLI, the allocator switch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gancore.bench import cli, report, worker
from gancore.bench.compiled import CompileFallback, StrictCompile
from gancore.bench.suites import batch_norm, gradient_penalty, instance_norm, patchgan
from gancore.bench.timing import BenchContext, interleaved
from gancore.cli import build_parser

_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tiny_shapes(monkeypatch):
    monkeypatch.setattr(instance_norm, "SHAPES", {"tiny": (2, 4, 8, 8)})
    monkeypatch.setattr(instance_norm, "QUICK_SHAPES", ("tiny",))
    monkeypatch.setattr(instance_norm, "NETWORK_SHAPES", {"small net": (1, 4, 8, 8)})


def test_worker_runs_the_instance_norm_suite(tiny_shapes, tmp_path):
    out, log = tmp_path / "rows.json", tmp_path / "bench.log"
    code = subprocess.run([sys.executable, "-c", "import sys; from tests.bench.test_bench import _run_tiny_worker;"
                           f"sys.exit(_run_tiny_worker({str(out)!r}, {str(log)!r}))"], capture_output=True, text=True,
                          cwd=_ROOT)
    assert code.returncode == 0, code.stderr
    assert "profiler_start" not in code.stderr and "profiler_start" not in code.stdout
    result = json.loads(out.read_text())
    assert result["error"] is None
    rows = result["rows"]
    contenders = {r["contender"] for r in rows}
    assert contenders == {"floor: copy_", "floor: clone", "floor: clone + add", "eager", "gancore", "torch.compile"}
    assert len(rows) == instance_norm.count(BenchContext(device=torch.device("cpu"), quick=True))
    assert all(r["ms"] > 0 and r["alloc"] == "default" and r["baseline"] == "eager" for r in rows)
    gancore_rows = [r for r in rows if r["contender"] == "gancore"]
    assert all(r["note"].startswith("backend cpu") for r in gancore_rows)
    assert {r["case"].rsplit(" ", 1)[1] for r in gancore_rows} == {"fwd", "fwd+bwd"}
    # the overhead case: tiny forward and forward+backward, and the network shapes' forward+backward
    targeted = {r["case"]: r for r in rows if "target" in r}
    assert set(targeted) == {"overhead tiny (1, 8, 4, 4) fwd", "overhead tiny (1, 8, 4, 4) fwd+bwd",
                             "overhead small net (1, 4, 8, 8) fwd+bwd"}
    eager_rounds = {r["case"]: r["round_ms"] for r in rows if r["contender"] == "eager" and r["case"] in targeted}
    for case, r in targeted.items():
        assert r["contender"] == "gancore"
        assert r["ratio"] == pytest.approx(_median_ratio(r["round_ms"], eager_rounds[case]))
        limit = 1.25 if "tiny" in case else 1.0
        assert r["target"] == f"time / eager <= {limit:g}" and r["passed"] == (r["ratio"] <= limit)


def _median_ratio(gancore_rounds: list[float], eager_rounds: list[float]) -> float:
    ratios = sorted(g / e for g, e in zip(gancore_rounds, eager_rounds))
    mid = len(ratios) // 2
    return ratios[mid] if len(ratios) % 2 else (ratios[mid - 1] + ratios[mid]) / 2


def _run_tiny_worker(out: str, log: str) -> int:
    """The worker with the tiny shapes, in a process of its own (it redirects that process's output)."""
    instance_norm.SHAPES = {"tiny": (2, 4, 8, 8)}
    instance_norm.QUICK_SHAPES = ("tiny",)
    instance_norm.NETWORK_SHAPES = {"small net": (1, 4, 8, 8)}
    return worker.main(["--suite", "instance_norm", "--quick", "--repeats", "2", "--json", out, "--log", log])


def test_strict_compile_counts_graph_runs_and_detects_eager_fallback():
    # the graph itself as the compiled code: the counting, not inductor, is under test (and it is fast)
    compiled = StrictCompile(lambda x: torch.relu(x) * 2, "relu", compiler=lambda gm, inputs: gm.forward)
    x = torch.randn(8)
    assert torch.equal(compiled(x), torch.relu(x) * 2)
    compiled.check()
    assert compiled.graph_runs == compiled.calls == 1
    with torch.compiler.set_stance("force_eager"):  # what dynamo does after its recompile limit: eager code
        compiled(x)
    with pytest.raises(CompileFallback, match="1 of 2 calls"):
        compiled.check()


def test_interleaved_times_each_contender_per_call():
    timings = interleaved({"a": lambda: sum(range(50)), "b": lambda: sum(range(5000))}, rounds=3, warmup=1,
                          min_sample_ms=0.5)
    assert set(timings) == {"a", "b"}
    assert timings["a"]["calls_per_sample"] == timings["b"]["calls_per_sample"] >= 1
    assert timings["b"]["ms"] > timings["a"]["ms"] > 0
    assert len(timings["a"]["round_ms"]) == 3 and sorted(timings["a"]["round_ms"])[1] == timings["a"]["ms"]


def test_overhead_cases_of_the_penalty_patchgan_and_batch_norm_suites():
    ctx = BenchContext(torch.device("cpu"), quick=True, repeats=2, warmup=1)
    for suite, kinds in ((gradient_penalty, 3), (patchgan, 2), (batch_norm, 2)):
        rows = list(suite.overhead(ctx))
        assert [r["contender"] for r in rows] == ["eager", "gancore"] * kinds
        for eager, fused in zip(rows[::2], rows[1::2]):
            assert eager["case"] == fused["case"] and fused["target"] == "time / eager <= 1.25"
            assert fused["ratio"] == pytest.approx(_median_ratio(fused["round_ms"], eager["round_ms"]))
            assert ":cpu" in fused["note"] or "backend cpu" in fused["note"]


def test_eager_one_forward_step_gives_the_eager_step_gradients():
    # one forward over real, fake and interpolates is exact for an instance-normalised critic
    model, real, fake = gradient_penalty._setup("eager", "nchw", (1, 3, 32, 32), "cpu")
    model = model.double()
    real, fake = real.double(), fake.double()
    grads = []
    for step in (gradient_penalty.eager_step, gradient_penalty.eager_one_forward_step):
        step(model, real, fake, True, torch.Generator().manual_seed(2))
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert (grads[0] - grads[1]).norm() / grads[0].norm() < 1e-10


def _rows() -> list[dict]:
    rows = [
        {"suite": "s", "case": "c", "contender": "eager", "alloc": "default", "baseline": "eager", "ms": 4.0,
         "bytes": 4e6},
        {"suite": "s", "case": "c", "contender": "gancore", "alloc": "default", "baseline": "eager", "ms": 1.0,
         "bytes": 4e6, "note": "backend cpu"},
        {"suite": "s", "case": "c", "contender": "gancore", "alloc": "tuned", "baseline": "eager", "ms": 0.5,
         "bytes": 4e6},
        {"suite": "s", "case": "c", "contender": "floor: copy_", "alloc": "default", "baseline": "eager",
         "ms": 0.4, "bytes": 4e6},
        {"suite": "t", "case": "overhead", "contender": "eager", "alloc": "default", "baseline": "eager", "ms": 2.0},
        {"suite": "t", "case": "overhead", "contender": "gancore", "alloc": "default", "baseline": "eager",
         "ms": 3.0, **report.time_target(1.5, 1.25)},
    ]
    report.add_speedups(rows)
    return rows


def test_report_files(tmp_path):
    rows = _rows()
    assert rows[1]["speedup"] == 4.0 and rows[1]["gbps"] == pytest.approx(4.0)
    assert rows[2]["speedup"] is None  # no eager row under the tuned allocator: no ratio invented
    assert rows[5]["ratio"] == 1.5 and rows[5]["passed"] is False
    paths = report.write_all(rows, report.machine_info("cpu"), str(tmp_path), {"u": "RuntimeError: boom"})
    saved = json.loads(open(paths["json"]).read())
    assert saved["rows"][1]["speedup"] == 4.0 and saved["failures"] == {"u": "RuntimeError: boom"}
    markdown = open(paths["markdown"]).read()
    assert "| s | c | gancore | 1.000 | 4.00x | 4.0 | 0.500 |" in markdown
    assert "1.50 (<= 1.25) FAIL" in markdown and "FAILED suite u: RuntimeError: boom" in markdown
    assert "targets met: 0 of 1" in markdown
    console = report.format_console(rows)
    assert "4.00x" in console and "backend cpu" in console


def test_one_plot_per_suite_and_a_roofline(tmp_path):
    from PIL import Image

    (tmp_path / "speedups.png").write_bytes(b"stale")
    paths = report.write_all(_rows(), report.machine_info("cpu"), str(tmp_path))
    assert {"s", "t", "roofline"} <= set(paths) and not (tmp_path / "speedups.png").exists()
    for key in ("s", "t", "roofline"):
        width, height = Image.open(paths[key]).size
        assert 300 < width < 2500 and 200 < height < 2500


def test_a_failed_suite_does_not_lose_the_others(monkeypatch, tmp_path, capsys):
    def fake_worker(suite, alloc, device, quick, repeats, log):
        row = {"suite": suite, "case": "c", "contender": "eager", "alloc": alloc, "baseline": "eager", "ms": 1.0}
        return [row], ("RuntimeError: broken" if suite == "patchgan" else None)

    monkeypatch.setattr(cli, "_run_worker", fake_worker)
    args = build_parser().parse_args(["bench", "--suite", "patchgan", "--suite", "fid", "--device", "cpu",
                                      "--out", str(tmp_path)])
    assert cli.run(args) == 1
    saved = json.loads((tmp_path / "results.json").read_text())
    assert {r["suite"] for r in saved["rows"]} == {"patchgan", "fid"}
    assert saved["failures"] == {"patchgan": "RuntimeError: broken"}
    assert "FAILED suites: patchgan: RuntimeError: broken" in capsys.readouterr().err


_NOISY_BROKEN_SUITE = """
import os, warnings
import torch
BASELINE = "eager"
ALLOC_SENSITIVE = False
def run(ctx):
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]):
        torch.ones(2) + 1
    os.write(1, b"noise on fd 1\\n")
    warnings.warn("a dynamo-style warning")
    yield {"case": "c", "contender": "eager", "ms": 1.0}
    raise RuntimeError("boom")
"""


def test_worker_writes_the_rows_before_a_failure_and_keeps_noise_in_the_log(tmp_path):
    (tmp_path / "broken_suite.py").write_text(_NOISY_BROKEN_SUITE)
    out, log = tmp_path / "rows.json", tmp_path / "bench.log"
    code = ("import sys; from gancore.bench import worker; from gancore.bench.suites import SUITES;"
            "SUITES['broken'] = 'broken_suite';"
            f"sys.exit(worker.main(['--suite', 'broken', '--json', {str(out)!r}, '--log', {str(log)!r}]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=_ROOT)
    assert done.returncode == 1
    result = json.loads(out.read_text())
    assert result["error"] == "RuntimeError: boom" and [r["case"] for r in result["rows"]] == ["c"]
    logged = log.read_text()
    assert "noise on fd 1" in logged and "a dynamo-style warning" in logged and "RuntimeError: boom" in logged
    for noise in ("noise on fd 1", "dynamo-style", "profiler_st", "Traceback"):
        assert noise not in done.stdout + done.stderr


_SLOW_SUITE = """
import time
BASELINE = "eager"
ALLOC_SENSITIVE = False
def run(ctx):
    yield {"case": "first", "contender": "eager", "ms": 1.0}
    time.sleep(120)
    yield {"case": "never", "contender": "eager", "ms": 1.0}
"""


def test_a_worker_stopped_part_way_keeps_the_rows_it_finished(tmp_path):
    (tmp_path / "slow_suite.py").write_text(_SLOW_SUITE)
    out = tmp_path / "rows.json"
    code = ("import sys; from gancore.bench import worker; from gancore.bench.suites import SUITES;"
            "SUITES['slow'] = 'slow_suite';"
            f"sys.exit(worker.main(['--suite', 'slow', '--json', {str(out)!r}]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=_ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    rows, error, complete = cli._read_rows(str(out))
    assert [r["case"] for r in rows] == ["first"] and error is None and not complete


def test_ctrl_c_keeps_the_finished_suites_and_the_interrupted_ones_rows(monkeypatch, tmp_path, capsys):
    def fake_worker(suite, alloc, device, quick, repeats, log):
        row = {"suite": suite, "case": "c", "contender": "eager", "alloc": alloc, "baseline": "eager", "ms": 1.0}
        if suite == "fid":
            raise cli.WorkerInterrupted([row])
        return [row], None

    monkeypatch.setattr(cli, "_run_worker", fake_worker)
    args = build_parser().parse_args(["bench", "--suite", "patchgan", "--suite", "fid", "--suite", "seqgan",
                                      "--device", "cpu", "--out", str(tmp_path)])
    assert cli.run(args) == 130
    saved = json.loads((tmp_path / "results.json").read_text())
    assert {r["suite"] for r in saved["rows"]} == {"patchgan", "fid"}  # seqgan never started
    assert saved["failures"] == {"fid": "interrupted (Ctrl-C); 1 rows kept"}
    assert "interrupted" in capsys.readouterr().err


def test_cli_parses_bench_options():
    args = build_parser().parse_args(["bench", "--suite", "instance_norm", "--quick", "--tuned-alloc",
                                      "--device", "cpu"])
    assert args.suite == ["instance_norm"] and args.quick and args.alloc == "tuned" and args.device == "cpu"
    assert build_parser().parse_args(["bench"]).alloc == "both"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
@pytest.mark.parametrize("device", ["cuda", "tpu", "nonsense:x"])
def test_bench_rejects_an_unusable_device(device, tmp_path, capsys):
    args = build_parser().parse_args(["bench", "--device", device, "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as exc:
        cli.run(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gancore bench: error: --device") and "\n" not in err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_tune_cpu_allocator_takes_effect_in_a_fresh_process():
    code = ("import gancore; from gancore.utils.allocator import cpu_allocator_tuned;"
            "assert not cpu_allocator_tuned(); assert gancore.tune_cpu_allocator(); assert cpu_allocator_tuned()")
    subprocess.run([sys.executable, "-c", code], check=True)
