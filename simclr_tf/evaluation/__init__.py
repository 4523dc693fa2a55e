"""Evaluation protocols on a frozen encoder: offline linear evaluation (SPEC §6)."""

from simclr_tf.evaluation.knn import KNNConfig, KNNResult, knn_eval, knn_scores
from simclr_tf.evaluation.linear_eval import (
    LinearEvalConfig,
    LinearEvalResult,
    extract_features,
    linear_eval,
    standardize,
    topk_accuracy,
)

__all__ = [
    "LinearEvalConfig", "LinearEvalResult", "extract_features", "linear_eval", "standardize",
    "topk_accuracy", "KNNConfig", "KNNResult", "knn_eval", "knn_scores",
]
