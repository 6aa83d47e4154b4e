"""The thin trainer: one loop for every GAN family (see gancore.families.base for the contract)."""

from gancore.train.checkpoint import ConfigMismatchError
from gancore.train.config import LogConfig, MetricsConfig, TrainConfig, build_config, default_config, resolve
from gancore.train.trainer import NonFiniteLossError, RunExistsError, Trainer

__all__ = ["ConfigMismatchError", "LogConfig", "MetricsConfig", "NonFiniteLossError", "RunExistsError",
           "TrainConfig", "Trainer", "build_config", "default_config", "resolve"]
