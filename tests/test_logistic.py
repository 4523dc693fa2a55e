"""The transfer protocol's L-BFGS logistic regression (simclr_tf/evaluation/logistic.py)."""

import numpy as np
import pytest

from simclr_tf.evaluation.logistic import LogisticConfig, fit_logistic_regression, logistic_eval, stratified_holdout

SMALL_GRID = LogisticConfig(l2_values=(1e-4, 1e-2, 1.0), validation_fraction=0.25)


def _clusters(num_classes: int, per_class: int, dim: int, spread: float, seed: int):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, dim)) * 5
    labels = np.repeat(np.arange(num_classes), per_class)
    return (centres[labels] + spread * rng.normal(size=(labels.size, dim))).astype(np.float32), labels


def test_stratified_holdout_takes_the_share_of_every_class():
    labels = np.array([0] * 10 + [1] * 4 + [2] * 1 + [3] * 2)
    kept, held_out = stratified_holdout(labels, 0.25, seed=3)
    assert np.bincount(labels[held_out], minlength=4).tolist() == [2, 1, 0, 1]  # round(2.5)=2, 1, never all, >=1
    assert sorted(np.concatenate([kept, held_out]).tolist()) == list(range(labels.size))
    again = stratified_holdout(labels, 0.25, seed=3)[1]
    np.testing.assert_array_equal(held_out, again)


def test_l2_strength_means_mean_cross_entropy_plus_half_lambda_w_squared():
    # At the optimum the gradient of mean CE + l2/2 ||W||^2 (bias unpenalised) is zero; computed here in numpy.
    features, labels = _clusters(3, 40, 4, spread=3.0, seed=0)
    l2 = 0.05
    classifier = fit_logistic_regression(features.astype(np.float64), labels, l2, max_iterations=5000)
    logits = features @ classifier.coef_.T + classifier.intercept_
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    error = probabilities - np.eye(3)[labels]
    gradient_w = error.T @ features / labels.size + l2 * classifier.coef_
    gradient_b = error.mean(axis=0)
    assert np.abs(gradient_w).max() < 1e-3 and np.abs(gradient_b).max() < 1e-3
    assert np.abs(classifier.coef_).max() > 0.05  # Not the trivial solution.


def test_separable_clusters_are_perfect_and_shuffled_labels_are_chance():
    train, train_labels = _clusters(4, 60, 8, spread=0.5, seed=1)
    test, test_labels = _clusters(4, 50, 8, spread=0.5, seed=1)
    result = logistic_eval(train, train_labels, test, test_labels, 4, SMALL_GRID)
    assert result["top1"] == 1.0 and result["validation_top1"] == 1.0
    assert [entry["l2"] for entry in result["sweep"]] == [1.0, 1e-2, 1e-4]

    shuffled = np.random.default_rng(2).permutation(train_labels)
    chance = logistic_eval(train, shuffled, test, test_labels, 4, SMALL_GRID)
    # 200 eval examples, chance 0.25: 4 standard deviations is 0.12.
    assert abs(chance["top1"] - 0.25) < 0.13
    assert chance["top5"] >= chance["top1"]


def test_two_classes_and_a_class_missing_from_train():
    train, train_labels = _clusters(2, 30, 3, spread=0.3, seed=4)
    test, test_labels = _clusters(2, 20, 3, spread=0.3, seed=4)
    result = logistic_eval(train, train_labels, test, test_labels, 3, SMALL_GRID)  # Class 2 never seen.
    assert result["top1"] == 1.0 and result["top5"] == 1.0


def test_bad_configs_are_named():
    with pytest.raises(ValueError, match="validation_fraction"):
        LogisticConfig(validation_fraction=1.0)
    with pytest.raises(ValueError, match="l2_values"):
        LogisticConfig(l2_values=(0.0,))
    with pytest.raises(ValueError, match="train_labels"):
        logistic_eval(np.zeros((4, 2)), np.zeros(4, int), np.zeros((2, 2)), np.zeros(2, int), 2, SMALL_GRID)
