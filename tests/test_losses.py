"""Tests for simclr_tf/losses.py against a NumPy version of the paper's formula."""

import numpy as np
import pytest
import tensorflow as tf

from simclr_tf.losses import NTXentOutput, contrastive_metrics, nt_xent_loss


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _numpy_similarities(p1, p2, temperature, normalize):
    """The full [2N, 2N] similarity matrix of the paper, in float64."""
    z = np.concatenate([p1, p2]).astype(np.float64)
    if normalize:
        z = _normalize(z)
    return z, z @ z.T / temperature


def _numpy_nt_xent(p1, p2, temperature, normalize=True):
    """Paper's NT-Xent averaged over all 2N anchors, times 2 (reference scale)."""
    n = len(p1)
    _, sim = _numpy_similarities(p1, p2, temperature, normalize)
    losses = []
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        others = np.delete(sim[i], i)
        log_denominator = np.log(np.sum(np.exp(others - others.max()))) + others.max()
        losses.append(-sim[i, positive] + log_denominator)
    return 2.0 * np.mean(losses)


def _numpy_nt_xent_gradient(p1, p2, temperature, normalize=True):
    """Analytic gradient of `_numpy_nt_xent` w.r.t. (p1, p2)."""
    n = len(p1)
    z, sim = _numpy_similarities(p1, p2, temperature, normalize)
    masked = sim - np.eye(2 * n) * 1e300  # k != i
    probabilities = np.exp(masked - masked.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    positives = np.roll(np.eye(2 * n), n, axis=1)
    d_sim = (probabilities - positives) * (2.0 / (2 * n))  # dL/dsim[i, k]
    d_z = (d_sim + d_sim.T) @ z / temperature
    if normalize:
        x = np.concatenate([p1, p2]).astype(np.float64)
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        d_z = (d_z - z * np.sum(z * d_z, axis=1, keepdims=True)) / norms
    return d_z[:n], d_z[n:]


def _random_views(n: int, dim: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(n, dim)).astype(np.float32),
        rng.normal(size=(n, dim)).astype(np.float32),
    )


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("n", [1, 2, 5, 16])
def test_matches_numpy_paper_formula_times_two(n, temperature, normalize):
    p1, p2 = _random_views(n, seed=n)
    if not normalize:  # keep unnormalised logits in a range float32 handles well
        p1, p2 = p1 / 3.0, p2 / 3.0
    output = nt_xent_loss(p1, p2, temperature=temperature, normalize=normalize)
    expected = _numpy_nt_xent(p1, p2, temperature, normalize)
    np.testing.assert_allclose(output.loss.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_same_value_inside_tf_function():
    p1, p2 = _random_views(5)
    graph_loss = tf.function(lambda a, b: nt_xent_loss(a, b, temperature=0.5).loss)(p1, p2)
    np.testing.assert_allclose(graph_loss.numpy(), _numpy_nt_xent(p1, p2, 0.5), rtol=1e-5)


def test_closed_form_orthogonal_negatives_identical_positives():
    # Two images; both views of image 0 are e1, both views of image 1 are e2.
    # Each of the 4 anchors sees its positive at similarity 1 and its two
    # negatives at 0: l = -1/tau + log(e^{1/tau} + 2) = log(1 + 2 e^{-1/tau}).
    temperature = 0.5
    views = np.eye(2, 4, dtype=np.float32)
    output = nt_xent_loss(views, views, temperature=temperature)
    expected = 2.0 * np.log(1.0 + 2.0 * np.exp(-1.0 / temperature))
    np.testing.assert_allclose(output.loss.numpy(), expected, rtol=1e-6)


def test_closed_form_all_views_identical():
    # All 2N views equal: every anchor's 2N-1 candidates tie, l = log(2N-1).
    n = 4
    views = np.ones((n, 3), np.float32)
    output = nt_xent_loss(views, 2.0 * views, temperature=0.1)
    np.testing.assert_allclose(output.loss.numpy(), 2.0 * np.log(2 * n - 1), rtol=1e-6)
    metrics = contrastive_metrics(output)
    np.testing.assert_allclose(
        metrics["contrastive_entropy"].numpy(), np.log(2 * n - 1), rtol=1e-6
    )


def test_symmetric_in_the_two_views():
    p1, p2 = _random_views(5)
    forward = nt_xent_loss(p1, p2, temperature=0.5).loss
    swapped = nt_xent_loss(p2, p1, temperature=0.5).loss
    np.testing.assert_allclose(forward.numpy(), swapped.numpy(), rtol=1e-6)


def test_output_layout():
    n = 5
    p1, p2 = _random_views(n)
    output = nt_xent_loss(p1, p2, temperature=0.5)
    assert isinstance(output, NTXentOutput)
    assert output.logits.shape == (n, 2 * n)
    assert output.logits.dtype == tf.float32
    np.testing.assert_array_equal(output.labels.numpy(), np.arange(n))
    # Columns [0, n) are view-2 similarities, [n, 2n) view-1 with self masked.
    z1, z2 = _normalize(p1), _normalize(p2)
    np.testing.assert_allclose(output.logits[:, :n].numpy(), z1 @ z2.T / 0.5, atol=1e-5)
    self_logits = np.diag(output.logits[:, n:].numpy())
    assert np.all(self_logits < -1e8)


def test_metrics_when_positives_are_nearest():
    rng = np.random.default_rng(3)
    p1 = np.eye(6, 8, dtype=np.float32)
    p2 = p1 + 0.05 * rng.normal(size=p1.shape).astype(np.float32)
    metrics = contrastive_metrics(nt_xent_loss(p1, p2, temperature=0.5))
    assert metrics["contrastive_accuracy"].numpy() == 1.0


def test_metrics_match_numpy_over_2n_minus_1_candidates():
    n, temperature = 16, 0.5
    p1, p2 = _random_views(n, dim=3, seed=7)  # few dims: some anchors miss
    _, sim = _numpy_similarities(p1, p2, temperature, normalize=True)
    anchor_rows = sim[:n].copy()
    anchor_rows[np.arange(n), np.arange(n)] = -np.inf  # an anchor is not its own candidate
    expected_accuracy = np.mean(np.argmax(anchor_rows, axis=1) == np.arange(n) + n)
    shifted = np.exp(anchor_rows - anchor_rows.max(axis=1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=1, keepdims=True)
    safe_log = np.log(np.where(probabilities > 0, probabilities, 1.0))
    expected_entropy = -np.mean(np.sum(probabilities * safe_log, axis=1))
    assert 0.0 < expected_accuracy < 1.0  # the case discriminates

    metrics = contrastive_metrics(nt_xent_loss(p1, p2, temperature=temperature))
    np.testing.assert_allclose(metrics["contrastive_accuracy"].numpy(), expected_accuracy)
    np.testing.assert_allclose(
        metrics["contrastive_entropy"].numpy(), expected_entropy, rtol=1e-5
    )


def test_bfloat16_inputs_give_float32_outputs():
    p1, p2 = _random_views(5)
    p1_bf16, p2_bf16 = tf.cast(p1, tf.bfloat16), tf.cast(p2, tf.bfloat16)
    output = nt_xent_loss(p1_bf16, p2_bf16, temperature=0.5)
    metrics = contrastive_metrics(output)
    assert output.loss.dtype == tf.float32
    assert output.logits.dtype == tf.float32
    assert all(value.dtype == tf.float32 for value in metrics.values())
    # Computed in float32 from the bfloat16-rounded values.
    rounded_1 = tf.cast(p1_bf16, tf.float32).numpy()
    rounded_2 = tf.cast(p2_bf16, tf.float32).numpy()
    np.testing.assert_allclose(
        output.loss.numpy(), _numpy_nt_xent(rounded_1, rounded_2, 0.5), rtol=1e-5
    )


@pytest.mark.parametrize("temperature", [0.0, -0.5])
def test_bad_temperature_raises(temperature):
    p1, p2 = _random_views(2)
    with pytest.raises(ValueError, match="temperature"):
        nt_xent_loss(p1, p2, temperature=temperature)


@pytest.mark.parametrize(
    "shape_1, shape_2",
    [((4, 8), (5, 8)), ((4, 8), (4, 6)), ((8,), (8,)), ((2, 4, 8), (2, 4, 8))],
)
def test_bad_shapes_raise(shape_1, shape_2):
    with pytest.raises(ValueError, match="projections_1.*projections_2"):
        nt_xent_loss(np.zeros(shape_1, np.float32), np.ones(shape_2, np.float32), 0.5)


@pytest.mark.parametrize("normalize", [True, False])
def test_gradient_matches_numpy_analytic_gradient(normalize):
    n, temperature = 3, 0.5
    p1, p2 = _random_views(n, dim=4, seed=11)
    p1_var, p2_var = tf.Variable(p1), tf.Variable(p2)
    with tf.GradientTape() as tape:
        loss = nt_xent_loss(p1_var, p2_var, temperature=temperature, normalize=normalize).loss
    grad_1, grad_2 = tape.gradient(loss, [p1_var, p2_var])
    expected_1, expected_2 = _numpy_nt_xent_gradient(p1, p2, temperature, normalize)
    np.testing.assert_allclose(grad_1.numpy(), expected_1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad_2.numpy(), expected_2, rtol=1e-5, atol=1e-6)


def test_numpy_gradient_oracle_agrees_with_finite_differences():
    # Checks the oracle itself, in float64, so the test above can be trusted.
    n, temperature, eps = 3, 0.5, 1e-6
    p1, p2 = (x.astype(np.float64) for x in _random_views(n, dim=4, seed=11))
    analytic_1, _ = _numpy_nt_xent_gradient(p1, p2, temperature)
    numeric_1 = np.zeros_like(p1)
    for index in np.ndindex(p1.shape):
        plus, minus = p1.copy(), p1.copy()
        plus[index] += eps
        minus[index] -= eps
        numeric_1[index] = (
            _numpy_nt_xent(plus, p2, temperature) - _numpy_nt_xent(minus, p2, temperature)
        ) / (2 * eps)
    np.testing.assert_allclose(analytic_1, numeric_1, rtol=1e-6, atol=1e-8)
