"""Whole training steps of every family that declares bench presets (Family.bench_cases): the fused
networks against the same networks in plain torch.nn.

One step is everything the trainer does for the family (CycleGAN: G_A, G_B, D_A and D_B with all their
losses, the image pools and both Adam steps; pix2pix: D, then G; a case with BenchCase.steps = k times k
trainer steps as one, e.g. StarGAN's round of n_critic D steps and one G step), through gancore's Trainer, on the
family's default built-in data, drawn once before timing so that no step pays for drawing. Contenders,
all with the same weights' layout and keys:
- "eager": model.fused=false, NCHW (what the reference code runs);
- "gancore": model.fused=true (fused norm + activation, the fused PatchGAN head) with the family's other
  defaults, so in the layout the trainer picks for fused networks on the device (train.channels_last=auto:
  channels_last on GPUs and AVX-512 CPUs, else NCHW); only for families with a `fused` option;
- "torch.compile": the eager networks under torch.compile (train.compile), where it compiles.
Each in fp32 and under bf16 autocast (the same autocast for every contender); --quick runs fp32 at each
preset's first batch size only. Steps are timed one at a
time in rotating order (slow load changes on a shared machine fall on all alike); each row is the median.
Rows carry images/s, peak memory (CUDA: allocator peak; CPU: exact tensor peak from the profiler's
memory timeline) and a profiler breakdown of one step's self time: conv, norm, loss, optimiser, other.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from collections.abc import Callable, Iterable

import torch
from torch._dynamo.utils import counters

from gancore.bench.timing import BenchContext, measure
from gancore.data import build_dataset
from gancore.data.base import GanDataset
from gancore.families import BenchCase, all_families, get_family
from gancore.train import Trainer, build_config
from gancore.train.config import build_dataclass

BASELINE = "eager"
ALLOC_SENSITIVE = False

PRECISIONS = ("fp32", "bf16")
CONTENDERS = {"eager": ["model.fused=false", "train.channels_last=false"],
              "gancore": ["model.fused=true"],
              "torch.compile": ["model.fused=false", "train.channels_last=false", "train.compile=true"]}


def presets(quick: bool) -> dict[str, BenchCase]:
    """family -> its full or quick BenchCase, for the families that declare one."""
    key = "quick" if quick else "full"
    return {name: cls.bench_cases[key] for name, cls in all_families().items() if key in cls.bench_cases}


class _Drawn(GanDataset):
    """The first n samples of a dataset, drawn once and kept in memory."""

    def __init__(self, dataset: GanDataset, n: int) -> None:
        self.samples = [dataset[i % len(dataset)] for i in range(n)]
        self.sample_key = dataset.sample_key
        self.num_classes = dataset.num_classes
        self.source = dataset

    def __len__(self) -> int:
        return len(self.samples)

    def __getattr__(self, name: str):  # family-specific attributes of the source (e.g. its vocabulary)
        if name == "source":
            raise AttributeError(name)
        return getattr(self.source, name)

    def sample(self, index: int, seed: int) -> dict:
        return self.samples[index]


def _has_fused_option(family: str) -> bool:
    return any(f.name == "fused" for f in dataclasses.fields(get_family(family).Config))


def contenders_of(family: str, contenders: Iterable[str]) -> list[str]:
    """The contenders that do different work for this family (no "gancore" row without a fused option)."""
    fused = _has_fused_option(family)
    return [c for c in contenders if fused or c != "gancore"]


def make_step(family: str, overrides: list[str] | tuple[str, ...], batch: int, precision: str, contender: str,
              device: torch.device, steps: int = 1) -> Callable[[], None]:
    """`steps` calls of Trainer.train_step of `family` (BenchCase.steps) as `contender` would run it."""
    settings = [o for o in CONTENDERS[contender] if _has_fused_option(family) or not o.startswith("model.fused")]
    config = build_config(family, overrides=list(overrides) + settings + [
        f"train.batch_size={batch}", f"train.precision={precision}", f"train.device={device}",
        "train.num_workers=0",
        "log.progress=false", "log.tensorboard=false", "log.sample_n=1"])
    family_cls = get_family(family)
    hints = family_cls(build_dataclass(family_cls.Config, config["model"], "model")).data_hints()
    dataset = _Drawn(build_dataset(config["data"], hints), max(8, 2 * batch))
    trainer = Trainer(config, dataset=dataset)

    def round_of_steps() -> None:
        for _ in range(steps):
            trainer.train_step()

    round_of_steps.trainer = trainer  # type: ignore[attr-defined]  # for check_compiled
    return round_of_steps


def check_compiled(label: str, step: Callable[[], None]) -> None:
    """Raise unless dynamo compiled every network the step's trainer compiles, with no graph break.

    The trainer compiles each network's forward without fullgraph, so dynamo may break a graph and run
    the rest eagerly under the torch.compile label. Call after the step ran, with dynamo's counters
    cleared (torch._dynamo.reset(); counters.clear()) before the step was built."""
    from torch._dynamo.utils import counters

    trainer = step.trainer  # type: ignore[attr-defined]
    networks = sum(1 for spec in trainer.specs.values() if not spec.double_backward)
    graphs, breaks = counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())
    if breaks or graphs < networks:
        raise RuntimeError(f"{label}: torch.compile captured {graphs} graph(s) for {networks} network(s), with "
                           f"{breaks} graph break(s); it ran eager code")


#: Profiler operator names -> group (first match wins); the optimiser is its step's whole time.
_GROUPS = (("conv", ("conv",)), ("norm", ("norm", "instance_norm_act")),
           ("loss", ("mse", "l1_loss", "binary_cross_entropy", "patchgan", "softplus")))


def breakdown(step: Callable[[], None]) -> dict[str, float]:
    """Fractions of one step's self CPU time (CUDA time on a GPU) by group."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        step()
    cuda = torch.cuda.is_available()
    events = prof.key_averages()

    def self_time(e) -> float:
        return e.self_device_time_total if cuda else e.self_cpu_time_total

    total = sum(self_time(e) for e in events) or 1.0
    groups = dict.fromkeys(["conv", "norm", "loss", "optimiser", "other"], 0.0)
    optimiser_events = [e for e in events if e.key.startswith("Optimizer.step#")]
    if cuda:
        groups["optimiser"] = sum(e.device_time_total for e in optimiser_events)
    else:
        groups["optimiser"] = sum(e.cpu_time_total for e in optimiser_events)
    for e in events:
        if e.key.startswith("Optimizer."):
            continue
        group = next((g for g, keys in _GROUPS if any(k in e.key for k in keys)), None)
        if group is not None:
            groups[group] += self_time(e)
    groups["other"] = max(0.0, total - sum(groups.values()))
    return {k: v / total for k, v in groups.items()}


def _peak_mb(step: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    from gancore.bench.suites.gradient_penalty import tensor_memory_mb

    return tensor_memory_mb(step)[0]


def _cases(ctx: BenchContext, selected: dict[str, BenchCase] | None = None, precisions: Iterable[str] | None = None
           ) -> list[tuple[str, str, tuple[str, ...], int, str, int]]:
    # the quick presets are a smoke run: fp32 at the first batch (bf16 is emulated, slowly, on most CPUs)
    smoke = ctx.quick and selected is None
    cases = presets(ctx.quick) if selected is None else selected
    precisions = precisions or (("fp32",) if smoke else PRECISIONS)
    return [(family, case.label, case.overrides, batch, precision, case.steps) for family, case in cases.items()
            for batch in (case.batches[:1] if smoke else case.batches) for precision in precisions]


def count(ctx: BenchContext, contenders: Iterable[str] = tuple(CONTENDERS)) -> int:
    contenders = list(contenders)
    return sum(len(contenders_of(family, contenders)) for family, *_ in _cases(ctx))


def run(ctx: BenchContext, contenders: Iterable[str] = tuple(CONTENDERS),
        selected: dict[str, BenchCase] | None = None, precisions: Iterable[str] | None = None) -> Iterable[dict]:
    for family, label, overrides, batch, precision, train_steps in _cases(ctx, selected, precisions):
        case = f"{family} {label} b{batch} {precision}" + (f" ({train_steps} steps)" if train_steps > 1 else "")
        steps, failed = {}, {}
        for name in contenders_of(family, contenders):
            try:
                if name == "torch.compile":
                    torch._dynamo.reset()
                    counters.clear()
                steps[name] = make_step(family, overrides, batch, precision, name, ctx.device, train_steps)
                for _ in range(max(1, ctx.warmup)):
                    steps[name]()
                if name == "torch.compile":
                    check_compiled(case, steps[name])
            except Exception as err:  # torch.compile may not handle every op; report it, time the rest
                if name != "torch.compile":
                    raise
                failed[name] = f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"
                steps.pop(name, None)
        samples: dict[str, list[float]] = {name: [] for name in steps}
        names = list(steps)
        for k in range(ctx.repeats):
            for name in names[k % len(names):] + names[:k % len(names)]:
                samples[name].append(measure(steps[name], device=ctx.device, repeats=1, warmup=0)["ms"])
        for name, times in samples.items():
            ms = statistics.median(times)
            parts = breakdown(steps[name])
            times.sort()
            yield {"case": case, "contender": name, "ms": ms, "ms_p10": times[round(0.1 * (len(times) - 1))],
                   "ms_p90": times[round(0.9 * (len(times) - 1))], "images_per_s": 1e3 * batch * train_steps / ms,
                   "peak_mb": _peak_mb(steps[name], ctx.device),
                   "note": ", ".join(f"{g} {100 * f:.0f}%" for g, f in parts.items())}
        for name, why in failed.items():
            yield {"case": case, "contender": name, "ms": None, "note": f"did not compile: {why}"}


def main(argv: list[str] | None = None) -> None:
    """Run the suite at a chosen size and print its rows (`gancore bench --suite families` runs the presets)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    full = presets(quick=False)
    parser.add_argument("--family", choices=sorted(full), action="append", help="family to run (default: all)")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                        help="extra config overrides, e.g. data.resolution=128 (names the case) or model.ngf=32")
    parser.add_argument("--batch", type=int, action="append", help="batch size (default: the presets')")
    parser.add_argument("--contender", choices=sorted(CONTENDERS), action="append", help="default: all")
    parser.add_argument("--precision", choices=PRECISIONS, action="append",
                        help="default: all (bf16 is emulated, slowly, on CPUs without AVX-512 bf16 or AMX)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per contender")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    args = parser.parse_args(argv)
    resolutions = [o.split("=", 1)[1] for o in args.overrides if o.split("=", 1)[0].endswith(".resolution")]
    selected = {family: BenchCase(f"{resolutions[-1]}x{resolutions[-1]}" if resolutions else case.label,
                                  case.overrides + tuple(args.overrides),
                                  tuple(args.batch or case.batches), case.steps)
                for family, case in full.items() if not args.family or family in args.family}
    ctx = BenchContext(torch.device(args.device), repeats=args.repeats, warmup=1)
    rows = []
    for row in run(ctx, args.contender or CONTENDERS, selected, args.precision):
        rows.append(row)
        ms = f"{row['ms']:.1f}" if row["ms"] is not None else "-"
        print(f"{row['case']:32s} {row['contender']:14s} {ms:>9s} ms  peak {row.get('peak_mb') or 0:8.0f} MB  "
              f"{row['note']}", flush=True)
    by_case: dict[str, dict[str, float]] = {}
    for row in rows:
        if row["ms"] is not None:
            by_case.setdefault(row["case"], {})[row["contender"]] = row["ms"]
    for case, times in by_case.items():
        if "eager" in times:
            print(f"{case:32s} " + "  ".join(f"{n} {times['eager'] / t:.2f}x" for n, t in times.items()))


if __name__ == "__main__":
    main()
