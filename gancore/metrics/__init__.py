"""Evaluation metrics for GANs: FID and its variants, IS, Mode Score, KID, MMD, Wasserstein, 1-NN,
precision/recall, the feature extractors they run on, and streaming feature statistics.

Importing this package needs neither triton nor the FID Inception weights: the Triton kernels load on
the first CUDA call, the weights when an InceptionV3 is built.
"""

from gancore.metrics.distances import KID, kid, mmd2, wasserstein_distance
from gancore.metrics.extractors import BuiltinExtractor, compute_stats
from gancore.metrics.frechet import fid_from_features, frechet_distance
from gancore.metrics.inception import InceptionV3FID, load_fid_inception
from gancore.metrics.nearest import (
    NearestNeighbourAccuracy,
    PrecisionRecall,
    nearest_neighbour_accuracy,
    precision_recall,
)
from gancore.metrics.scores import SplitScore, inception_score, mode_score
from gancore.metrics.stats import FeatureStats
from gancore.metrics.variants import (
    BootstrapFID,
    FIDInfinity,
    IntraFID,
    fid_bootstrap,
    fid_infinity,
    fid_many,
    intra_fid,
)

__all__ = [
    "KID",
    "BootstrapFID",
    "BuiltinExtractor",
    "FIDInfinity",
    "FeatureStats",
    "IntraFID",
    "NearestNeighbourAccuracy",
    "PrecisionRecall",
    "InceptionV3FID",
    "SplitScore",
    "compute_stats",
    "fid_bootstrap",
    "fid_from_features",
    "fid_infinity",
    "fid_many",
    "frechet_distance",
    "inception_score",
    "intra_fid",
    "kid",
    "load_fid_inception",
    "mmd2",
    "mode_score",
    "nearest_neighbour_accuracy",
    "precision_recall",
    "wasserstein_distance",
]
