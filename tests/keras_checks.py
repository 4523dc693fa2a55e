"""Keras conventions every simclr_tf layer and model must meet, checked in one helper."""

import os
import tempfile

import keras
import numpy as np


def _perturb_weights(layer: keras.layers.Layer, seed: int = 0) -> None:
    """Moves every weight off its initial value, so that copying or loading must carry real values.

    (Zero-initialised gammas would otherwise make outputs independent of many weights.)
    """
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        value = np.asarray(variable.numpy())
        noise = rng.normal(0.0, 0.1, value.shape)
        if "moving_variance" in variable.path:
            new_value = value * rng.uniform(0.5, 1.5, value.shape)  # Stays positive.
        else:
            new_value = value + noise
        variable.assign(new_value.astype(value.dtype))


def _assert_same_outputs(expected, actual, what: str) -> None:
    expected_flat = keras.tree.flatten(expected)
    actual_flat = keras.tree.flatten(actual)
    if isinstance(expected, dict):
        assert sorted(expected) == sorted(actual), f"{what}: output keys differ"
    assert len(expected_flat) == len(actual_flat), f"{what}: output structure differs"
    for e, a in zip(expected_flat, actual_flat):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=1e-5, atol=1e-5, err_msg=what)


def check_layer_roundtrip(layer_or_model, inputs):
    """Build -> call -> get_config/from_config -> save .keras/load, checking outputs stay equal.

    The layer is built (on `inputs`), its weights are perturbed away from their
    initial values, and then:
      1. `type(layer).from_config(layer.get_config())`, built from the build
         config (as loading does) and given the same weights, returns the same
         outputs (inference mode);
      2. the config round-trips exactly (get_config of the copy is equal);
      3. saving to a `.keras` file and loading it returns the same outputs.
    Returns the layer's inference-mode outputs on `inputs`.
    """
    layer = layer_or_model
    layer(inputs, training=False)  # Builds.
    assert layer.built, "the layer is not built after its first call"
    _perturb_weights(layer)
    expected = layer(inputs, training=False)

    config = layer.get_config()
    copy = type(layer).from_config(config)
    copy.build_from_config(layer.get_build_config())  # What loading does: must create every weight.
    assert len(copy.weights) == len(layer.weights), "build() does not create every weight"
    copy.set_weights(layer.get_weights())
    _assert_same_outputs(expected, copy(inputs, training=False), "from_config copy")
    serialize = keras.saving.serialize_keras_object
    assert serialize(copy)["config"] == serialize(layer)["config"], "the config does not round-trip"

    if not isinstance(layer, keras.Model):
        # Only models can be saved to .keras on their own: wrap the layer.
        model_input = keras.Input(shape=tuple(inputs.shape[1:]), dtype=str(np.asarray(inputs).dtype))
        saved = keras.Model(model_input, layer(model_input, training=False))
    else:
        saved = layer
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "layer.keras")
        saved.save(path)
        loaded = keras.saving.load_model(path)
    _assert_same_outputs(expected, loaded(inputs, training=False), "saved and loaded .keras")
    return expected
