"""Inception Score and Mode Score on cases whose values can be worked out by hand."""

import math

import numpy as np
import pytest
import torch

from gancore.metrics.scores import inception_score, mode_score


def test_unsure_classifier_scores_one():
    result = inception_score(np.full((20, 5), 0.2), splits=4)
    assert result.mean == pytest.approx(1.0) and result.std == pytest.approx(0.0, abs=1e-12)


def test_confident_balanced_classes_score_the_class_count():
    probs = np.eye(4)[np.arange(40) % 4]
    assert inception_score(probs, splits=1).mean == pytest.approx(4.0)


def test_consecutive_splits_and_population_std():
    # Splits are consecutive: {A, B} scores 2, {A, A} scores 1; std over splits uses ddof=0.
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    result = inception_score(probs, splits=2)
    np.testing.assert_allclose(result.splits, [2.0, 1.0])
    assert (result.mean, result.std) == (pytest.approx(1.5), pytest.approx(0.5))


def test_mixed_confidence_by_hand():
    # p(y) = (3/4, 1/4); KL terms are log(4/3)/2 and log(4/3), so IS = (4/3)^(3/4).
    probs = np.array([[0.5, 0.5], [1.0, 0.0]])
    assert inception_score(probs, splits=1).mean == pytest.approx((4 / 3) ** 0.75, rel=1e-12)
    logits = torch.log(torch.tensor([[0.5, 0.5], [0.9, 0.1]]))
    expected = inception_score(np.array([[0.5, 0.5], [0.9, 0.1]]), splits=1).mean
    assert inception_score(logits, splits=1, from_logits=True).mean == pytest.approx(expected, rel=1e-7)


def test_seeded_shuffle_is_reproducible(rng):
    probs = rng.dirichlet(np.ones(10) * 0.3, size=200)
    a = inception_score(probs, splits=5, seed=3)
    b = inception_score(probs, splits=5, seed=3)
    c = inception_score(probs, splits=5)
    np.testing.assert_array_equal(a.splits, b.splits)
    assert not np.array_equal(a.splits, c.splits)


def test_mode_score_by_hand():
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    # Matching marginals: the Mode Score is the Inception Score.
    assert mode_score(probs, np.array([0.5, 0.5]), splits=1).mean == pytest.approx(2.0)
    # p(y) = (1/2, 1/2) against p* = (3/4, 1/4): KL = log(4/3)/2, so MS = 2 (3/4)^(1/2) = sqrt(3).
    real = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert mode_score(probs, real, splits=1).mean == pytest.approx(math.sqrt(3), rel=1e-12)
    # Mass on a class the real data lacks scores 0.
    assert mode_score(probs, np.array([1.0, 0.0]), splits=1).mean == 0.0


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="rows >= 0 summing to 1"):
        inception_score(np.array([[0.5, 0.6], [0.5, 0.5]]))
    with pytest.raises(ValueError, match="splits must be between 1 and the number of samples"):
        inception_score(np.full((3, 2), 0.5), splits=4)
    with pytest.raises(ValueError, match=r"probs must have shape \(N, C\)"):
        inception_score(np.ones(4))
    with pytest.raises(ValueError, match="reference has 3 classes, probs has 2"):
        mode_score(np.full((3, 2), 0.5), np.full(3, 1 / 3), splits=1)
