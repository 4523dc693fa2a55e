"""PASCAL VOC2007 classification metric: 11-point interpolated average precision per class, and its mean.

The VOC2007 devkit (VOCevalcls.m, VOCap07): per class, rank the images by score, leave out the
images whose only objects of the class are marked "difficult", and average over recall levels
t = 0, 0.1, ..., 1 the highest precision reached at recall >= t (0 when recall t is never reached).
SimCLR (arXiv:2002.05709, Appendix B.8) reports VOC2007 transfer as this mAP.
"""

from __future__ import annotations

import numpy as np

# Ground truth per image and class, as the devkit's classification files write it.
POSITIVE, DIFFICULT, NEGATIVE = 1, 0, -1
RECALL_LEVELS = np.linspace(0.0, 1.0, 11)


def voc07_average_precision(scores: np.ndarray, ground_truth: np.ndarray) -> float:
    """11-point AP of one class. `ground_truth` holds POSITIVE, DIFFICULT (ignored) or NEGATIVE per image;
    ties in `scores` keep the images' order, as MATLAB's sort does. NaN when no image is positive."""
    scores, ground_truth = np.asarray(scores, np.float64), np.asarray(ground_truth)
    if scores.shape != ground_truth.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and ground_truth {ground_truth.shape} must be the same 1-D shape")
    if not np.isin(ground_truth, (POSITIVE, DIFFICULT, NEGATIVE)).all():
        raise ValueError("ground_truth must hold only 1 (positive), 0 (difficult) and -1 (negative)")
    num_positive = int(np.sum(ground_truth == POSITIVE))
    if num_positive == 0:
        return float("nan")
    ranked = ground_truth[np.argsort(-scores, kind="stable")]
    ranked = ranked[ranked != DIFFICULT]
    true_positives = np.cumsum(ranked == POSITIVE)
    precision = true_positives / np.arange(1, ranked.size + 1)
    recall = true_positives / num_positive
    reached = [precision[recall >= level] for level in RECALL_LEVELS]
    return float(np.mean([values.max() if values.size else 0.0 for values in reached]))


def voc07_mean_average_precision(scores: np.ndarray, ground_truth: np.ndarray) -> tuple[float, np.ndarray]:
    """(mAP over the classes that have a positive image, per-class APs with NaN for the others)
    of scores and ground truth [num_images, num_classes]."""
    scores, ground_truth = np.asarray(scores), np.asarray(ground_truth)
    if scores.shape != ground_truth.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and ground_truth {ground_truth.shape} must be the same "
                         f"[num_images, num_classes] shape")
    per_class = np.array([voc07_average_precision(scores[:, c], ground_truth[:, c])
                          for c in range(scores.shape[1])])
    if np.isnan(per_class).all():
        raise ValueError("ground_truth has no positive image for any class")
    return float(np.nanmean(per_class)), per_class
