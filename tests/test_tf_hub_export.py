"""tf_hub_export: modules that load without simclr_tf, fine-tune in hub.KerasLayer, and are
never visible half-written."""

import glob
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from cli_helpers import REPO, TINY_FLAGS, check_ok, environment, run_cli
from simclr_tf.config import ModelConfig
from simclr_tf.training.builders import build_model
from tf_hub_export import export
from tf_hub_export.atomic import PAUSE_BEFORE_RENAME_ENV
from tf_hub_export.exporter import model_from_checkpoint

IMAGES = np.random.default_rng(0).uniform(size=(3, 16, 16, 3)).astype(np.float32)
# ResNet-18 at 1/8 width, CIFAR stem, 16 px: widths 8, 8, 16, 32, 64; strides 1, 1, 2, 4, 8.
EXPECTED_SHAPES = {
    "initial_conv": (3, 16, 16, 8), "initial_max_pool": (3, 16, 16, 8), "block_group1": (3, 16, 16, 8),
    "block_group2": (3, 8, 8, 16), "block_group3": (3, 4, 4, 32), "block_group4": (3, 2, 2, 64),
    "final_avg_pool": (3, 64), "proj_head_input": (3, 64), "proj_head_output": (3, 128), "logits_sup": (3, 10),
}

LOAD_WITHOUT_PACKAGE = """
import json, sys
import numpy as np
import tensorflow as tf
module = tf.saved_model.load(sys.argv[1])
images = np.load(sys.argv[2])
outputs = {k: v.numpy() for k, v in module(images, training=False).items()}
served = module.signatures["serving_default"](images=tf.constant(images))
np.savez(sys.argv[3], **outputs)
print(json.dumps({"simclr_tf_imported": any(m.startswith(("simclr_tf", "tf_hub_export")) for m in sys.modules),
                  "serving_keys": sorted(served), "num_variables": len(module.variables),
                  "num_trainable": len(module.trainable_variables)}))
"""


def tiny_model():
    model = build_model(ModelConfig(resnet_depth=18, width_multiplier=0.125, cifar_stem=True, num_proj_layers=2),
                        image_size=16, num_classes=10, train_mode="pretrain", num_replicas=1)
    for i, variable in enumerate(model.variables):  # Moving statistics too, so BN modes differ.
        if "moving_variance" in variable.path:
            variable.assign(tf.random.stateless_uniform(variable.shape, [i, 1], 0.5, 2.0))
        elif "moving_mean" in variable.path:
            variable.assign(tf.random.stateless_normal(variable.shape, [i, 2]))
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = tiny_model()
    path = export(model, str(tmp_path_factory.mktemp("export")), step=7)
    return model, path


def test_export_reloads_without_simclr_tf_and_matches_the_model(exported, tmp_path):
    model, path = exported
    assert os.path.basename(path) == "7"
    np.save(tmp_path / "images.npy", IMAGES)
    result = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_PACKAGE, path, str(tmp_path / "images.npy"),
                             str(tmp_path / "out.npz")], env=environment(PYTHONPATH=""), cwd=str(tmp_path),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["simclr_tf_imported"] is False
    assert report["serving_keys"] == sorted(EXPECTED_SHAPES)
    assert report["num_variables"] == len(model.variables)
    assert report["num_trainable"] == len(model.trainable_variables)
    loaded = np.load(tmp_path / "out.npz")
    expected = model(IMAGES, training=False)
    assert sorted(loaded.files) == sorted(EXPECTED_SHAPES)
    for name, shape in EXPECTED_SHAPES.items():
        assert loaded[name].shape == shape, name
        np.testing.assert_allclose(loaded[name], np.asarray(expected[name]), atol=1e-5, err_msg=name)


FINE_TUNE_WITH_HUB = """
import json, sys
import numpy as np
import tensorflow_hub as hub
import tf_keras
images = np.load(sys.argv[2])
labels = np.array([0, 1, 2])
report = {}
for trainable in (True, False):
    layer = hub.KerasLayer(sys.argv[1], trainable=trainable, output_key="final_avg_pool")
    classifier = tf_keras.Sequential([layer, tf_keras.layers.Dense(3)])
    classifier.compile(tf_keras.optimizers.SGD(0.05), tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    classifier.build((None, 16, 16, 3))
    before = [w.numpy().copy() for w in layer.weights]
    losses = classifier.fit(images, labels, epochs=5, batch_size=3, verbose=0).history["loss"]
    changed = sum(not np.array_equal(b, w.numpy()) for b, w in zip(before, layer.weights))
    report[str(trainable)] = {"first_loss": losses[0], "last_loss": losses[-1], "changed": changed,
                              "trainable_weights": len(layer.trainable_weights)}
print(json.dumps(report))
"""


def test_hub_keras_layer_fine_tunes_only_when_trainable(exported, tmp_path):
    # A fresh process with only tf_keras + tensorflow_hub, as a TF-Hub user has. On CPU,
    # TF 2.21's oneDNN graph rewrites crash (free(): invalid pointer) when differentiating
    # the loaded ResNet function, so fine-tuning on CPU needs TF_ENABLE_ONEDNN_OPTS=0
    # (README "Use an exported encoder"); inference is unaffected.
    _, path = exported
    np.save(tmp_path / "images.npy", IMAGES)
    result = subprocess.run([sys.executable, "-c", FINE_TUNE_WITH_HUB, path, str(tmp_path / "images.npy")],
                            env=environment(PYTHONPATH="", TF_ENABLE_ONEDNN_OPTS="0"), cwd=str(tmp_path),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for mode in ("True", "False"):
        assert report[mode]["last_loss"] < report[mode]["first_loss"]
    assert report["True"]["trainable_weights"] > 0 and report["True"]["changed"] > 0
    assert report["False"]["trainable_weights"] == 0 and report["False"]["changed"] == 0


def test_frozen_batch_norm_and_no_projection_head_options(tmp_path):
    model = tiny_model()
    frozen = tf.saved_model.load(export(model, str(tmp_path / "frozen"), 1, freeze_batch_norm=True,
                                        include_projection_head=False))
    free = tf.saved_model.load(export(model, str(tmp_path / "free"), 1))
    frozen_train = frozen(IMAGES, training=True)
    assert "proj_head_output" not in frozen_train and "proj_head_input" not in frozen_train
    assert not any("projection_head" in v.name for v in frozen.variables)
    np.testing.assert_allclose(frozen_train["final_avg_pool"], frozen(IMAGES, training=False)["final_avg_pool"], atol=1e-6)
    assert not np.allclose(free(IMAGES, training=True)["final_avg_pool"], free(IMAGES, training=False)["final_avg_pool"],
                           atol=1e-3)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("run"))
    check_ok(run_cli(*TINY_FLAGS, f"--model_dir={model_dir}", "--train_steps=4", "--checkpoint_steps=2"))
    return model_dir


def run_module(*args, extra_env=None):
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=environment(**(extra_env or {})),
                          capture_output=True, text=True, timeout=300)


def test_cli_export_and_verify_against_the_checkpoint(trained_run, tmp_path):
    export_dir = str(tmp_path / "hub")
    result = run_module("tf_hub_export", f"--model_dir={trained_run}", f"--export_dir={export_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"exported {export_dir}/4" in result.stdout
    verified = run_module("tf_hub_export.verify", f"{export_dir}/4", f"--model_dir={trained_run}")
    assert verified.returncode == 0, verified.stderr[-3000:]
    assert "max abs difference to" in verified.stdout and "final_avg_pool" in verified.stdout
    difference = float(verified.stdout.split("max abs difference to ")[1].split(": ")[1].split()[0])
    assert difference <= 1e-5


def test_killed_export_leaves_no_module_under_the_final_name_and_keeps_the_previous(trained_run, tmp_path):
    export_dir = str(tmp_path / "hub")
    first = run_module("tf_hub_export", f"--model_dir={trained_run}", f"--export_dir={export_dir}",
                       f"--checkpoint={trained_run}/ckpt-2", "--keep_hub_module_max=1")
    assert first.returncode == 0, first.stderr[-3000:]
    before = {p: os.path.getsize(p) for p in glob.glob(f"{export_dir}/2/**", recursive=True) if os.path.isfile(p)}

    process = subprocess.Popen([sys.executable, "-m", "tf_hub_export", f"--model_dir={trained_run}",
                                f"--export_dir={export_dir}"], cwd=REPO,
                               env=environment(**{PAUSE_BEFORE_RENAME_ENV: "60"}),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not glob.glob(f"{export_dir}/.tmp-4-*/saved_model.pb"):  # Fully written, not yet renamed.
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.kill()
    process.wait()
    assert not os.path.exists(f"{export_dir}/4")
    after = {p: os.path.getsize(p) for p in glob.glob(f"{export_dir}/2/**", recursive=True) if os.path.isfile(p)}
    assert after == before
    assert tf.saved_model.load(f"{export_dir}/2")(IMAGES, training=False)["final_avg_pool"].shape == (3, 64)

    again = run_module("tf_hub_export", f"--model_dir={trained_run}", f"--export_dir={export_dir}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted(os.listdir(export_dir)) == ["4"]  # Newest kept, the killed run's temporary files removed.


def test_model_from_checkpoint_needs_a_run_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="--model_dir="):
        model_from_checkpoint(str(tmp_path))
