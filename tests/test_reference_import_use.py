"""What an imported original SimCLR model is good for: a module of ours (hub.KerasLayer trainable,
TFSMLayer, the TF Serving loader) and a `.keras` file that trains, all computing the original's outputs."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from export_helpers import USER_SCRIPT, start
from keras_file_helpers import load_without_simclr_tf
from simclr_tf.models import OUTPUT_NAMES
from simclr_tf.reference_import import import_reference, load_reference
from simclr_tf.reference_import.compare import difference, random_images
from test_reference_import import FIXTURE, SAVED_MODEL, TOLERANCE
from tf_hub_export import export_checkpoint
from tf_hub_export.checks import session_run, verify
from tf_hub_export.keras_file import export_keras_file
from tf_hub_export.module import SERVING_SIGNATURE

pytestmark = pytest.mark.skipif(not os.path.isdir(FIXTURE), reason=f"fixture of the original code absent: {FIXTURE}")

# An even batch: see the oneDNN note in tests/export_helpers.py.
IMAGES = random_images(4, 32, seed=3)


@pytest.fixture(scope="module")
def original():
    module = tf.saved_model.load(os.path.join(SAVED_MODEL, "3"))
    return {name: np.asarray(value) for name, value in module(IMAGES, trainable=False).items()}


def assert_like_the_original(outputs: dict, original: dict) -> None:
    assert set(outputs) == set(OUTPUT_NAMES)
    for name in OUTPUT_NAMES:
        assert difference(np.asarray(outputs[name]), original[name]).relative <= TOLERANCE, name


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("imported") / "run")
    import_reference(SAVED_MODEL, model_dir)
    return export_checkpoint(model_dir)


def test_the_exported_module_serves_the_originals_outputs_in_every_loader(exported, original):
    verify(exported, IMAGES)  # tf.saved_model.load, serving_default, hub.KerasLayer, session loader.
    assert_like_the_original(session_run(exported, IMAGES), original)
    layer = keras.layers.TFSMLayer(exported, call_endpoint=SERVING_SIGNATURE)
    assert_like_the_original(layer(IMAGES), original)
    assert layer.trainable_weights  # The original module lists none.


def test_the_exported_module_fine_tunes_in_hub_keras_layer(exported, tmp_path):
    """What the original SavedModel cannot do (LookupError on its custom gradients)."""
    np.save(tmp_path / "images.npy", IMAGES)
    user = start("-c", USER_SCRIPT, exported, exported, str(tmp_path / "images.npy"), str(tmp_path / "out.npz"),
                 cwd=str(tmp_path), PYTHONPATH="")
    stdout, stderr = user.communicate(timeout=600)
    assert user.returncode == 0, stderr[-3000:]
    report = json.loads(stdout.strip().splitlines()[-1])
    trainable = report["trainable"]
    assert trainable["losses"][-1] < trainable["losses"][0]
    assert trainable["changed_trainable"] > 0 and trainable["trainable_weights"] == report["trainable_variables"] > 0


def test_the_keras_file_of_an_imported_model_loads_without_simclr_tf_computes_the_original_and_trains(tmp_path):
    model_dir = str(tmp_path / "imported")
    import_reference(SAVED_MODEL, model_dir)
    path = export_keras_file(model_dir, str(tmp_path / "imported.keras"))
    # The images of test_reference_import's batch-statistics test: with fewer images, batch statistics
    # amplify float32 rounding more (8 images: 1.2e-5, 4 images: 1.6e-5 for our imported model too).
    images = random_images(16, 32, seed=1)
    report, outputs = load_without_simclr_tf(path, images, np.arange(16) % 10, tmp_path)
    assert not report["simclr_tf_imported"]
    assert report["losses"][-1] < report["losses"][0], report["losses"]
    module = tf.saved_model.load(os.path.join(SAVED_MODEL, "3"))
    assert_like_the_original(outputs, {name: np.asarray(value) for name, value in
                                       module(images, trainable=False).items()})
    # Batch statistics too: the file keeps the original's one-pass variance (synchronized BN).
    model = keras.saving.load_model(path)
    assert_like_the_original(model(images, training=True), {name: np.asarray(value) for name, value in
                                                            module(images, trainable=True).items()})
