"""Classifier-based scores: Inception Score (Salimans et al. 2016) and Mode Score (Che et al. 2017).

Conventions (those of the original Inception Score code): the N samples are split into `splits`
consecutive parts of sizes differing by at most one, in the order given (pass `seed` to shuffle them
first, seeded); the score of a part uses that part's own marginal p(y); the reported spread is the
population standard deviation over parts (ddof=0, np.std's default). Everything is float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gancore.metrics._common import ArrayLike, check_finite, generator, to_tensor


@dataclass
class SplitScore:
    mean: float
    std: float  # population std over splits (ddof=0)
    splits: np.ndarray  # the score of each split


def _probabilities(value: ArrayLike, name: str, from_logits: bool) -> torch.Tensor:
    probs = to_tensor(value, name)
    if probs.dim() != 2 or probs.shape[1] < 2:
        raise ValueError(f"{name} must have shape (N, C) with C >= 2 classes, got {tuple(probs.shape)}")
    check_finite(probs, name)
    if from_logits:
        return torch.softmax(probs, dim=1)
    if bool((probs < 0).any()) or not torch.allclose(probs.sum(1), torch.ones(()).to(probs), atol=1e-4):
        raise ValueError(f"{name} must hold class probabilities (rows >= 0 summing to 1); pass "
                         "from_logits=True for logits")
    return probs / probs.sum(1, keepdim=True)


def _parts(probs: torch.Tensor, splits: int, seed: int | None) -> list[torch.Tensor]:
    n = probs.shape[0]
    if not 1 <= splits <= n:
        raise ValueError(f"splits must be between 1 and the number of samples ({n}), got {splits}")
    if seed is not None:
        probs = probs[torch.randperm(n, generator=generator(seed))]
    return [probs[k * n // splits:(k + 1) * n // splits] for k in range(splits)]


def _mean_kl_to_marginal(part: torch.Tensor) -> torch.Tensor:
    """E_x KL(p(y|x) || p(y)) with p(y) the part's marginal; 0 log 0 = 0."""
    marginal = part.mean(0, keepdim=True)
    return (torch.special.xlogy(part, part) - torch.special.xlogy(part, marginal)).sum(1).mean()


def _summarise(values: list[torch.Tensor]) -> SplitScore:
    scores = torch.stack(values).numpy()
    return SplitScore(float(scores.mean()), float(scores.std()), scores)


def inception_score(probs: ArrayLike, *, splits: int = 10, from_logits: bool = False,
                    seed: int | None = None) -> SplitScore:
    """IS = exp(E_x KL(p(y|x) || p(y))) per split, from classifier outputs (N, C) of generated samples.

    1 for a classifier that is equally unsure of every sample; C for confident, evenly spread classes.
    """
    probs = _probabilities(probs, "probs", from_logits)
    return _summarise([_mean_kl_to_marginal(part).exp() for part in _parts(probs, splits, seed)])


def mode_score(probs: ArrayLike, reference: ArrayLike, *, splits: int = 10, from_logits: bool = False,
               seed: int | None = None) -> SplitScore:
    """Mode Score = exp(E_x KL(p(y|x) || p(y)) - KL(p(y) || p*(y))) per split.

    p*(y) is the class marginal of real data: `reference` is either real samples' classifier outputs
    (M, C) (probabilities, or logits with from_logits) or the marginal itself (C,). The formula as
    printed by Che et al., E_x KL(p(y|x) || p*) - KL(p(y) || p*), reduces algebraically to log IS; this is
    the form of Xu et al. (2018, "An empirical study on evaluation metrics of GANs"): the Inception
    Score, lowered when the generated class marginal departs from the real one (0 if it puts mass on a
    class p* lacks).
    """
    probs = _probabilities(probs, "probs", from_logits)
    ref = to_tensor(reference, "reference")
    if ref.dim() == 2:
        real = _probabilities(ref, "reference", from_logits).mean(0)
    elif ref.dim() == 1 and not bool((ref < 0).any()) and abs(float(ref.sum()) - 1) < 1e-4:
        real = ref / ref.sum()
    else:
        raise ValueError(f"reference must be real classifier outputs (M, C) or a class marginal (C,) summing "
                         f"to 1, got shape {tuple(ref.shape)}")
    if real.shape[0] != probs.shape[1]:
        raise ValueError(f"reference has {real.shape[0]} classes, probs has {probs.shape[1]}")
    values = []
    for part in _parts(probs, splits, seed):
        marginal = part.mean(0)
        mismatch = (torch.special.xlogy(marginal, marginal) - torch.special.xlogy(marginal, real)).sum()
        values.append((_mean_kl_to_marginal(part) - mismatch).exp())
    return _summarise(values)
