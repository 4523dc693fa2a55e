"""The transfer protocol on multi-label data (PASCAL VOC2007): one L2-regularised logistic classifier per
class on frozen features, scored by the VOC2007 11-point mAP.

SimCLR (arXiv:2002.05709, Appendix B.8) evaluates VOC2007 like the single-label tasks (L-BFGS, the
L2 strength chosen from 45 log-spaced values on a held-out part of train, then refitted on all of it)
with per-class logistic regression and mAP. Here one L2 strength serves every class, chosen by the
held-out mAP. An image whose objects of a class are all marked difficult is left out of that
class's fit and, as the devkit does, of its AP.
"""

from __future__ import annotations

import time

import numpy as np

from simclr_tf.evaluation.average_precision import (
    DIFFICULT,
    NEGATIVE,
    POSITIVE,
    voc07_mean_average_precision,
)
from simclr_tf.evaluation.linear_eval import standardize
from simclr_tf.evaluation.logistic import LogisticConfig, fit_logistic_regression


def random_holdout(num_examples: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit indices, held-out indices), round(fraction * n) held out (at least one, never all) by a seeded
    permutation: multi-label images cannot be stratified by one class."""
    if num_examples < 2:
        raise ValueError(f"the train split has {num_examples} image(s); choosing the L2 strength needs at least 2")
    count = min(max(1, round(fraction * num_examples)), num_examples - 1)
    order = np.random.default_rng(seed).permutation(num_examples)
    return np.sort(order[count:]), np.sort(order[:count])


class _PerClassClassifiers:
    """One binary classifier per class; a class with a single outcome in its fit data scores a constant
    (+1 all positive, -1 all negative) instead."""

    def __init__(self, features: np.ndarray, ground_truth: np.ndarray, l2: float, max_iterations: int,
                 warm_start_from: "_PerClassClassifiers | None" = None):
        self.classifiers = []  # Per class: a fitted classifier, or the constant score.
        for c in range(ground_truth.shape[1]):
            used = ground_truth[:, c] != DIFFICULT
            targets = (ground_truth[used, c] == POSITIVE).astype(np.int64)
            if np.unique(targets).size < 2:
                self.classifiers.append(1.0 if targets.size and targets[0] else -1.0)
                continue
            # The sweep's fits share the ground truth, so a fitted class was fitted at the previous strength too.
            previous = warm_start_from.classifiers[c] if warm_start_from else None
            self.classifiers.append(fit_logistic_regression(features[used], targets, l2, max_iterations, previous))

    def scores(self, features: np.ndarray) -> np.ndarray:
        return np.stack([np.full(features.shape[0], classifier) if isinstance(classifier, float)
                         else classifier.decision_function(features) for classifier in self.classifiers], axis=1)


def multilabel_logistic_eval(train_features: np.ndarray, train_ground_truth: np.ndarray, eval_features: np.ndarray,
                             eval_ground_truth: np.ndarray, config: LogisticConfig = LogisticConfig()) -> dict:
    """Sweeps the L2 strength on a held-out part of train by mAP, refits on all train images with the best,
    and returns the eval mAP, the per-class APs and the sweep (JSON-ready). Ground truth is [N, classes]
    of 1 (positive), 0 (difficult) and -1 (negative)."""
    started = time.perf_counter()
    train_features = np.asarray(train_features, np.float32)
    eval_features = np.asarray(eval_features, np.float32)
    train_ground_truth, eval_ground_truth = np.asarray(train_ground_truth), np.asarray(eval_ground_truth)
    for name, truth in (("train_ground_truth", train_ground_truth), ("eval_ground_truth", eval_ground_truth)):
        if truth.ndim != 2 or not np.isin(truth, (POSITIVE, DIFFICULT, NEGATIVE)).all():
            raise ValueError(f"{name} must be [num_images, num_classes] of 1, 0 and -1, got shape {truth.shape}")
    if train_ground_truth.shape[1] != eval_ground_truth.shape[1]:
        raise ValueError(f"train has {train_ground_truth.shape[1]} classes, eval {eval_ground_truth.shape[1]}")

    fit_part, held_out = random_holdout(train_ground_truth.shape[0], config.validation_fraction, config.seed)
    sweep_train, sweep_eval = train_features[fit_part], train_features[held_out]
    if config.standardize:
        sweep_train, sweep_eval = standardize(sweep_train, sweep_eval)
    sweep, previous = [], None
    for l2 in sorted(config.l2_values, reverse=True):  # Strong to weak: each fit starts near the next.
        previous = _PerClassClassifiers(sweep_train, train_ground_truth[fit_part], l2, config.max_iterations,
                                        previous)
        validation_map, _ = voc07_mean_average_precision(previous.scores(sweep_eval), train_ground_truth[held_out])
        sweep.append({"l2": float(l2), "validation_map": validation_map})
    best = max(sweep, key=lambda entry: (entry["validation_map"], entry["l2"]))  # Ties: more regularised.

    if config.standardize:
        train_features, eval_features = standardize(train_features, eval_features)
    classifiers = _PerClassClassifiers(train_features, train_ground_truth, best["l2"], config.max_iterations)
    mean_ap, per_class = voc07_mean_average_precision(classifiers.scores(eval_features), eval_ground_truth)
    return {
        "classifier": "lbfgs_logistic_regression_per_class",
        "map": mean_ap,
        "per_class_ap": [None if np.isnan(ap) else float(ap) for ap in per_class],
        "l2": best["l2"],
        "validation_map": best["validation_map"],
        "sweep": sweep,
        "num_train": int(train_ground_truth.shape[0]),
        "num_eval": int(eval_ground_truth.shape[0]),
        "feature_dim": int(train_features.shape[1]),
        "seconds": time.perf_counter() - started,
    }
