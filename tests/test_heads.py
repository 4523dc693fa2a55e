"""Projection and supervised heads: structure, NumPy oracles, arguments, Keras conventions."""

import keras
import numpy as np
import pytest

from keras_checks import check_layer_roundtrip
from simclr_tf.models.heads import ProjectionHead, SupervisedHead

EPSILON = 1e-5


def _hiddens(batch=4, dim=8, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, dim)).astype(np.float32)


def _randomise(layer, seed=1):
    """Random weights, with positive moving variances, so every weight shows in the output."""
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        if "moving_variance" in variable.path:
            variable.assign(rng.uniform(0.5, 2.0, variable.shape).astype(np.float32))
        else:
            variable.assign(rng.normal(size=variable.shape).astype(np.float32))


def _numpy_head(head, h, training):
    """The head recomputed from its weights: Dense (no bias), BN (batch or moving stats), ReLU."""
    hiddens = [h]
    for j, (dense, bn) in enumerate(zip(head.dense_layers, head.batch_norm_layers)):
        x = hiddens[-1] @ dense.kernel.numpy()
        if training:
            mean, variance = x.mean(axis=0), x.var(axis=0)  # biased variance, as BN uses
        else:
            mean, variance = bn.moving_mean.numpy(), bn.moving_variance.numpy()
        x = (x - mean) / np.sqrt(variance + EPSILON) * bn.gamma.numpy()
        if bn.center:
            x = x + bn.beta.numpy()
        if j != len(head.dense_layers) - 1:
            x = np.maximum(x, 0.0)
        hiddens.append(x)
    return hiddens


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("mode, num_proj_layers", [("nonlinear", 3), ("nonlinear", 2), ("linear", 3)])
def test_projection_matches_numpy(mode, num_proj_layers, training):
    head = ProjectionHead(mode=mode, num_proj_layers=num_proj_layers, proj_out_dim=5, global_bn=False)
    h = _hiddens()
    head.build(h.shape)
    _randomise(head)
    outputs = head(h, training=training)
    expected = _numpy_head(head, h, training)
    np.testing.assert_allclose(outputs["proj_head_output"], expected[-1], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(outputs["proj_head_input"], h)
    np.testing.assert_allclose(outputs["supervised_head_input"], h)  # ft_proj_selector=0


def test_nonlinear_structure_is_the_reference_one():
    head = ProjectionHead(num_proj_layers=3, proj_out_dim=4)
    head.build((None, 8))
    assert [d.units for d in head.dense_layers] == [8, 8, 4]  # middle layers as wide as h
    assert not any(d.use_bias for d in head.dense_layers)
    assert [bn.center for bn in head.batch_norm_layers] == [True, True, False]  # last BN has no beta
    for bn in head.batch_norm_layers:
        assert bn.synchronized and bn.momentum == 0.9 and bn.epsilon == EPSILON
    trainable = sum(int(np.prod(v.shape)) for v in head.trainable_variables)
    assert trainable == 2 * (8 * 8 + 2 * 8) + (8 * 4 + 4)
    for variable in head.variables:
        assert ("batch_normalization" in variable.path) == (variable.path.split("/")[-1] != "kernel")
        assert "bias" not in variable.path


def test_linear_and_none_modes():
    linear = ProjectionHead(mode="linear", proj_out_dim=4)
    linear.build((None, 8))
    assert [d.units for d in linear.dense_layers] == [4]
    assert [bn.center for bn in linear.batch_norm_layers] == [False]
    none = ProjectionHead(mode="none")
    h = _hiddens()
    outputs = none(h, training=True)
    assert not none.weights
    for name in ("proj_head_input", "proj_head_output", "supervised_head_input"):
        np.testing.assert_array_equal(outputs[name], h)


@pytest.mark.parametrize("selector", [1, 2, 3])
def test_ft_proj_selector_picks_a_head_layer_output(selector):
    head = ProjectionHead(num_proj_layers=3, proj_out_dim=5, ft_proj_selector=selector)
    h = _hiddens()
    head.build(h.shape)
    _randomise(head)
    outputs = head(h, training=False)
    expected = _numpy_head(head, h, training=False)[selector]
    np.testing.assert_allclose(outputs["supervised_head_input"], expected, rtol=1e-4, atol=1e-4)
    if selector < 3:
        assert np.all(np.asarray(outputs["supervised_head_input"]) >= 0)  # after the middle ReLU


def test_projection_output_is_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        head = ProjectionHead(num_proj_layers=2, proj_out_dim=4)
        supervised = SupervisedHead(3)
        outputs = head(_hiddens(), training=True)
        logits = supervised(_hiddens())
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert outputs["proj_head_output"].dtype == "float32"
    assert logits.dtype == "float32"


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"mode": "mlp"}, "mode"),
        ({"num_proj_layers": 0}, "num_proj_layers"),
        ({"proj_out_dim": 0}, "proj_out_dim"),
        ({"ft_proj_selector": 4}, "ft_proj_selector"),
        ({"ft_proj_selector": -1}, "ft_proj_selector"),
        ({"mode": "linear", "ft_proj_selector": 2}, "ft_proj_selector"),
        ({"mode": "none", "ft_proj_selector": 1}, "ft_proj_selector"),
        ({"batch_norm_epsilon": -1.0}, "batch_norm_epsilon"),
    ],
)
def test_projection_head_bad_arguments_raise(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        ProjectionHead(**kwargs)


@pytest.mark.parametrize(
    "head",
    [
        ProjectionHead(num_proj_layers=3, proj_out_dim=4, ft_proj_selector=2),
        ProjectionHead(mode="linear", proj_out_dim=4, global_bn=False),
        ProjectionHead(mode="none"),
    ],
    ids=["nonlinear", "linear", "none"],
)
def test_projection_head_keras_roundtrip(head):
    check_layer_roundtrip(head, _hiddens())


def test_supervised_head_matches_numpy_and_is_named_for_weight_decay_exclusion():
    head = SupervisedHead(num_classes=3)
    h = _hiddens()
    head.build(h.shape)
    _randomise(head)
    kernel, bias = head.dense.kernel.numpy(), head.dense.bias.numpy()
    np.testing.assert_allclose(head(h), h @ kernel + bias, rtol=1e-5, atol=1e-5)
    assert all("supervised_head" in v.path for v in head.variables)
    assert [v.path.split("/")[-1] for v in head.variables] == ["kernel", "bias"]


def test_supervised_head_initialisation():
    h = _hiddens(dim=256)
    np.testing.assert_array_equal(SupervisedHead(3, zero_init=True)(h), 0.0)
    head = SupervisedHead(3)
    head.build(h.shape)
    assert np.std(head.dense.kernel.numpy()) == pytest.approx(0.01, rel=0.1)
    np.testing.assert_array_equal(head.dense.bias.numpy(), 0.0)


@pytest.mark.parametrize(
    "kwargs, argument",
    [({"num_classes": 0}, "num_classes"), ({"num_classes": 3, "name": "classifier"}, "name")],
)
def test_supervised_head_bad_arguments_raise(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        SupervisedHead(**kwargs)


def test_supervised_head_keras_roundtrip():
    check_layer_roundtrip(SupervisedHead(num_classes=3, name="linear_eval_supervised_head"), _hiddens())
