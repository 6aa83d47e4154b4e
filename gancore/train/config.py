"""Run configuration: defaults, YAML/JSON files, `--set key=value` overrides, checking and diffs.

A resolved config is a plain nested dict, written next to every run and stored in checkpoints:

    family: dcgan
    model:   {...}   the family's Config dataclass
    data:    {...}   dataset type and options (gancore.data.build_dataset)
    train:   {...}   TrainConfig: steps, batch size, seed, precision, EMA, schedule, ...
    log:     {...}   LogConfig: cadence of logs, samples and checkpoints
    metrics: {...}   MetricsConfig: periodic evaluation through gancore.metrics

Every value is checked against its dataclass field's type, so a typo fails before any work with
a message naming the key, e.g. "train.precison: unknown key; valid keys: ...".
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from gancore.errors import ConfigError
from gancore.families import Family, get_family, normalise_family_name
from gancore.families.base import check_choice, check_positive
from gancore.utils.files import atomic_write

PRECISIONS = ("fp32", "bf16", "fp16")
SCHEDULES = ("constant", "linear", "cosine", "step")
OPTIMIZER_IMPLS = ("fused", "foreach", "for-loop")
SECTIONS = ("model", "data", "train", "log", "metrics")

#: Keys that may change when a run is resumed without --force: they do not change the training math
#: (train.steps only with a constant learning rate; Trainer.load checks that).
RESUME_SAFE = ("train.steps", "train.num_workers", "train.tuned_alloc", "train.dist_timeout", "train.optimizer_impl",
               "log.", "metrics.")


@dataclass
class TrainConfig:
    steps: int = 10_000  # total optimisation steps of the run (a resumed run continues up to this)
    batch_size: int = 64  # global: split over processes and accumulation rounds
    seed: int = 0
    device: str = "auto"  # auto (cuda when available), cpu, cuda, cuda:1, ...
    precision: str = "fp32"  # fp32, bf16 (autocast, CPU and GPU), fp16 (autocast + GradScaler, GPU)
    accumulate: int = 1  # gradient accumulation rounds per step
    ema_beta: float = 0.999  # EMA of generator weights; 0 disables
    lr_schedule: str = "constant"  # constant, linear (to 0 at `steps`), cosine or step (x0.1 from steps/2)
    warmup_steps: int = 0  # linear learning-rate warm-up
    channels_last: bool | str = "auto"  # NHWC networks and batches; auto: fused networks, by device (utils/layout.py)
    compile: bool | str = False  # torch.compile forwards not differentiated twice; a string names the backend
    sync_batchnorm: bool = False  # SyncBatchNorm across processes (CUDA only)
    deterministic: bool = False  # deterministic algorithms on the GPU too (slower); the CPU is by default
    tuned_alloc: bool = False  # gancore.tune_cpu_allocator() before anything is allocated
    optimizer_impl: str = "fused"  # fused (PyTorch's one-kernel Adam/SGD; RMSprop: foreach), foreach, for-loop
    num_workers: int = -1  # data loader workers; -1: 0 for built-in data, else min(4, CPUs)
    nonfinite_patience: int = 20  # stop after this many steps in a row with a non-finite loss
    dist_timeout: float = 600.0  # seconds a process waits for the others in a collective before it stops

    def __post_init__(self) -> None:
        check_choice("train.precision", self.precision, PRECISIONS)
        check_choice("train.lr_schedule", self.lr_schedule, SCHEDULES)
        check_choice("train.optimizer_impl", self.optimizer_impl, OPTIMIZER_IMPLS)
        if isinstance(self.channels_last, str):
            check_choice("train.channels_last", self.channels_last, ("auto",))
        check_positive("train.steps", self.steps, 0)
        check_positive("train.batch_size", self.batch_size)
        check_positive("train.accumulate", self.accumulate)
        check_positive("train.warmup_steps", self.warmup_steps, 0)
        check_positive("train.nonfinite_patience", self.nonfinite_patience)
        check_positive("train.num_workers", self.num_workers, -1)
        if not (math.isfinite(self.dist_timeout) and self.dist_timeout > 0):
            raise ConfigError(f"train.dist_timeout: must be a positive number of seconds, got {self.dist_timeout}")
        if not 0.0 <= self.ema_beta < 1.0:
            raise ConfigError(f"train.ema_beta: must be in [0, 1), got {self.ema_beta}")


@dataclass
class LogConfig:
    every: int = 50  # steps between JSONL/TensorBoard records and progress-bar updates
    sample_every: int = 500  # steps between sample grids (at fixed latents); 0: only at the end
    sample_n: int = 64
    checkpoint_every: int = 1000  # 0: only at the end
    keep: int = 3  # checkpoints kept
    tensorboard: bool = True  # when tensorboard is installed
    progress: bool = True
    report: bool = True  # refresh the run report (RUN/report/index.html, gancore.report) with every sample grid

    def __post_init__(self) -> None:
        check_positive("log.every", self.every)
        check_positive("log.sample_every", self.sample_every, 0)
        check_positive("log.sample_n", self.sample_n)
        check_positive("log.checkpoint_every", self.checkpoint_every, 0)
        check_positive("log.keep", self.keep)


@dataclass
class MetricsConfig:
    every: int = 0  # steps between evaluations; 0 disables
    kind: str = "fd-builtin"  # fd-builtin: built-in offline extractor; fid: InceptionV3, weights from a file
    num_samples: int = 5000
    inception_weights: str | None = None  # kind=fid: the pt_inception weights (else $GANCORE_FID_WEIGHTS)

    def __post_init__(self) -> None:
        check_choice("metrics.kind", self.kind, ("fd-builtin", "fid"))
        check_positive("metrics.every", self.every, 0)
        check_positive("metrics.num_samples", self.num_samples, 2)


_SECTION_TYPES = {"train": TrainConfig, "log": LogConfig, "metrics": MetricsConfig}


def _family_class(family: str | type[Family]) -> type[Family]:
    return get_family(family) if isinstance(family, str) else family


def default_config(family: str | type[Family]) -> dict:
    """The resolved config of `family` (a name or the registered class) with nothing overridden."""
    cls = _family_class(family)
    return _plain({
        "family": cls.name,
        "model": dataclasses.asdict(cls.Config()),
        "data": dict(cls.default_data),
        "train": dataclasses.asdict(TrainConfig(**cls.default_train)),
        "log": dataclasses.asdict(LogConfig()),
        "metrics": dataclasses.asdict(MetricsConfig()),
    })


def load_config_file(path: str) -> dict:
    """A YAML (or JSON, which YAML reads too) file holding some of the sections above."""
    if not os.path.isfile(path):
        raise ConfigError(f"--config: no such file: {path!r}")
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as err:
            raise ConfigError(f"--config: {path!r} is not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {path!r} must hold a mapping of sections, got {type(data).__name__}")
    return data


def parse_overrides(items: list[str]) -> dict:
    """["train.lr_schedule=cosine", "model.betas_g=[0.5, 0.99]"] -> nested dict; values are YAML."""
    out: dict = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.precision=bf16")
        section, _, field = key.partition(".")
        if section not in SECTIONS or not field or "." in field:
            raise ConfigError(f"--set {item!r}: the key must be section.field, the section one of {SECTIONS}")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {item!r}: cannot parse the value: {err}") from None
        out.setdefault(section, {})[field] = value
    return out


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict:
    """Section-wise update of `base` by `override`. A new data.name starts the data section afresh,
    since another dataset type takes other options."""
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in base.items()}
    for key, value in override.items():
        if key == "family":
            out[key] = value
            continue
        if key not in SECTIONS:
            raise ConfigError(f"{key}: unknown config section; sections are {SECTIONS} (and family)")
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: must be a mapping of options, got {value!r}")
        section = dict(out.get(key) or {})
        if key == "data" and "name" in value and value["name"] != section.get("name"):
            section = {}
        section.update(value)
        out[key] = section
    return out


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, key: str) -> Any:
    """`value` as type `tp` (int, float, bool, str, tuples, lists, unions), or ConfigError naming `key`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arm in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arm, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin in (tuple, list):
        if isinstance(value, (list, tuple)):
            if origin is tuple and args and args[-1] is not Ellipsis:
                if len(value) != len(args):
                    raise ConfigError(f"{key}: expected {len(args)} values, got {list(value)!r}")
                return tuple(coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
            item = args[0] if args else Any
            items = [coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
            return tuple(items) if origin is tuple else items
    elif origin is dict:
        if isinstance(value, Mapping):
            return dict(value)
    else:
        raise ConfigError(f"{key}: unsupported field type {tp!r}")
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")


def build_dataclass(cls: type, values: Mapping[str, Any], section: str) -> Any:
    """An instance of dataclass `cls` from `values`, refusing unknown keys and mistyped values."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(f"{section}.{unknown[0]}: unknown key; valid keys: {', '.join(sorted(fields))}")
    kwargs = {k: coerce(v, hints[k], f"{section}.{k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except TypeError as err:  # a field without default left unset
        raise ConfigError(f"{section}: {err}") from None


def _plain(value: Any) -> Any:
    """Tuples -> lists, so a resolved config is JSON/YAML-plain and compares equal after a round trip."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def resolve(raw: Mapping[str, Any], family: type[Family] | None = None) -> dict:
    """Check a (merged) config and fill every default. Returns the resolved, plain config.
    `family`: the class of raw["family"], when the caller has already looked it up."""
    if "family" not in raw:
        raise ConfigError("family: missing")
    family = family or get_family(str(raw["family"]))
    unknown = sorted(set(raw) - set(SECTIONS) - {"family"})
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown config section; sections are {SECTIONS} (and family)")
    out: dict = {"family": family.name}
    out["model"] = dataclasses.asdict(build_dataclass(family.Config, raw.get("model") or {}, "model"))
    data = dict(raw.get("data") or {})
    out["data"] = data if data.get("name") else {**family.default_data, **data}
    if not isinstance(out["data"]["name"], str):
        raise ConfigError(f"data.name: expected a dataset type name, got {out['data']['name']!r}")
    for section, cls in _SECTION_TYPES.items():
        values = {**(family.default_train if section == "train" else {}), **(raw.get(section) or {})}
        out[section] = dataclasses.asdict(build_dataclass(cls, values, section))
    return _plain(out)


def data_override(current: Mapping[str, Any], data: str, family: type[Family]) -> dict:
    """The data section for `--data X`: a built-in dataset when X names one (and is no path), else
    X as the path of the current dataset type, or of the family's file-based type when that is built in."""
    from gancore.data import BUILTIN

    if data in BUILTIN and not os.path.exists(data):
        return {"name": data}
    name = current.get("name")
    if name is None or name in BUILTIN:
        name = family.path_data
    return {"name": name, "path": data}


def build_config(family: str, *, base: Mapping[str, Any] | None = None, files: list[str] = (),
                 data: str | None = None, overrides: list[str] = (),
                 flags: Mapping[str, Any] | None = None) -> dict:
    """The resolved config for a run, applying in order: `base` (defaults, or a resumed run's config),
    config files, `data` (--data), --set overrides, then explicit flags ({"train.steps": 200, ...})."""
    cls = get_family(family)  # looked up once; every stage below is handed the class

    def same_family(name: object) -> bool:
        return name is None or normalise_family_name(str(name)) == cls.name

    raw = dict(base) if base is not None else default_config(cls)
    if not same_family(raw.get("family")):
        raise ConfigError(f"family: the run is {raw['family']!r}, not {family!r}")
    for path in files:
        file_config = load_config_file(path)
        if not same_family(file_config.get("family")):
            raise ConfigError(f"--config {path!r} is for family {file_config['family']!r}, not {family!r}")
        raw = merge(raw, file_config)
    if data is not None:
        raw = merge(raw, {"data": data_override(raw.get("data") or {}, data, cls)})
    raw = merge(raw, parse_overrides(list(overrides)))
    nested: dict = {}
    for dotted, value in (flags or {}).items():
        section, field = dotted.split(".", 1)
        nested.setdefault(section, {})[field] = value
    return resolve(merge(raw, nested), cls)


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any],
                ignore: tuple[str, ...] = RESUME_SAFE) -> list[str]:
    """Lines "key: old -> new" for every setting that differs, except keys starting with `ignore`."""
    a, b = _flatten(_plain(old)), _flatten(_plain(new))
    lines = []
    for key in sorted(set(a) | set(b)):
        if key.startswith(ignore) or a.get(key, "<unset>") == b.get(key, "<unset>"):
            continue
        lines.append(f"{key}: {a.get(key, '<unset>')!r} -> {b.get(key, '<unset>')!r}")
    return lines


def dump(config: Mapping[str, Any], path: str) -> None:
    """Write a resolved config as YAML (or JSON when `path` ends in .json), atomically."""
    text = json.dumps(config, indent=2) + "\n" if path.endswith(".json") else \
        yaml.safe_dump(dict(config), sort_keys=False)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
