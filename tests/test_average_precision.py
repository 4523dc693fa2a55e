"""VOC2007 11-point AP against cases worked out by hand from the devkit's definition."""

import numpy as np
import pytest

from simclr_tf.evaluation.average_precision import voc07_average_precision, voc07_mean_average_precision


def test_alternating_ranking():
    # Ranked: +, -, +, -. Recall .5, .5, 1, 1; precision 1, 1/2, 2/3, 1/2.
    # Levels 0 .. 0.5 (6 of them) reach precision 1; levels 0.6 .. 1 (5) reach 2/3 at most.
    ap = voc07_average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, -1, 1, -1]))
    assert ap == pytest.approx((6 * 1 + 5 * 2 / 3) / 11, abs=1e-12)


def test_difficult_images_are_left_out():
    # The top-scored image is difficult: ignored, the positive leads, so AP is 1. Counting it as a
    # negative would give precision 1/2 at every recall level (AP 0.5), as a positive 1 (two positives).
    assert voc07_average_precision(np.array([0.9, 0.8, 0.7]), np.array([0, 1, -1])) == 1.0


def test_positive_ranked_last():
    # Precision 1/4 at recall 1 is the best reached at every level.
    ap = voc07_average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([-1, -1, -1, 1]))
    assert ap == pytest.approx(0.25, abs=1e-12)


def test_interpolation_takes_the_best_precision_at_higher_recall():
    # Ranked: -, +, +, -, +. Recall 0, 1/3, 2/3, 2/3, 1; precision 0, 1/2, 2/3, 1/2, 3/5.
    # Levels 0 .. 0.6 (7) reach 2/3 (at recall 2/3); 0.7 .. 1 (4) reach 3/5.
    ap = voc07_average_precision(np.array([5.0, 4.0, 3.0, 2.0, 1.0]), np.array([-1, 1, 1, -1, 1]))
    assert ap == pytest.approx((7 * 2 / 3 + 4 * 3 / 5) / 11, abs=1e-12)


def test_ties_keep_the_input_order():
    # Equal scores: the devkit's (MATLAB) sort is stable, so the negative listed first ranks first.
    assert voc07_average_precision(np.array([0.5, 0.5]), np.array([-1, 1])) == pytest.approx(0.5)
    assert voc07_average_precision(np.array([0.5, 0.5]), np.array([1, -1])) == 1.0


def test_no_positive_is_nan_and_left_out_of_the_mean():
    scores = np.array([[0.9, 0.1, 0.3], [0.2, 0.8, 0.4], [0.1, 0.7, 0.5]])
    truth = np.array([[1, -1, 0], [-1, 1, -1], [-1, -1, -1]])
    mean, per_class = voc07_mean_average_precision(scores, truth)
    assert per_class[0] == 1.0
    # Class 1: ranked +, - (the third image, 0.7, is second): AP 1.
    assert per_class[1] == 1.0
    assert np.isnan(per_class[2])  # Its only non-negative image is difficult.
    assert mean == 1.0


def test_mean_over_classes():
    scores = np.array([[0.9, 0.6], [0.8, 0.7], [0.7, 0.8], [0.6, 0.9]])
    truth = np.array([[1, 1], [-1, -1], [1, -1], [-1, -1]])
    mean, per_class = voc07_mean_average_precision(scores, truth)
    assert per_class[0] == pytest.approx((6 + 5 * 2 / 3) / 11)
    assert per_class[1] == pytest.approx(0.25)
    assert mean == pytest.approx(((6 + 5 * 2 / 3) / 11 + 0.25) / 2)


@pytest.mark.parametrize("truth, message", [
    (np.array([1, 2]), "only 1"),
    (np.array([1, -1, 1]), "same 1-D shape"),
])
def test_bad_ground_truth(truth, message):
    with pytest.raises(ValueError, match=message):
        voc07_average_precision(np.array([0.1, 0.2]), truth)


def test_no_positive_anywhere_is_an_error():
    with pytest.raises(ValueError, match="no positive"):
        voc07_mean_average_precision(np.zeros([2, 2]), -np.ones([2, 2], np.int64))
