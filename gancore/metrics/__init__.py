"""Evaluation metrics for GANs: FID and its variants, IS, KID, MMD, Wasserstein, 1-NN, precision/recall."""

from gancore.metrics.frechet import fid_from_features, frechet_distance
from gancore.metrics.stats import FeatureStats

__all__ = ["FeatureStats", "fid_from_features", "frechet_distance"]
