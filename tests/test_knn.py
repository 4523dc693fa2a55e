"""Tests for simclr_tf/evaluation/knn.py: hand-computed votes, a NumPy oracle, clusters."""

import json

import numpy as np
import pytest

from simclr_tf.evaluation.knn import KNNConfig, KNNResult, knn_eval, knn_scores

# Hand case: 2-D points on the unit circle, given by angle (degrees) and label.
BANK_DEGREES = np.array([0.0, 90.0, 180.0, 60.0, 270.0, 120.0])
BANK_LABELS = np.array([0, 1, 2, 0, 2, 1])
QUERY_DEGREES = np.array([30.0, 200.0, 100.0])
T = 0.5


def _circle(degrees, radius=1.0):
    radians = np.radians(degrees)
    return (radius * np.stack([np.cos(radians), np.sin(radians)], axis=1)).astype(np.float32)


def _vote(degrees_apart):
    return np.exp(np.cos(np.radians(degrees_apart)) / T)


def _numpy_scores(bank, bank_labels, queries, num_classes, k, temperature):
    """Independent oracle: float64 cosines, a full stable sort per query, a loop over neighbours."""
    bank = bank.astype(np.float64) / np.linalg.norm(bank.astype(np.float64), axis=1, keepdims=True)
    scores = np.zeros((len(queries), num_classes))
    for q, query in enumerate(queries.astype(np.float64)):
        similarity = bank @ (query / np.linalg.norm(query))
        for j in np.argsort(-similarity, kind="stable")[:k]:
            scores[q, bank_labels[j]] += np.exp(similarity[j] / temperature)
    return scores


def _numpy_topk(scores, labels, k):
    order = np.argsort(-scores, axis=1, kind="stable")
    return float(np.mean((order[:, :k] == labels[:, None]).any(axis=1)))


def _clusters(n, num_classes=10, dim=32, noise=0.1, seed=0):
    """Class mean (random direction, norm 5, same for every seed) + Gaussian noise."""
    means = np.random.default_rng(42).normal(size=(num_classes, dim))
    means *= 5.0 / np.linalg.norm(means, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=n)
    return (means[labels] + noise * rng.normal(size=(n, dim))).astype(np.float32), labels


def test_hand_computed_scores_k3():
    # Query 2 has radius 3: only directions matter.
    queries = np.concatenate([_circle(QUERY_DEGREES[:2]), _circle(QUERY_DEGREES[2:], radius=3.0)])
    scores = knn_scores(_circle(BANK_DEGREES), BANK_LABELS, queries, num_classes=3,
                        config=KNNConfig(k=3, temperature=T))
    expected = np.array([
        # 30 deg: neighbours 0 deg (30 apart, class 0), 60 deg (30, class 0), 90 deg (60, class 1).
        [_vote(30) + _vote(30), _vote(60), 0.0],
        # 200 deg: neighbours 180 (20, class 2), 270 (70, class 2), 120 (80, class 1).
        [0.0, _vote(80), _vote(20) + _vote(70)],
        # 100 deg: neighbours 90 (10, class 1), 120 (20, class 1), 60 (40, class 0).
        [_vote(40), _vote(10) + _vote(20), 0.0],
    ])
    np.testing.assert_allclose(scores, expected, rtol=1e-5)


def test_k_larger_than_bank_uses_whole_bank():
    scores = knn_scores(_circle(BANK_DEGREES), BANK_LABELS, _circle([30.0]), num_classes=3,
                        config=KNNConfig(k=50, temperature=T))
    # Angles from 30 deg to 0, 90, 180, 60, 270, 120 deg: 30, 60, 150, 30, 120, 90.
    expected = [[_vote(30) + _vote(30), _vote(60) + _vote(90), _vote(150) + _vote(120)]]
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    result = knn_eval(_circle(BANK_DEGREES), BANK_LABELS, _circle([30.0]), [0], 3,
                      KNNConfig(k=50, temperature=T))
    assert result.k == 6 and result.num_bank == 6 and result.num_query == 1


def test_hand_case_accuracies_and_top5_over_three_classes():
    bank, queries = _circle(BANK_DEGREES), _circle(QUERY_DEGREES)
    config = KNNConfig(k=3, temperature=T)
    # Predictions are classes 0, 2, 1 (see the hand-computed scores).
    assert knn_eval(bank, BANK_LABELS, queries, [0, 2, 1], 3, config).top1 == 1.0
    result = knn_eval(bank, BANK_LABELS, queries, [0, 1, 1], 3, config)
    assert result.top1 == pytest.approx(2 / 3)
    # top-5 is top-min(5, 3): every class is in it.
    assert result.top5 == 1.0


@pytest.mark.parametrize("k, temperature, query_chunk", [
    (1, 0.1, 5), (10, 0.07, 7), (97, 1.0, 23), (200, 0.2, 1000), (13, 0.05, 1),
])
def test_matches_numpy_oracle(k, temperature, query_chunk):
    rng = np.random.default_rng(k)
    bank, queries = rng.normal(size=(97, 8)), rng.normal(size=(23, 8))
    bank_labels, query_labels = rng.integers(0, 7, size=97), rng.integers(0, 7, size=23)
    config = KNNConfig(k=k, temperature=temperature, query_chunk=query_chunk)
    expected = _numpy_scores(bank, bank_labels, queries, 7, k, temperature)
    np.testing.assert_allclose(knn_scores(bank, bank_labels, queries, 7, config), expected,
                               rtol=1e-5)
    result = knn_eval(bank, bank_labels, queries, query_labels, 7, config)
    assert result.top1 == _numpy_topk(expected, query_labels, 1)
    assert result.top5 == _numpy_topk(expected, query_labels, 5)


def test_separated_clusters_are_perfect_and_shuffled_labels_are_chance():
    bank, bank_labels = _clusters(500, seed=0)
    queries, query_labels = _clusters(1000, seed=1)
    config = KNNConfig(k=20)
    assert knn_eval(bank, bank_labels, queries, query_labels, 10, config).top1 == 1.0
    # Labels unrelated to the features: each query is right with probability 1/10,
    # so top-1 lies within 4.5 binomial standard deviations of 0.1 (p ~ 7e-6 to fail).
    shuffled = np.random.default_rng(7).permutation(query_labels)
    top1 = knn_eval(bank, bank_labels, queries, shuffled, 10, config).top1
    tolerance = 4.5 * np.sqrt(0.1 * 0.9 / len(queries))
    assert abs(top1 - 0.1) < tolerance


def test_top5_at_least_top1_on_overlapping_clusters():
    bank, bank_labels = _clusters(400, noise=1.5, seed=2)
    queries, query_labels = _clusters(300, noise=1.5, seed=3)
    result = knn_eval(bank, bank_labels, queries, query_labels, 10, KNNConfig(k=50))
    # Overlap makes top-1 imperfect, so top-5 >= top-1 is a real check here.
    assert 0.1 < result.top1 < 1.0
    assert result.top1 < result.top5 <= 1.0


@pytest.mark.parametrize("bank_scale, query_scale", [(1e-3, 1.0), (1.0, 1e3), (250.0, 0.01)])
def test_positive_scaling_changes_nothing(bank_scale, query_scale):
    rng = np.random.default_rng(0)
    bank, queries = rng.normal(size=(60, 6)), rng.normal(size=(15, 6))
    bank_labels = rng.integers(0, 4, size=60)
    config = KNNConfig(k=9, temperature=0.1, query_chunk=4)
    reference = knn_scores(bank, bank_labels, queries, 4, config)
    scaled = knn_scores(bank_scale * bank, bank_labels, query_scale * queries, 4, config)
    np.testing.assert_allclose(scaled, reference, rtol=1e-5)


def test_result_as_dict_is_json_friendly():
    result = KNNResult(np.float64(0.5), 0.75, np.int64(200), np.float32(0.25), 10, 4, 1.25)
    assert json.loads(json.dumps(result.as_dict())) == {
        "top1": 0.5, "top5": 0.75, "k": 200, "temperature": 0.25, "num_bank": 10,
        "num_query": 4, "seconds": 1.25}


@pytest.mark.parametrize("field, value", [
    ("k", 0), ("k", 2.0), ("k", True), ("temperature", 0.0), ("temperature", -0.1),
    ("temperature", float("nan")), ("temperature", "0.1"), ("query_chunk", 0),
])
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        KNNConfig(**{field: value})


def _good_args():
    rng = np.random.default_rng(0)
    return dict(bank_features=rng.normal(size=(10, 4)), bank_labels=np.arange(10) % 3,
                query_features=rng.normal(size=(5, 4)), query_labels=np.arange(5) % 3,
                num_classes=3)


@pytest.mark.parametrize("name, value", [
    ("bank_features", np.zeros(10)),
    ("bank_features", np.zeros((0, 4))),
    ("bank_features", np.full((10, 4), np.nan)),
    ("query_features", np.zeros((5, 3))),
    ("query_features", np.array([["a"] * 4] * 5)),
    ("bank_labels", np.arange(9) % 3),
    ("bank_labels", np.full(10, 3)),
    ("bank_labels", np.full(10, -1)),
    ("bank_labels", np.zeros(10, np.float32)),
    ("query_labels", np.arange(4) % 3),
    ("query_labels", np.zeros((5, 1), np.int64)),
    ("num_classes", 0),
    ("num_classes", 3.0),
])
def test_bad_inputs_name_the_argument(name, value):
    args = _good_args()
    knn_eval(**args)  # the unmodified arguments are accepted
    args[name] = value
    with pytest.raises(ValueError, match=name):
        knn_eval(**args)
