"""The loader matrix: an exported module gives the in-memory model's outputs in every loader users
deploy with, not only in tf.saved_model.load.

tf.saved_model.load (__call__ and serving_default) and hub.KerasLayer (frozen and trainable)
are covered in a fresh process without simclr_tf by tests/test_tf_hub_export.py; here: the
TF1 session loader (what TF Serving and saved_model_cli use), `saved_model_cli run` itself,
Keras 3's TFSMLayer, and TFLite. The session loader and TFLite read the SavedModel's graph
as written, so they fail (or give NaN) when a function reads a variable the SavedModel does
not restore, which tf.saved_model.load silently repairs.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from cli_helpers import environment
from export_helpers import IMAGES, tiny_model
from simclr_tf.models import ENCODER_OUTPUTS, OUTPUT_NAMES, SUPERVISED_OUTPUT
from tf_hub_export import export
from tf_hub_export.checks import VerificationError, session_run, verify
from tf_hub_export.module import SERVING_INPUT, SERVING_SIGNATURE, exported_variables

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def expected(model):
    return {name: np.asarray(value) for name, value in model(IMAGES, training=False).items()}


@pytest.fixture(scope="module")
def exports(model, tmp_path_factory):
    directory = tmp_path_factory.mktemp("loaders")
    return {
        "full": export(model, str(directory / "full"), step=3),
        "frozen_headless": export(model, str(directory / "frozen_headless"), step=3, include_projection_head=False,
                                  freeze_batch_norm=True),
    }


EXPORTED_OUTPUTS = {"full": OUTPUT_NAMES, "frozen_headless": ENCODER_OUTPUTS + (SUPERVISED_OUTPUT,)}


def assert_outputs_equal(actual: dict, expected: dict, names, tolerance=TOLERANCE) -> None:
    assert sorted(actual) == sorted(names)
    for name in names:
        np.testing.assert_allclose(actual[name], expected[name], rtol=0, atol=tolerance, err_msg=name)


@pytest.mark.parametrize("kind", ["full", "frozen_headless"])
def test_session_loader_serves_the_models_outputs(kind, exports, expected):
    assert_outputs_equal(session_run(exports[kind], IMAGES), expected, EXPORTED_OUTPUTS[kind])


def test_saved_model_cli_run_gives_the_models_outputs(exports, expected, tmp_path):
    np.save(tmp_path / "x.npy", IMAGES)
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    common = [cli, "run", "--dir", exports["full"], "--tag_set", "serve", "--signature_def", SERVING_SIGNATURE,
              "--inputs", f"images={tmp_path / 'x.npy'}"]
    printed = subprocess.run(common, capture_output=True, text=True, timeout=300, env=environment())
    assert printed.returncode == 0, printed.stderr[-3000:]
    assert all(f"Result for output key {name}:" in printed.stdout for name in OUTPUT_NAMES), printed.stdout[-2000:]
    written = subprocess.run(common + ["--outdir", str(tmp_path / "out")], capture_output=True, text=True,
                             timeout=300, env=environment())
    assert written.returncode == 0, written.stderr[-3000:]
    outputs = {name: np.load(tmp_path / "out" / f"{name}.npy") for name in OUTPUT_NAMES}
    assert_outputs_equal(outputs, expected, OUTPUT_NAMES)


def test_keras3_tfsm_layer_serves_the_models_outputs_and_exposes_its_weights(model, exports, expected):
    layer = keras.layers.TFSMLayer(exports["full"], call_endpoint=SERVING_SIGNATURE)
    outputs = {name: np.asarray(value) for name, value in layer(IMAGES).items()}
    assert_outputs_equal(outputs, expected, OUTPUT_NAMES)
    assert len(layer.weights) == len(model.variables)
    assert len(layer.trainable_weights) == len(model.trainable_variables)


@pytest.mark.parametrize("side", [16, 24])
def test_tflite_conversion_of_the_any_size_signature_runs_at_each_size(exports, side):
    # The converter freezes the variables as the SavedModel restores them: with unrestored
    # handles it used to produce a model that computes NaN.
    converter = tf.lite.TFLiteConverter.from_saved_model(exports["full"], signature_keys=[SERVING_SIGNATURE])
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    assert list(interpreter.get_input_details()[0]["shape_signature"]) == [-1, -1, -1, 3]  # Any batch and size.
    images = np.random.default_rng(side).uniform(size=(2, side, side, 3)).astype(np.float32)
    lite = interpreter.get_signature_runner(SERVING_SIGNATURE)(images=images)
    reference = tf.saved_model.load(exports["full"]).signatures[SERVING_SIGNATURE](images=tf.constant(images))
    # XNNPACK sums in another order: float32 round-off, not a different model.
    assert_outputs_equal(lite, {k: v.numpy() for k, v in reference.items()}, OUTPUT_NAMES, tolerance=1e-4)


def test_verify_rejects_a_module_whose_functions_read_unrestored_variables(model, tmp_path):
    """The export bug the session loader exposes, built on purpose: the Keras 3 variables
    themselves in `variables` make the SavedModel restore copies that nothing reads."""
    broken = tf.__internal__.tracking.AutoTrackable()
    broken.variables = exported_variables(model, include_projection_head=True)
    broken.serve = tf.function(lambda images: {name: tf.identity(value) for name, value in
                                               model(images, training=False).items()},
                               input_signature=[SERVING_INPUT])
    broken.__call__ = tf.function(lambda images, training=False: broken.serve(images))
    broken.__call__.get_concrete_function(SERVING_INPUT)
    path = str(tmp_path / "broken")
    tf.saved_model.save(broken, path, signatures={SERVING_SIGNATURE: broken.serve})
    loaded = tf.saved_model.load(path)
    np.testing.assert_allclose(loaded.serve(IMAGES)["final_avg_pool"], model(IMAGES)["final_avg_pool"], atol=1e-5)
    with pytest.raises(VerificationError, match="the session loader .* fails on serving_default: .*Could not find "
                                                "variable"):
        verify(path, IMAGES)
