"""Tests for simclr_tf/evaluation/linear_eval.py: NumPy oracles and constructed feature sets."""

import json

import numpy as np
import pytest
import tensorflow as tf

from simclr_tf.evaluation.linear_eval import (
    LinearEvalConfig,
    LinearEvalResult,
    _train_classifier,
    extract_features,
    linear_eval,
    standardize,
    topk_accuracy,
)

FAST = LinearEvalConfig(epochs=10, batch_size=128)


def _clusters(n: int, num_classes: int = 10, dim: int = 32, noise: float = 0.1, seed: int = 0,
              means_seed: int = 42):
    """Features = class mean (unit-norm random direction x 5) + small Gaussian noise."""
    means = np.random.default_rng(means_seed).normal(size=(num_classes, dim))
    means *= 5.0 / np.linalg.norm(means, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=n)
    features = means[labels] + noise * rng.normal(size=(n, dim))
    return features.astype(np.float32), labels


def _numpy_topk(logits, labels, k):
    """Independent oracle: a stable descending sort (ties -> lower class index first)."""
    order = np.argsort(-logits, axis=1, kind="stable")
    return float(np.mean((order[:, :k] == labels[:, None]).any(axis=1)))


@pytest.mark.parametrize(
    "field, value",
    [("epochs", 0), ("epochs", 1.5), ("batch_size", 0), ("learning_rate", 0.0),
     ("weight_decay", -1e-4), ("standardize", "yes"), ("seed", 0.5)],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        LinearEvalConfig(**{field: value})


def test_result_as_dict_is_json_friendly():
    result = LinearEvalResult(np.float32(0.5), 0.75, np.int64(10), 4, 8, 1.25)
    restored = json.loads(json.dumps(result.as_dict()))
    assert restored == {"top1": 0.5, "top5": 0.75, "num_train": 10, "num_eval": 4,
                        "feature_dim": 8, "seconds": 1.25}


def test_separable_features_reach_full_accuracy():
    train_x, train_y = _clusters(2000, seed=0)
    eval_x, eval_y = _clusters(500, seed=1)
    result = linear_eval(train_x, train_y, eval_x, eval_y, num_classes=10, config=FAST)
    assert result.top1 >= 0.99
    assert result.top5 >= result.top1
    assert (result.num_train, result.num_eval, result.feature_dim) == (2000, 500, 32)
    assert result.seconds > 0


def test_permuted_train_labels_give_chance_accuracy():
    train_x, train_y = _clusters(2000, seed=0)
    eval_x, eval_y = _clusters(2000, seed=1)
    shuffled_y = np.random.default_rng(3).permutation(train_y)
    result = linear_eval(train_x, shuffled_y, eval_x, eval_y, num_classes=10, config=FAST)
    # Tight clusters are predicted as a whole, so this is ~10 draws, not 2000: bound loosely.
    assert result.top1 < 0.2
    assert result.top5 >= result.top1


def test_unstructured_random_labels_give_chance_top1_and_top5():
    rng = np.random.default_rng(0)
    train_x, eval_x = rng.normal(size=(2, 2000, 32)).astype(np.float32)
    train_y, eval_y = rng.integers(0, 10, size=(2, 2000))
    result = linear_eval(train_x, train_y, eval_x, eval_y, num_classes=10, config=FAST)
    assert 0.05 < result.top1 < 0.15
    assert 0.45 < result.top5 < 0.55  # chance is 0.5: top-5 is neither top-1 nor trivially 1


@pytest.mark.parametrize("num_classes", [2, 5])
def test_top5_is_one_with_at_most_five_classes(num_classes):
    train_x, train_y = _clusters(300, num_classes=num_classes, noise=3.0, seed=0)
    eval_x, eval_y = _clusters(200, num_classes=num_classes, noise=3.0, seed=1)
    result = linear_eval(train_x, train_y, eval_x, eval_y, num_classes, FAST)
    assert result.top1 < 1.0  # noisy enough that top-5 == 1 is the min(5, C) rule
    assert result.top5 == 1.0


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("ties", [False, True])
def test_topk_accuracy_matches_numpy_argsort(k, ties):
    rng = np.random.default_rng(k)
    logits = rng.normal(size=(500, 10)).astype(np.float32)
    if ties:  # few distinct values: many ties straddle the top-k boundary
        logits = np.round(logits).astype(np.float32)
    labels = rng.integers(0, 10, size=500)
    assert topk_accuracy(logits, labels, k) == pytest.approx(_numpy_topk(logits, labels, k))
    if k == 1:
        argmax_accuracy = np.mean(logits.argmax(axis=1) == labels)
        assert topk_accuracy(logits, labels, 1) == pytest.approx(argmax_accuracy)


def test_topk_accuracy_does_not_reward_ties_or_nan():
    labels = np.array([0, 1, 2, 3])
    constant = np.zeros((4, 10), np.float32)
    # tf.math.in_top_k would call every row correct here; a constant classifier knows nothing.
    assert topk_accuracy(constant, labels, 1) == 0.25
    assert topk_accuracy(constant, labels, 2) == 0.5
    nan_logits = np.eye(10, dtype=np.float32)[labels]
    nan_logits[0, 5] = np.nan
    assert topk_accuracy(nan_logits, labels, 1) == 0.75


def test_standardize_uses_train_statistics():
    rng = np.random.default_rng(0)
    train = rng.normal(3.0, 2.0, size=(100, 4)).astype(np.float32)
    train[:, 2] = 7.0  # constant feature: centred, not divided by ~0
    evaluation = rng.normal(-1.0, 0.5, size=(30, 4)).astype(np.float32)
    train_z, eval_z = standardize(train, evaluation)
    mean, std = train.mean(0), train.std(0)
    std[2] = 1.0
    np.testing.assert_allclose(train_z, (train - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(eval_z, (evaluation - mean) / std, rtol=1e-5, atol=1e-5)
    assert train_z.dtype == eval_z.dtype == np.float32
    np.testing.assert_allclose(train_z[:, 2], 0.0)
    np.testing.assert_allclose(eval_z[:, 2], evaluation[:, 2] - 7.0, rtol=1e-5)


def test_linear_eval_standardises_eval_with_train_statistics():
    train_x, train_y = _clusters(1000, seed=0)
    eval_x, eval_y = _clusters(500, seed=1)
    # A shift of eval only: harmless if eval were z-scored by its own statistics.
    shifted = eval_x + 50.0 * np.random.default_rng(2).normal(size=(1, 32)).astype(np.float32)
    assert linear_eval(train_x, train_y, eval_x, eval_y, 10, FAST).top1 >= 0.99
    assert linear_eval(train_x, train_y, shifted, eval_y, 10, FAST).top1 < 0.5


def test_constant_train_feature_stays_finite():
    train_x, train_y = _clusters(1000, seed=0)
    eval_x, eval_y = _clusters(300, seed=1)
    train_x[:, 0] = 1.0
    result = linear_eval(train_x, train_y, eval_x, eval_y, 10, FAST)
    assert result.top1 >= 0.99


def test_same_seed_is_deterministic_and_seed_matters():
    train_x, _ = _clusters(1000, seed=0)
    eval_x, eval_y = _clusters(1000, seed=1)
    noise_y = np.random.default_rng(5).integers(0, 10, size=1000)  # accuracy = pure noise
    runs = [linear_eval(train_x, noise_y, eval_x, eval_y, 10,
                        LinearEvalConfig(epochs=3, batch_size=64, seed=seed))
            for seed in (0, 0, 1)]
    assert runs[0][:5] == runs[1][:5]
    assert runs[0][:2] != runs[2][:2]


def test_weight_decay_alone_moves_the_kernel_on_zero_features():
    # Zero features give the kernel a zero cross-entropy gradient: only weight decay acts.
    features, labels = np.zeros((500, 8), np.float32), np.arange(500) % 10

    def trained_kernel(**config):
        return np.asarray(
            _train_classifier(features, labels, 10, LinearEvalConfig(**config)).kernel)

    initial = trained_kernel(epochs=1, learning_rate=1e-9)
    kernels = [trained_kernel(epochs=20, weight_decay=wd) for wd in (0.0, 1e-2)]
    np.testing.assert_allclose(kernels[0], initial, atol=1e-7)
    assert np.linalg.norm(kernels[1]) < 0.2 * np.linalg.norm(kernels[0])


@pytest.mark.parametrize(
    "field, change",
    [
        ("eval_features", lambda a: {**a, "eval_features": a["eval_features"][:, :-1]}),
        ("train_labels", lambda a: {**a, "train_labels": a["train_labels"][:-1]}),
        ("train_labels", lambda a: {**a, "train_labels": a["train_labels"] + 10}),
        ("eval_labels", lambda a: {**a, "eval_labels": a["eval_labels"] - 1}),
        ("eval_labels", lambda a: {**a, "eval_labels": a["eval_labels"].astype(np.float32)}),
        ("train_features", lambda a: {**a, "train_features": a["train_features"][:0],
                                      "train_labels": a["train_labels"][:0]}),
        ("num_classes", lambda a: {**a, "num_classes": 1}),
    ],
)
def test_linear_eval_rejects_bad_inputs(field, change):
    train_x, train_y = _clusters(20, seed=0)
    eval_x, eval_y = _clusters(10, seed=1)
    eval_y[0] = 0  # so "- 1" surely makes a negative label
    args = dict(train_features=train_x, train_labels=train_y, eval_features=eval_x,
                eval_labels=eval_y, num_classes=10)
    with pytest.raises(ValueError, match=field):
        linear_eval(**change(args))


def _image_dataset(labels):
    images = np.random.default_rng(0).uniform(size=(len(labels), 4, 4, 3)).astype(np.float32)
    return images, tf.data.Dataset.from_tensor_slices((images, labels)).batch(3)


def test_extract_features_matches_numpy_in_order():
    labels = np.arange(10, dtype=np.int32) % 4
    images, dataset = _image_dataset(labels)
    feature_fn = tf.function(lambda x: tf.reduce_mean(x, axis=[1, 2]))
    features, got_labels = extract_features(feature_fn, dataset)
    assert features.dtype == np.float32 and got_labels.dtype == np.int64
    np.testing.assert_allclose(features, images.mean(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_array_equal(got_labels, labels)
    features, got_labels = extract_features(feature_fn, dataset, max_batches=2)
    np.testing.assert_allclose(features, images[:6].mean(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_array_equal(got_labels, labels[:6])


def test_extract_features_rejects_unlabelled_empty_and_bad_args():
    feature_fn = lambda x: tf.reduce_mean(x, axis=[1, 2])  # noqa: E731
    _, unlabelled = _image_dataset(np.full(5, -1, np.int64))
    with pytest.raises(ValueError, match="eval split has no labels"):
        extract_features(feature_fn, unlabelled)
    _, dataset = _image_dataset(np.zeros(5, np.int64))
    with pytest.raises(ValueError, match="empty"):
        extract_features(feature_fn, dataset.take(0))
    with pytest.raises(ValueError, match="max_batches"):
        extract_features(feature_fn, dataset, max_batches=0)
    with pytest.raises(ValueError, match="feature_fn"):
        extract_features(lambda x: x, dataset)
