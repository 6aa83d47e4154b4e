"""The one training loop of gancore: it runs a family's phases and owns everything around them.

Per step the trainer reads one global batch, splits this process's share into accumulation rounds,
and runs every phase that is due: it freezes the other networks, calls the phase's loss under
autocast, backpropagates (through DDP for the network being optimised), checks that the loss and
gradients are finite on every process, and steps that network's optimiser and EMA. Around the
steps it writes logs, sample grids and atomic checkpoints, and resumes from them exactly.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import math
import os
import random
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from gancore import report
from gancore.data import BUILTIN, GanDataset, build_dataset
from gancore.errors import ConfigError
from gancore.families import get_family
from gancore.families.base import DataSpec, Network, Phase, PhaseContext
from gancore.train import checkpoint as ckpt
from gancore.train.config import (
    LogConfig,
    MetricsConfig,
    TrainConfig,
    build_dataclass,
    dump,
    resolve,
)
from gancore.train.distributed import DistEnv, setup
from gancore.train.ema import EMA
from gancore.train.hooks import FrechetHook, Hook
from gancore.train.loader import batch_stream
from gancore.train.logs import RunLog
from gancore.train.optimizers import OPTIMIZERS, describe_optimizer, make_optimizer
from gancore.utils.allocator import tune_cpu_allocator
from gancore.utils.layout import prefers_channels_last, to_channels_last

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class NonFiniteLossError(RuntimeError):
    """Too many steps in a row had a non-finite loss or gradient; the run stopped."""


class RunExistsError(ckpt.RunFolderError):
    """The output folder already holds a run and neither resuming nor starting afresh was asked for."""


class _BatchDraws:
    """Random per-sample tensors drawn for the whole global batch, of which each process and each
    accumulation round keeps its own rows.

    All processes hold the same generator. In a phase, the k-th draw of the first round draws
    (global batch, *shape) values; the k-th draw of a later round reuses them. So rows line up
    with the data (process r, round i read rows r * per_process + i * per_round onwards) and a run
    on N processes with R rounds draws what one process with one round draws.
    """

    def __init__(self, seed: int, device: torch.device, rank: int, per_process: int, rounds: int,
                 world_size: int) -> None:
        self.generator = torch.Generator(device).manual_seed(seed)
        self.device, self.rank, self.world_size = device, rank, world_size
        self.per_process, self.rows = per_process, per_process // rounds
        self._drawn: list[tuple[str, tuple[int, ...], torch.Tensor]] = []

    def start_phase(self) -> None:
        self._drawn = []

    def for_round(self, round_index: int) -> Callable[[str, tuple[int, ...]], torch.Tensor]:
        calls = itertools.count()
        return lambda kind, shape: self._draw(kind, tuple(shape), round_index, next(calls))

    def _draw(self, kind: str, shape: tuple[int, ...], round_index: int, call: int) -> torch.Tensor:
        if round_index == 0 or call >= len(self._drawn):
            full_shape = (self.per_process * self.world_size, *shape)
            if kind == "randn":
                full = torch.randn(full_shape, generator=self.generator, device=self.device)
            elif kind == "rand":
                full = torch.rand(full_shape, generator=self.generator, device=self.device)
            else:
                raise ValueError(f"unknown draw {kind!r}")
            self._drawn.append((kind, shape, full))
        else:
            drawn_kind, drawn_shape, full = self._drawn[call]
            if (drawn_kind, drawn_shape) != (kind, shape):
                raise RuntimeError(f"draw {call} of a phase was {drawn_kind}{drawn_shape} in the first "
                                   f"accumulation round and {kind}{shape} in round {round_index}")
        start = self.rank * self.per_process + round_index * self.rows
        return full[start:start + self.rows]


def _spec_of(dataset: Any) -> DataSpec:
    key = getattr(dataset, "sample_key", "image")
    first = dataset[0]
    if not isinstance(first, Mapping):
        raise ConfigError(f"datasets must return dicts of tensors, got {type(first).__name__}")
    if key not in first or not isinstance(first[key], torch.Tensor):
        raise ConfigError(f"the dataset's samples have no tensor under its sample_key {key!r} "
                          f"(keys: {sorted(first)})")
    return DataSpec(key, tuple(first[key].shape), getattr(dataset, "num_classes", None))


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


class Trainer:
    """Trains the family named in `config` (a resolved config, see gancore.train.config).

    `out_dir` is the run folder (None: write nothing, e.g. for benchmarks), the same on every process.
    `dataset` replaces the configured one. `resume` continues from `out_dir`'s latest checkpoint; a
    config that differs from the checkpoint's (beyond RESUME_SAFE keys) is refused unless `force`.
    Without `resume`, a folder that holds a run is refused unless `force`, which deletes its
    checkpoints and log. Building a Trainer writes nothing; `fit()` does, holding the folder's lock.
    """

    def __init__(self, config: Mapping[str, Any], out_dir: str | None = None, *,
                 dataset: GanDataset | None = None, resume: bool = False, force: bool = False,
                 hooks: Sequence[Hook] = ()) -> None:
        family_cls = get_family(str(config["family"])) if "family" in config else None
        self.config = resolve(config, family_cls)
        self.train_config: TrainConfig = build_dataclass(TrainConfig, self.config["train"], "train")
        self.log_config: LogConfig = build_dataclass(LogConfig, self.config["log"], "log")
        metrics_config: MetricsConfig = build_dataclass(MetricsConfig, self.config["metrics"], "metrics")
        tc = self.train_config
        self.out_dir = out_dir
        if tc.tuned_alloc and not tune_cpu_allocator():
            warnings.warn("train.tuned_alloc: this platform's allocator cannot be tuned (glibc only)",
                          stacklevel=2)
        self.dist: DistEnv = setup(tc.device, tc.dist_timeout)
        self.device = self.dist.device
        self._check_settings()

        self.family = family_cls(build_dataclass(family_cls.Config, self.config["model"], "model"))
        #: train.channels_last with "auto" resolved: channels_last where the fused ops run it faster
        self.channels_last = (prefers_channels_last(self.device, getattr(self.family.config, "fused", False))
                              if tc.channels_last == "auto" else bool(tc.channels_last))
        self.dataset = dataset if dataset is not None else build_dataset(self.config["data"],
                                                                         self.family.data_hints())
        self.family.dataset = self.dataset
        self.spec = _spec_of(self.dataset)

        # Identical initial weights on every process, and equal to a one-process run's.
        _seed_everything(tc.seed)
        specs = self.family.build(self.spec)
        self.phases: list[Phase] = self.family.phases()
        self._check_phases(specs)
        self.specs: dict[str, Network] = specs
        self.nets: dict[str, nn.Module] = {}
        #: network -> its convolutions left NCHW in a channels_last run (gancore.utils.layout.to_channels_last)
        self.nchw_convs: dict[str, list[str]] = {}
        for name, spec in specs.items():
            module = spec.module.to(self.device)
            if self.channels_last:
                self.nchw_convs[name] = to_channels_last(module)
            if tc.sync_batchnorm and self.dist.enabled:
                module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
            self.nets[name] = module
        self.ema = {name: EMA(self.nets[name], tc.ema_beta) for name, spec in specs.items()
                    if spec.ema and tc.ema_beta > 0}
        if tc.compile:
            for name, spec in specs.items():
                if not spec.double_backward:
                    self.nets[name].compile(**({} if tc.compile is True else {"backend": tc.compile}))
        self.wrapped = {name: self._wrap(m) for name, m in self.nets.items()}
        self._check_optimizer_settings(specs)
        self.optimizers = {name: make_optimizer(self.nets[name], spec, tc.optimizer_impl)
                           for name, spec in specs.items()}
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=tc.precision == "fp16")
        # Training-time randomness: one stream shared by all processes for per-sample draws, and a
        # global RNG per process for anything else a network does (dropout, ...).
        self.draws = _BatchDraws(tc.seed + 1, self.device, self.dist.rank, self.per_process_batch,
                                 tc.accumulate, self.dist.world_size)
        _seed_everything(tc.seed + 7919 * (self.dist.rank + 1))
        # The fixed inputs of the sample pictures (a resumed run continues with those its folder saved).
        self.sample_inputs = self.family.make_sample_inputs(
            self.log_config.sample_n, torch.Generator(self.device).manual_seed(tc.seed + 2), self.device)

        self.step = 0
        self.images_seen = 0
        self.nonfinite_steps = 0
        self._streak = 0
        self._running: dict[str, list[torch.Tensor]] = defaultdict(list)
        self._batches: Iterator[dict] | None = None
        self.hooks: list[Hook] = list(hooks)
        if metrics_config.every:
            self.hooks.append(FrechetHook(metrics_config.every, metrics_config.num_samples, metrics_config.kind,
                                          metrics_config.inception_weights))
        for hook in self.hooks:
            if hasattr(hook, "check"):
                hook.check(self)
        self.resumed_from: str | None = None
        self.last_checkpoint: str | None = None
        # Known on every process (last_checkpoint only on the main one), so that all decide alike
        # whether to enter the collectives of a final checkpoint.
        self.checkpointed_step: int | None = None
        if resume:
            if out_dir is None:
                raise ConfigError("resume needs the run folder (out_dir)")
            if not os.path.isdir(out_dir):
                raise ckpt.CheckpointError(f"--resume: {out_dir!r} holds no checkpoint to resume from "
                                           "(no such folder)")
            path, state = ckpt.load_latest(out_dir)
            self.load(path, force=force, state=state)
            self.sample_inputs = report.fixed_inputs(out_dir, self.sample_inputs, self.device)
        self.force = force
        self._lock: Any = None

    # -- set-up ------------------------------------------------------------------------------------

    def _check_settings(self) -> None:
        tc = self.train_config
        if tc.precision == "fp16" and self.device.type != "cuda":
            raise ConfigError("train.precision=fp16 needs a CUDA device (GradScaler); use bf16 on the CPU")
        if tc.sync_batchnorm and self.dist.enabled and self.device.type != "cuda":
            raise ConfigError("train.sync_batchnorm: SyncBatchNorm runs on CUDA only; turn it off on the CPU")
        share = self.dist.world_size * tc.accumulate
        if tc.batch_size % share:
            raise ConfigError(f"train.batch_size={tc.batch_size} must be divisible by processes "
                              f"({self.dist.world_size}) x train.accumulate ({tc.accumulate})")
        if isinstance(tc.compile, str):
            backends = torch.compiler.list_backends(exclude_tags=())
            if tc.compile not in backends:
                raise ConfigError(f"train.compile: {tc.compile!r} is not a torch.compile backend; use true, "
                                  f"false or one of {', '.join(backends)}")
        if tc.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    def _check_phases(self, specs: Mapping[str, Network]) -> None:
        if not self.phases:
            raise ConfigError(f"family {self.family.name!r} declares no phases")
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise ConfigError(f"family {self.family.name!r}: phase names must be unique, got {names}")
        for phase in self.phases:
            if phase.network not in specs:
                raise ConfigError(f"family {self.family.name!r}: phase {phase.name!r} optimises "
                                  f"{phase.network!r}, which is not among its networks {sorted(specs)}")
            if phase.every < 1:
                raise ConfigError(f"family {self.family.name!r}: phase {phase.name!r} has "
                                  f"every={phase.every}")

    def _check_optimizer_settings(self, specs: Mapping[str, Network]) -> None:
        """The optimisers' hyper-parameters as the family set them from the model section, checked here so
        that every family gets a message naming the network rather than torch's bare ValueError."""
        for name, spec in specs.items():
            if spec.optimizer not in OPTIMIZERS:
                raise ConfigError(f"model: the optimiser of {name!r} must be one of {sorted(OPTIMIZERS)}, got "
                                  f"{spec.optimizer!r}")
            if not (isinstance(spec.momentum, (int, float)) and 0.0 <= spec.momentum < 1.0):
                raise ConfigError(f"model: the momentum of {name!r} must be a number in [0, 1), got "
                                  f"{spec.momentum!r}")
            if not (isinstance(spec.lr, (int, float)) and math.isfinite(spec.lr) and spec.lr > 0):
                raise ConfigError(f"model: the learning rate of {name!r} must be a positive finite number, "
                                  f"got {spec.lr!r} (see the model section's lr settings)")
            betas = tuple(spec.betas)
            if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in betas):
                raise ConfigError(f"model: the Adam betas of {name!r} must be two numbers in [0, 1), got "
                                  f"{list(betas)} (see the model section's betas settings)")
            if not (isinstance(spec.weight_decay, (int, float)) and math.isfinite(spec.weight_decay)
                    and spec.weight_decay >= 0):
                raise ConfigError(f"model: the weight decay of {name!r} must be a finite number >= 0, got "
                                  f"{spec.weight_decay!r}")

    def _wrap(self, module: nn.Module) -> nn.Module:
        if not self.dist.enabled or not any(p.requires_grad for p in module.parameters()):
            return module
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)

    @property
    def per_process_batch(self) -> int:
        return self.train_config.batch_size // self.dist.world_size

    def _num_workers(self) -> int:
        if self.train_config.num_workers >= 0:
            return self.train_config.num_workers
        return 0 if self.config["data"].get("name") in BUILTIN else min(4, os.cpu_count() or 1)

    # -- one step ----------------------------------------------------------------------------------

    def _lr_factor(self, step: int) -> float:
        tc = self.train_config
        factor = min(1.0, (step + 1) / tc.warmup_steps) if tc.warmup_steps else 1.0
        progress = min(1.0, step / max(1, tc.steps))
        if tc.lr_schedule == "linear":
            factor *= 1.0 - progress
        elif tc.lr_schedule == "cosine":
            factor *= 0.5 * (1.0 + math.cos(math.pi * progress))
        elif tc.lr_schedule == "step":  # SRGAN's: a tenth of the rate for the second half
            factor *= 0.1 if 2 * step >= tc.steps else 1.0
        return factor * self.family.lr_factor(step * tc.batch_size // len(self.dataset))

    def _next_batch(self) -> list[dict]:
        """This process's share of the next global batch, on the device, split into accumulation rounds."""
        if self._batches is None:
            self._batches = batch_stream(
                self.dataset, global_batch=self.train_config.batch_size, rank=self.dist.rank,
                world_size=self.dist.world_size, seed=self.train_config.seed, start_batch=self.step,
                num_workers=self._num_workers(), pin_memory=self.device.type == "cuda")
        batch = next(self._batches)
        rounds = self.train_config.accumulate
        moved = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.device, non_blocking=True)
                if self.channels_last and value.dim() == 4 and value.is_floating_point():
                    value = value.contiguous(memory_format=torch.channels_last)
            moved[key] = value
        size = self.per_process_batch // rounds
        return [{k: v[i * size:(i + 1) * size] for k, v in moved.items()} for i in range(rounds)]

    def _autocast(self) -> contextlib.AbstractContextManager:
        dtype = _DTYPES.get(self.train_config.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def _run_phase(self, phase: Phase, rounds: list[dict]) -> bool:
        """Run one phase over the accumulation rounds; True when its update was applied."""
        name = phase.network
        for n, module in self.nets.items():
            module.requires_grad_(n == name)
        nets = {n: (self.wrapped[n] if n == name else m) for n, m in self.nets.items()}
        optimizer = self.optimizers[name]
        scaling = self.scaler.is_enabled()
        logged: dict[str, torch.Tensor] = {}
        self.draws.start_phase()
        for i, micro in enumerate(rounds):
            ctx = PhaseContext(nets, micro, self.step, self.draws.rows, self.draws.for_round(i),
                               scaler=self.scaler if scaling else None)
            last = i == len(rounds) - 1
            defer_sync = not last and isinstance(nets[name], DistributedDataParallel)
            no_sync = nets[name].no_sync() if defer_sync else contextlib.nullcontext()
            with no_sync:
                with self._autocast():
                    out = phase.loss(ctx)
                loss = out.get("loss") if isinstance(out, Mapping) else None
                if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                    raise TypeError(f"phase {phase.name!r} must return a dict with a scalar tensor "
                                    "'loss'")
                loss = loss / len(rounds)
                (self.scaler.scale(loss) if scaling else loss).backward()
            for key, value in out.items():
                value = torch.as_tensor(value, device=self.device).detach().float() / len(rounds)
                logged[key] = logged[key] + value if key in logged else value
        if scaling:
            self.scaler.unscale_(optimizer)
        grads = [p.grad for p in self.nets[name].parameters() if p.grad is not None]
        grad_norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=self.device)
        finite = torch.isfinite(logged["loss"])
        if not scaling:  # with a GradScaler, inf/nan gradients are its business: it skips and rescales
            finite = finite & torch.isfinite(grad_norm)
        applied = self.dist.all_true(finite)
        if applied:
            if scaling:
                self.scaler.step(optimizer)
            else:
                optimizer.step()
            if phase.after_step is not None:
                with torch.no_grad():
                    phase.after_step(self.nets[name])
            if name in self.ema:
                self.ema[name].update(self.nets[name])
        optimizer.zero_grad(set_to_none=True)
        logged["grad_norm"] = grad_norm.detach().float()
        for key, value in logged.items():
            self._running[f"{phase.name}/{key}"].append(value)
        return applied

    def train_step(self) -> list[str]:
        """One optimisation step; returns the names of phases skipped for non-finite values."""
        factor = self._lr_factor(self.step)
        for name, optimizer in self.optimizers.items():
            for group in optimizer.param_groups:
                group["lr"] = self.specs[name].lr * factor
        rounds = self._next_batch()
        due = [phase for phase in self.phases if phase.due(self.step)]
        skipped = [phase.name for phase in due if not self._run_phase(phase, rounds)]
        if due and self.scaler.is_enabled():
            self.scaler.update()
        self.step += 1
        self.images_seen += self.train_config.batch_size
        if skipped:
            self.nonfinite_steps += 1
            self._streak += 1
            if self._streak >= self.train_config.nonfinite_patience:
                raise NonFiniteLossError(
                    f"stopped at step {self.step}: {self._streak} steps in a row had a non-finite loss or "
                    f"gradient (phases {', '.join(skipped)} at the last one); their updates were skipped. "
                    f"Last good checkpoint: {self.last_checkpoint or 'none written yet'}. Try a lower "
                    f"learning rate, fp32 precision, or check the data")
        else:
            self._streak = 0
        return skipped

    # -- sampling ----------------------------------------------------------------------------------

    @property
    def sample_latents(self) -> Any:
        """What the generator takes to draw the sample pictures (see Family.make_sample_inputs)."""
        return self.sample_inputs["latents"]

    @torch.no_grad()
    def generate(self, latents: torch.Tensor) -> torch.Tensor:
        """Samples from the EMA networks where kept (else the trained ones), in eval mode, as float32."""
        nets = {n: (self.ema[n].module if n in self.ema else m) for n, m in self.nets.items()}
        modes = {n: m.training for n, m in nets.items()}
        for m in nets.values():
            m.eval()
        try:
            with self._autocast():
                return self.family.generate(nets, latents).float()
        finally:
            for n, m in nets.items():
                m.train(modes[n])

    def save_samples(self, path: str) -> None:
        """A picture of samples at the run's fixed inputs (input | output | target for image-to-image)."""
        report.save_sample_picture(self.family, self.sample_inputs, self.generate(self.sample_latents), path)

    def _write_samples(self, name: str) -> None:
        """samples/<name>, then (log.report) the run report refreshed to show it. Main process only."""
        self.save_samples(os.path.join(self.out_dir, "samples", name))
        if self.log_config.report:
            report.refresh(self)

    # -- checkpoints ---------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything needed to continue exactly (gancore.train.checkpoint.capture_state)."""
        return ckpt.capture_state(self)

    def load(self, path: str, *, force: bool = False, state: Mapping[str, Any] | None = None) -> None:
        """Continue from checkpoint `path` (already loaded: `state`); refuses a different config unless
        `force` (gancore.train.checkpoint.restore_state)."""
        ckpt.restore_state(self, path, ckpt.load_checkpoint(path, map_location=self.device) if state is None
                           else state, force=force)
        self._batches = None

    def save_checkpoint(self) -> str | None:
        """Write a checkpoint of the current step (main process; all processes must call)."""
        state = self.state_dict()
        path = None
        if self.dist.is_main and self.out_dir is not None:
            path = ckpt.save_checkpoint(self.out_dir, state, self.step, self.log_config.keep)
            # config.yaml describes the latest checkpoint: a resumed run (perhaps forced to another
            # config) rewrites it only once a checkpoint of that config exists.
            dump(self.config, os.path.join(self.out_dir, "config.yaml"))
            self.last_checkpoint = path
        self.checkpointed_step = self.step
        self.dist.barrier()
        return path

    # -- the loop ------------------------------------------------------------------------------------

    def _prepare_run_dir(self) -> None:
        """Main process: create and lock the run folder; refuse one that holds another run."""
        if self.out_dir is None or not self.dist.is_main:
            return
        try:
            os.makedirs(os.path.join(self.out_dir, "samples"), exist_ok=True)
        except OSError as err:
            raise ckpt.RunFolderError(f"--out {self.out_dir!r}: cannot create the run folder: "
                                      f"{err.strerror or err}") from None
        self._lock = ckpt.lock_run_dir(self.out_dir)
        if self.resumed_from is None and ckpt.holds_run(self.out_dir):
            if not self.force:
                raise RunExistsError(f"{self.out_dir!r} already holds a run: pass --resume to continue it, "
                                     "--force to start afresh (deleting its checkpoints and log), or choose "
                                     "another --out")
            ckpt.remove_run(self.out_dir)
        ckpt.remove_temporaries(self.out_dir)
        report.start_run(self.out_dir, self.sample_inputs, fresh=self.resumed_from is None)
        if self.resumed_from is None:
            dump(self.config, os.path.join(self.out_dir, "config.yaml"))

    def _open_run(self, total: int) -> RunLog:
        """Prepare the run folder and its log on every process; a folder the main process cannot use
        stops all of them (not only the main one, which would leave the others waiting for it)."""
        logc = self.log_config
        error: ckpt.RunFolderError | None = None
        log = None
        try:
            self._prepare_run_dir()
            log = RunLog(self.out_dir, total_steps=total, start_step=self.step, tensorboard=logc.tensorboard,
                         progress=logc.progress, enabled=self.dist.is_main)
        except ckpt.RunFolderError as err:
            error = err
        except OSError as err:
            error = ckpt.RunFolderError(f"--out {self.out_dir!r}: cannot write the run folder: {err}")
        main_error = self.dist.gather_objects(None if error is None else str(error))[0]
        if error is None and main_error is not None:
            error = ckpt.RunFolderError(main_error)
        if error is not None:
            if log is not None:
                log.close()
            self._release_lock()
            raise error
        return log

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _flush_running(self) -> dict[str, float]:
        """Means of the scalars logged since the last call, averaged over processes."""
        if not self._running:
            return {}
        keys = sorted(self._running)
        means = torch.stack([torch.stack(self._running[k]).mean() for k in keys])
        self.dist.all_reduce_mean(means)
        self._running.clear()
        return dict(zip(keys, means.tolist()))

    def fit(self, steps: int | None = None) -> dict:
        """Train up to `steps` (default train.steps) total steps; returns a summary."""
        total = self.train_config.steps if steps is None else steps
        logc = self.log_config
        log = self._open_run(total)
        if self.resumed_from:
            log.write(f"resumed from {self.resumed_from} at step {self.step}")
        started = time.perf_counter()
        window_start, window_steps = started, 0
        try:
            while self.step < total:
                self.train_step()
                window_steps += 1
                log.advance()
                due = {"log": self.step % logc.every == 0 or self.step == total,
                       "samples": bool(logc.sample_every) and self.step % logc.sample_every == 0,
                       "checkpoint": bool(logc.checkpoint_every) and self.step % logc.checkpoint_every == 0}
                if due["log"]:
                    values = self._flush_running()
                    now = time.perf_counter()
                    seconds = (now - window_start) / window_steps
                    values.update({"sec_per_step": seconds,
                                   "images_per_s": self.train_config.batch_size / seconds if seconds else 0.0,
                                   "lr_factor": self._lr_factor(self.step - 1),
                                   "nonfinite_steps": float(self.nonfinite_steps)})
                    log.record(self.step, values)
                    log.show({k: v for k, v in values.items() if k.endswith("/loss") or k == "images_per_s"})
                    window_start, window_steps = now, 0
                if due["samples"] and self.dist.is_main and self.out_dir is not None:
                    self._write_samples(f"{self.step:08d}.png")
                if due["checkpoint"] and self._streak == 0:
                    self.save_checkpoint()
                for hook in self.hooks:
                    if hook.every and self.step % hook.every == 0:
                        values = hook(self)
                        if values:
                            log.record(self.step, dict(values))
            if self.out_dir is not None and self._streak == 0 and self.checkpointed_step != self.step:
                self.save_checkpoint()
            if self.dist.is_main and self.out_dir is not None:
                self._write_samples("final.png")
        except NonFiniteLossError:
            raise
        except RuntimeError as err:
            peer_error = self.dist.peer_error(err)
            if peer_error is None:
                raise
            raise peer_error from err
        finally:
            log.close()
            self._release_lock()
        return {"step": self.step, "seconds": time.perf_counter() - started, "images_seen": self.images_seen,
                "nonfinite_steps": self.nonfinite_steps, "checkpoint": self.last_checkpoint}

    def close(self) -> None:
        """Release the data loader and leave the process group this trainer joined."""
        self._batches = None
        # DDP's reducers hold the process group: with them alive, gloo's threads outlive
        # destroy_process_group and die with the interpreter, which can abort the process.
        self.wrapped = dict(self.nets)
        gc.collect()
        self.dist.shutdown()

    # -- description ---------------------------------------------------------------------------------

    def plan(self) -> str:
        """What a run would do (`--dry-run`): data, networks, phases, precision, processes, outputs."""
        tc, logc = self.train_config, self.log_config
        lines = [f"family     {self.family.name}: {self.family.summary}",
                 f"data       {getattr(self.dataset, 'describe', lambda: repr(self.dataset))()}",
                 f"           generator target '{self.spec.key}' of shape {self.spec.shape}"]
        for name, spec in self.specs.items():
            params = sum(p.numel() for p in self.nets[name].parameters())
            kept = len(self.nchw_convs.get(name, ()))
            extras = [f"EMA {tc.ema_beta}" if name in self.ema else "",
                      f"{kept} large convolution(s) kept NCHW" if kept else "",
                      "compiled" if tc.compile and not spec.double_backward else "",
                      "double backward" if spec.double_backward else ""]
            lines.append(f"network    {name}: {type(spec.module).__name__}, {params / 1e6:.3f}M parameters, "
                         + describe_optimizer(spec)
                         + "".join(f", {e}" for e in extras if e))
        for phase in self.phases:
            lines.append(f"phase      {phase.name}: optimises {phase.network}, {phase.schedule()}")
        lines += [
            f"steps      {self.step} -> {tc.steps}, global batch {tc.batch_size} = {self.dist.world_size} "
            f"process(es) x {self.per_process_batch // tc.accumulate} x {tc.accumulate} accumulation "
            "round(s)",
            f"device     {self.device}, precision {tc.precision}, channels_last {self.channels_last}"
            f"{' (auto)' if tc.channels_last == 'auto' else ''}, "
            f"lr schedule {tc.lr_schedule} (warm-up {tc.warmup_steps}), seed {tc.seed}",
            f"outputs    {self.out_dir or '(none)'}: config.yaml, log.jsonl, tb/, samples/ every "
            f"{logc.sample_every or 'end'}, checkpoints every {logc.checkpoint_every or 'end'} "
            f"(keep {logc.keep})",
        ]
        if self.hooks:
            lines.append("hooks      " + ", ".join(f"{type(h).__name__} every {h.every}" for h in self.hooks))
        return "\n".join(lines)
