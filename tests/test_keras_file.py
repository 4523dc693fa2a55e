"""tf_hub_export.keras_file: a run as a .keras file of built-in layers, loaded without simclr_tf."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from cli_helpers import REPO, TINY_FLAGS, check_ok, environment, error_line, run_cli
from keras_file_helpers import load_without_simclr_tf
from simclr_tf.config import ModelConfig
from simclr_tf.models import OUTPUT_NAMES
from simclr_tf.models.fused_batch_norm import FusedBatchNormalization
from simclr_tf.run_dir import RunDir
from simclr_tf.training.builders import build_model
from simclr_tf.training.checkpoints import model_from_run
from tf_hub_export.keras_file import functional_model


def random_model(config: ModelConfig, image_size: int):
    """Our model with every weight random (zero-initialised gammas and moving statistics too),
    its BN on Keras's arithmetic (fused=False) like the functional model's built-in BN."""
    keras.utils.set_random_seed(0)
    model = build_model(config, image_size=image_size, num_classes=10, train_mode="finetune", num_replicas=1)
    rng = np.random.default_rng(0)
    for variable in model.variables:
        if "moving_variance" in variable.path:
            variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype("float32"))
        else:
            variable.assign(rng.normal(0, 0.2, variable.shape).astype("float32"))
    for layer in model._flatten_layers():
        if isinstance(layer, FusedBatchNormalization):
            layer.fused = False
    return model


def relative(ours: dict, theirs: dict) -> dict[str, float]:
    return {name: float(np.abs(np.asarray(ours[name]) - np.asarray(theirs[name])).max()
                        / max(np.abs(np.asarray(ours[name])).max(), 1e-12)) for name in ours}


def moving_statistics(model) -> np.ndarray:
    """Every moving mean and variance, as one sorted array: the functional model splits a selective
    kernel's statistics in two halves, which changes their layers but not their values."""
    return np.sort(np.concatenate([v.numpy().ravel() for v in model.variables if "moving_" in v.path]))


@pytest.mark.parametrize("config, image_size, training_tolerance", [
    # Basic blocks, CIFAR stem, ResNet-D shortcuts (sk_ratio), 2-layer head: the same float ops.
    (ModelConfig(resnet_depth=18, width_multiplier=0.25, cifar_stem=True, sk_ratio=0.0625, num_proj_layers=2), 16,
     1e-6),
    # Bottlenecks with selective kernels and squeeze-excitation, deep stem, 3-layer head read at layer 1.
    # The selective kernel's softmax over two streams is sigmoid(l0 - l1) here: ~2e-7 apart, which
    # batch statistics of 4 images at 2x2 px (block group 4) amplify to ~2e-5 on random weights.
    (ModelConfig(resnet_depth=50, width_multiplier=0.125, sk_ratio=0.0625, se_ratio=0.25, num_proj_layers=3,
                 ft_proj_selector=1), 64, 1e-4),
], ids=["r18_cifar_resnet_d", "r50_sk_se"])
def test_the_functional_model_computes_ours_with_built_in_layers(config, image_size, training_tolerance):
    model = random_model(config, image_size)
    functional = functional_model(model)
    custom = {type(layer).__module__ for layer in functional._flatten_layers() if layer is not functional}
    assert all(module.startswith("keras.") for module in custom), custom
    assert sum(w.size for w in functional.get_weights()) == sum(w.numpy().size for w in model.weights)
    images = np.random.default_rng(1).uniform(0, 1, (4, image_size, image_size, 3)).astype("float32")
    expected = {n: np.asarray(v) for n, v in model(images, training=False).items()}
    outputs = functional(images, training=False)
    assert set(outputs) == set(OUTPUT_NAMES)
    assert max(relative(expected, outputs).values()) <= 1e-6, relative(expected, outputs)
    differences = relative(model(images, training=True), functional(images, training=True))
    assert max(differences.values()) <= training_tolerance, differences
    # The training-mode call updated the same moving statistics the same way.
    np.testing.assert_allclose(moving_statistics(functional), moving_statistics(model), rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("run"))
    check_ok(run_cli(*TINY_FLAGS, "--train_steps=2", "--checkpoint_steps=2", "--noexport_hub_module",
                     f"--model_dir={model_dir}"))
    return model_dir


def export_cli(*args):
    return subprocess.run([sys.executable, "-m", "tf_hub_export", *args], cwd=REPO, env=environment(),
                          capture_output=True, text=True, timeout=600)


def test_a_run_exports_a_keras_file_that_loads_and_trains_without_simclr_tf(tiny_run, tmp_path):
    path = str(tmp_path / "encoder.keras")
    result = export_cli(f"--model_dir={tiny_run}", f"--keras_file={path}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == f"exported {path}"
    assert sorted(os.listdir(tmp_path)) == ["encoder.keras"]  # No temporary file left behind.

    images = np.random.default_rng(2).uniform(0, 1, (8, 16, 16, 3)).astype("float32")
    labels = np.arange(8) % 10
    report, outputs = load_without_simclr_tf(path, images, labels, tmp_path)
    assert not report["simclr_tf_imported"]
    assert report["outputs"] == sorted(OUTPUT_NAMES)
    assert report["losses"][-1] < report["losses"][0], report["losses"]
    model, _ = model_from_run(RunDir.open(tiny_run))
    differences = relative(model(images, training=False), outputs)
    assert max(differences.values()) <= 1e-5, differences


def test_a_keras_file_name_without_the_keras_suffix_is_refused(tiny_run, tmp_path):
    result = export_cli(f"--model_dir={tiny_run}", f"--keras_file={tmp_path}/encoder.h5")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert error_line(result) == f"error: --keras_file={tmp_path}/encoder.h5: must end in .keras (the file format " \
                                 f"of Keras 3)"
    assert os.listdir(tmp_path) == []
