"""Weighted kNN monitor: how well frozen features classify, with nothing to train.

Wu et al. 2018, "Unsupervised Feature Learning via Non-Parametric Instance
Discrimination" §3.4: L2-normalise the features, take each query's k most
cosine-similar bank (train) examples, let each vote for its label with weight
exp(sim / temperature), and rank classes by their summed weight. No optimisation,
so it is a cheap quality signal to log during pre-training; linear evaluation
remains the number to report.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from simclr_tf.arg_checks import fail, is_int
from simclr_tf.evaluation.linear_eval import topk_accuracy


@dataclasses.dataclass(frozen=True)
class KNNConfig:
    """Neighbour count, vote temperature and memory bound of the kNN monitor.

    k=200, temperature=0.1 are what SimCLR/MoCo kNN monitors commonly use; Wu et
    al. used k=200 with temperature 0.07. At most `query_chunk` x num_bank
    similarities exist at once, so memory does not grow with the query count.
    """

    k: int = 200
    temperature: float = 0.1
    query_chunk: int = 1024

    def __post_init__(self):
        if not is_int(self.k) or self.k < 1:
            fail("k", self.k, "must be an int >= 1")
        if (not isinstance(self.temperature, (int, float, np.integer, np.floating))
                or isinstance(self.temperature, bool) or not self.temperature > 0
                or not np.isfinite(self.temperature)):
            fail("temperature", self.temperature, "must be a finite number > 0")
        if not is_int(self.query_chunk) or self.query_chunk < 1:
            fail("query_chunk", self.query_chunk, "must be an int >= 1")


class KNNResult(NamedTuple):
    """Accuracies in [0, 1] on the queries; `k` is the number of neighbours actually
    used (min(config.k, num_bank)); `seconds` is wall time of `knn_eval`."""

    top1: float
    top5: float
    k: int
    temperature: float
    num_bank: int
    num_query: int
    seconds: float

    def as_dict(self) -> dict:
        """Plain Python scalars (numpy scalars are not JSON-serialisable), ready for json.dump."""
        floats = ("top1", "top5", "temperature", "seconds")
        return {k: float(v) if k in floats else int(v) for k, v in self._asdict().items()}


def _validate_features(name: str, features: Any) -> np.ndarray:
    features = np.asarray(features)
    if not (np.issubdtype(features.dtype, np.floating)
            or np.issubdtype(features.dtype, np.integer)):
        fail(name, features.dtype, "must be a numeric array")
    if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] == 0:
        fail(name, features.shape, "must have shape [N > 0, D > 0]")
    features = features.astype(np.float32)
    if not np.isfinite(features).all():
        fail(name, "non-finite values", "must be finite")
    return features


def _validate_labels(name: str, labels: Any, num_examples: int, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (num_examples,):
        fail(name, labels.shape, f"must have shape [{num_examples}] (one label per feature row)")
    if not np.issubdtype(labels.dtype, np.integer):
        fail(name, labels.dtype, "must be integers")
    if labels.min() < 0 or labels.max() >= num_classes:
        fail(name, (int(labels.min()), int(labels.max())),
              f"(min, max) must lie in [0, num_classes={num_classes})")
    return labels.astype(np.int64)


def _validate_common(bank_features, bank_labels, query_features, num_classes, config):
    if not isinstance(config, KNNConfig):
        fail("config", config, "must be a KNNConfig")
    if not is_int(num_classes) or num_classes < 1:
        fail("num_classes", num_classes, "must be an int >= 1")
    bank_features = _validate_features("bank_features", bank_features)
    query_features = _validate_features("query_features", query_features)
    if query_features.shape[1] != bank_features.shape[1]:
        fail("query_features", query_features.shape,
              f"must have the same feature dim as bank_features {bank_features.shape}")
    bank_labels = _validate_labels("bank_labels", bank_labels, bank_features.shape[0], num_classes)
    return bank_features, bank_labels, query_features


def _scores(bank: np.ndarray, bank_labels: np.ndarray, queries: np.ndarray, num_classes: int,
            config: KNNConfig) -> np.ndarray:
    """The vote sums, one query chunk at a time (inputs already validated)."""
    bank = tf.math.l2_normalize(tf.constant(bank), axis=1)
    bank_labels = tf.constant(bank_labels)
    k = min(config.k, bank.shape[0])
    chunks = []
    for start in range(0, queries.shape[0], config.query_chunk):
        chunk = tf.math.l2_normalize(tf.constant(queries[start:start + config.query_chunk]), axis=1)
        similarity = tf.matmul(chunk, bank, transpose_b=True)  # [chunk, num_bank]
        # top_k puts the lower bank index first among equal similarities, so the
        # neighbour set is deterministic.
        top_similarity, top_index = tf.math.top_k(similarity, k=k)
        # float64 for the votes: exp(sim / T) overflows float32 once T < 0.0113,
        # float64 only below ~0.0014.
        weights = tf.exp(tf.cast(top_similarity, tf.float64) / config.temperature)
        # A segment sum into row * C + label instead of a one-hot [chunk, k, C]
        # tensor, which at ImageNet scale (1024 x 200 x 1000) would be ~800 MB.
        rows = tf.range(tf.shape(chunk)[0], dtype=tf.int64)[:, None]
        segments = rows * num_classes + tf.gather(bank_labels, top_index)
        summed = tf.math.unsorted_segment_sum(
            tf.reshape(weights, [-1]), tf.reshape(segments, [-1]),
            num_segments=tf.shape(chunk)[0] * num_classes)
        chunks.append(tf.reshape(summed, [-1, num_classes]).numpy())
    scores = np.concatenate(chunks)
    if not np.isfinite(scores).all():
        fail("temperature", config.temperature, "overflows exp(sim / temperature); use >= 0.002")
    return scores


def knn_scores(
    bank_features: np.ndarray,
    bank_labels: np.ndarray,
    query_features: np.ndarray,
    num_classes: int,
    config: KNNConfig = KNNConfig(),
) -> np.ndarray:
    """Class scores float64 [Q, C]: sum of exp(cos / temperature) over each query's k neighbours.

    Features of any scale are L2-normalised here (an all-zero row stays zero, so
    its similarities are 0). When config.k exceeds the bank size the whole bank
    votes; that is not an error. A class with no neighbour among the k scores 0.
    """
    bank_features, bank_labels, query_features = _validate_common(
        bank_features, bank_labels, query_features, num_classes, config)
    return _scores(bank_features, bank_labels, query_features, num_classes, config)


def knn_eval(
    bank_features: np.ndarray,
    bank_labels: np.ndarray,
    query_features: np.ndarray,
    query_labels: np.ndarray,
    num_classes: int,
    config: KNNConfig = KNNConfig(),
) -> KNNResult:
    """Weighted kNN top-1/top-5 of the queries against the labelled bank.

    Classes with equal scores rank the lower class id first (`topk_accuracy`),
    rather than all counting as hits as with tf.math.in_top_k; this matters for
    the many classes that get no vote and score 0. Top-5 is top-min(5, num_classes).
    """
    start = time.perf_counter()
    bank_features, bank_labels, query_features = _validate_common(
        bank_features, bank_labels, query_features, num_classes, config)
    query_labels = _validate_labels(
        "query_labels", query_labels, query_features.shape[0], num_classes)
    scores = _scores(bank_features, bank_labels, query_features, num_classes, config)
    return KNNResult(
        top1=topk_accuracy(scores, query_labels, 1),
        top5=topk_accuracy(scores, query_labels, min(5, num_classes)),
        k=min(config.k, bank_features.shape[0]),
        temperature=float(config.temperature),
        num_bank=bank_features.shape[0],
        num_query=query_features.shape[0],
        seconds=time.perf_counter() - start,
    )
