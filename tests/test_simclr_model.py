"""SimCLR model: flat named outputs, stop-gradient linear eval vs fine-tuning, Keras conventions."""

import numpy as np
import pytest
import tensorflow as tf

from keras_checks import check_layer_roundtrip
from simclr_tf.models import OUTPUT_NAMES, ProjectionHead, ResNet, SimCLRModel, SupervisedHead

NUM_CLASSES = 3


def _images(batch=4, size=8, seed=0):
    return np.random.default_rng(seed).uniform(size=(batch, size, size, 3)).astype(np.float32)


def _model(supervised=True, linear_eval_on_stop_gradient=True, ft_proj_selector=0):
    return SimCLRModel(
        encoder=ResNet(depth=18, width_multiplier=0.125, cifar_stem=True, global_bn=False),
        projection_head=ProjectionHead(num_proj_layers=2, proj_out_dim=4, ft_proj_selector=ft_proj_selector),
        supervised_head=SupervisedHead(NUM_CLASSES) if supervised else None,
        linear_eval_on_stop_gradient=linear_eval_on_stop_gradient,
    )


def test_outputs_are_one_flat_dict():
    model = _model()
    outputs = model(_images(), training=False)
    assert list(outputs) == list(OUTPUT_NAMES)
    assert OUTPUT_NAMES[-3:] == ("proj_head_input", "proj_head_output", "logits_sup")
    np.testing.assert_array_equal(outputs["proj_head_input"], outputs["final_avg_pool"])
    assert tuple(outputs["proj_head_output"].shape) == (4, 4)
    assert tuple(outputs["logits_sup"].shape) == (4, NUM_CLASSES)
    assert "logits_sup" not in _model(supervised=False)(_images(), training=False)


def test_outputs_compose_the_parts():
    model = _model(linear_eval_on_stop_gradient=False, ft_proj_selector=1)
    images = _images()
    outputs = model(images, training=False)
    h = model.encoder(images, training=False)["final_avg_pool"]
    head_outputs = model.projection_head(h, training=False)
    np.testing.assert_allclose(outputs["proj_head_output"], head_outputs["proj_head_output"], atol=1e-6)
    np.testing.assert_allclose(
        outputs["logits_sup"], model.supervised_head(head_outputs["supervised_head_input"]), atol=1e-6
    )


def _gradients(model, loss_name):
    images = _images()
    labels = np.arange(len(images)) % NUM_CLASSES
    with tf.GradientTape() as tape:
        outputs = model(images, training=True)
        if loss_name == "supervised":
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=outputs["logits_sup"])
            )
        else:
            loss = tf.reduce_sum(tf.square(outputs["proj_head_output"]))
    encoder_vars = model.encoder.trainable_variables
    head_vars = model.supervised_head.trainable_variables
    grads = tape.gradient(loss, encoder_vars + head_vars)
    return grads[: len(encoder_vars)], grads[len(encoder_vars) :]


def _max_abs(grads):
    return max(0.0 if g is None else float(np.max(np.abs(g))) for g in grads)


@pytest.mark.parametrize("linear_eval_on_stop_gradient", [True, False])
def test_supervised_loss_reaches_the_encoder_only_when_fine_tuning(linear_eval_on_stop_gradient):
    model = _model(linear_eval_on_stop_gradient=linear_eval_on_stop_gradient)
    encoder_grads, head_grads = _gradients(model, "supervised")
    assert _max_abs(head_grads) > 0  # the linear classifier always learns
    if linear_eval_on_stop_gradient:
        assert _max_abs(encoder_grads) == 0.0  # no label information reaches the encoder
    else:
        assert _max_abs(encoder_grads) > 0


def test_contrastive_side_reaches_the_encoder_under_stop_gradient():
    encoder_grads, _ = _gradients(_model(), "projection")
    assert _max_abs(encoder_grads) > 0


@pytest.mark.parametrize("supervised", [True, False])
def test_simclr_model_keras_roundtrip(supervised):
    model = _model(supervised=supervised, linear_eval_on_stop_gradient=False, ft_proj_selector=2)
    check_layer_roundtrip(model, _images(2))
    assert model.get_config()["linear_eval_on_stop_gradient"] is False
