"""Evaluation of encoders: the distributed prediction pass, evaluation of a run's checkpoint, and
the protocols on frozen features (linear classifier, kNN, the L-BFGS transfer classifier;
SimCLR, arXiv:2002.05709 §4.2 and Appendix B.8), the kNN monitor, transfer."""

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
