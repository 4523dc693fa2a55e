"""The transfer protocol's linear classifier: L2-regularised multinomial logistic regression
fitted with L-BFGS, its regularisation chosen on a held-out part of the train split.

SimCLR appendix B.8: "an l2-regularized multinomial logistic regression classifier on
features extracted from the frozen pretrained network ... L-BFGS ... no data
augmentation ... regularization parameter from 45 logarithmically spaced values
between 1e-6 and 1e5", selected on a validation split, then refitted on train+validation.
Fitting is done by scikit-learn (a maintained, exact L-BFGS solver); the sweep is
warm-started from strong to weak regularisation, so it costs a few full fits.
"""

from __future__ import annotations

import dataclasses
import time
import warnings

import numpy as np

from simclr_tf.evaluation.linear_eval import standardize, topk_accuracy


@dataclasses.dataclass(frozen=True)
class LogisticConfig:
    """`l2_values`: candidate lambdas of mean cross-entropy + lambda/2 * ||W||^2 (the paper's grid
    by default). `validation_fraction` of each class of the train features is held out to pick one."""

    l2_values: tuple[float, ...] = tuple(np.logspace(-6, 5, 45))
    validation_fraction: float = 0.2
    max_iterations: int = 1000
    standardize: bool = True
    seed: int = 0

    def __post_init__(self):
        if not self.l2_values or min(self.l2_values) <= 0:
            raise ValueError(f"l2_values must be a non-empty list of values > 0, got {self.l2_values!r}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}")
        if self.max_iterations < 1:
            raise ValueError(f"max_iterations must be >= 1, got {self.max_iterations!r}")


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices): round(fraction * n_c) of each class c with n_c >= 2 held out
    (at least one, never all), chosen by a seeded permutation."""
    rng = np.random.default_rng(seed)
    held_out = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if members.size < 2:
            continue
        count = min(max(1, round(fraction * members.size)), members.size - 1)
        held_out.append(rng.permutation(members)[:count])
    held_out = np.sort(np.concatenate(held_out)) if held_out else np.array([], np.int64)
    return np.setdiff1d(np.arange(labels.size), held_out), held_out


def fit_logistic_regression(features, labels, l2, max_iterations, warm_start_from=None):
    # Imported at the first fit: scikit-learn takes seconds to import, which runs using only the
    # Adam classifier or kNN would pay for nothing.
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    # sklearn minimises C * sum(loss) + ||W||^2 / 2, i.e. mean loss + ||W||^2 / (2 C n).
    classifier = LogisticRegression(C=1.0 / (l2 * labels.size), solver="lbfgs", max_iter=max_iterations,
                                    warm_start=warm_start_from is not None)
    if warm_start_from is not None:
        classifier.coef_, classifier.intercept_ = warm_start_from.coef_.copy(), warm_start_from.intercept_.copy()
        classifier.classes_ = warm_start_from.classes_
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # Reported via n_iter_ instead.
        classifier.fit(features, labels)
    return classifier


def _logits(classifier, features: np.ndarray, num_classes: int) -> np.ndarray:
    """[N, num_classes] scores; classes absent from the fit get -inf (never predicted)."""
    decision = classifier.decision_function(features)
    if decision.ndim == 1:  # Two classes: sklearn returns one score, for classes_[1].
        decision = np.stack([-decision, decision], axis=1)
    scores = np.full((features.shape[0], num_classes), -np.inf, np.float64)
    scores[:, classifier.classes_] = decision
    return scores


def logistic_eval(train_features: np.ndarray, train_labels: np.ndarray, eval_features: np.ndarray,
                  eval_labels: np.ndarray, num_classes: int, config: LogisticConfig = LogisticConfig()) -> dict:
    """Sweeps the L2 strength on a class-stratified hold-out, refits on all train features with the
    best, and returns top-1/top-5 on the eval features with the sweep (JSON-ready)."""
    started = time.perf_counter()
    train_features = np.asarray(train_features, np.float32)
    eval_features = np.asarray(eval_features, np.float32)
    train_labels, eval_labels = np.asarray(train_labels, np.int64), np.asarray(eval_labels, np.int64)
    if np.unique(train_labels).size < 2:
        raise ValueError("train_labels: logistic regression needs at least 2 classes in the train split")
    fit_part, held_out = stratified_holdout(train_labels, config.validation_fraction, config.seed)
    sweep_train, sweep_eval = train_features[fit_part], train_features[held_out]
    if config.standardize:
        sweep_train, sweep_eval = standardize(sweep_train, sweep_eval)
    sweep, previous = [], None
    for l2 in sorted(config.l2_values, reverse=True):  # Strong to weak: each fit starts near the next.
        previous = fit_logistic_regression(sweep_train, train_labels[fit_part], l2, config.max_iterations, previous)
        logits = _logits(previous, sweep_eval, num_classes)
        sweep.append({"l2": float(l2), "validation_top1": topk_accuracy(logits, train_labels[held_out], 1)})
    best = max(sweep, key=lambda entry: (entry["validation_top1"], entry["l2"]))  # Ties: more regularised.

    if config.standardize:
        train_features, eval_features = standardize(train_features, eval_features)
    classifier = fit_logistic_regression(train_features, train_labels, best["l2"], config.max_iterations)
    logits = _logits(classifier, eval_features, num_classes)
    return {
        "classifier": "lbfgs_logistic_regression",
        "top1": topk_accuracy(logits, eval_labels, 1),
        "top5": topk_accuracy(logits, eval_labels, min(5, num_classes)),
        "l2": best["l2"],
        "validation_top1": best["validation_top1"],
        "sweep": sweep,
        "num_train": int(train_labels.size),
        "num_eval": int(eval_labels.size),
        "feature_dim": int(train_features.shape[1]),
        "seconds": time.perf_counter() - started,
    }
