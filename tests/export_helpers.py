"""Tiny models, run directories and fresh-process scripts for tests/test_tf_hub_export.py."""

import os
import signal
import subprocess
import sys

import numpy as np
import tensorflow as tf

from cli_helpers import REPO, environment
from simclr_tf.augment import AugmentConfig
from simclr_tf.config import ModelConfig, RunConfig
from simclr_tf.training import checkpoints
from simclr_tf.training.builders import build_model

TINY = ModelConfig(resnet_depth=18, width_multiplier=0.125, cifar_stem=True, num_proj_layers=2)
# An even batch: TF 2.21's oneDNN Conv2DBackpropFilter crashes at random for a 1x1 stride-2
# conv on 16x16 maps with odd batches (3, 7, 9 here), in any model, exported or not.
IMAGES = np.random.default_rng(0).uniform(size=(4, 16, 16, 3)).astype(np.float32)
# ResNet-18 at 1/8 width, CIFAR stem (3x3, no max-pool), 16 px: channels 8 (stem), 8, 16, 32, 64;
# strides 1, 1, 2, 4, 8; h has 64 features, z 128 (proj_out_dim), 10 classes.
EXPECTED_SHAPES = {
    "initial_conv": (4, 16, 16, 8), "initial_max_pool": (4, 16, 16, 8), "block_group1": (4, 16, 16, 8),
    "block_group2": (4, 8, 8, 16), "block_group3": (4, 4, 4, 32), "block_group4": (4, 2, 2, 64),
    "final_avg_pool": (4, 64), "proj_head_input": (4, 64), "proj_head_output": (4, 128), "logits_sup": (4, 10),
}


def tiny_model(seed: int = 0, train_mode: str = "pretrain"):
    """A built tiny SimCLRModel whose every weight, BN statistics included, is off its initial value.

    Fresh BN statistics (mean 0, variance 1) and zero-initialised gammas would hide a module
    that reads the wrong variable or the wrong BN mode.
    """
    model = build_model(TINY, image_size=16, num_classes=10, train_mode=train_mode, num_replicas=1)
    for i, variable in enumerate(model.variables):
        shape, key = variable.shape, [seed, i]
        if "moving_variance" in variable.path:
            variable.assign(tf.random.stateless_uniform(shape, key, 0.5, 2.0))
        else:
            variable.assign(variable + tf.random.stateless_normal(shape, key, stddev=0.1))
    return model


def write_run(model_dir: str, model, steps: tuple[int, ...]) -> None:
    """A model_dir as simclr_tf.run leaves it: config.json, ckpt-<step> for each step and the index."""
    config = RunConfig(model_dir=model_dir, model=TINY, augment=AugmentConfig.for_image_size(16))
    config.write(os.path.join(model_dir, "config.json"))
    manager = tf.train.CheckpointManager(checkpoints.model_checkpoint(model), model_dir, max_to_keep=None)
    for step in steps:
        manager.save(checkpoint_number=step)


def run_module(*args: str, timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    """`python -m <args>` from the repo, as a user runs it."""
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=environment(**env),
                          capture_output=True, text=True, timeout=timeout)


def start(*argv: str, cwd: str = REPO, **env: str) -> subprocess.Popen:
    """`python *argv` in the background; the test reads its stdout lines or kills it."""
    return subprocess.Popen([sys.executable, *argv], cwd=cwd, env=environment(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    process.stdout.close()
    process.stderr.close()


def tree(directory: str) -> dict[str, bytes]:
    """{relative path: content} of every file under `directory` (to show it is untouched)."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, directory)] = f.read()
    return files


# Runs in a fresh process WITHOUT simclr_tf on the path, as a TF-Hub user has it: loads the
# module with tf.saved_model.load and runs it and its serving signature, then fine-tunes it
# inside a tf_keras model through hub.KerasLayer (trainable and not; and the frozen-BN module).
USER_SCRIPT = """
import json, sys
import numpy as np
import tensorflow as tf
import tensorflow_hub as hub
import tf_keras

path, frozen_bn_path, images_path, outputs_path = sys.argv[1:5]
images = np.load(images_path)
module = tf.saved_model.load(path)
outputs = {name: value.numpy() for name, value in module(images, training=False).items()}
served = module.signatures["serving_default"](images=tf.constant(images))
np.savez(outputs_path, **outputs)
report = {
    "imported": sorted(m for m in sys.modules if m.split(".")[0] in ("simclr_tf", "tf_hub_export")),
    "serving_outputs": sorted(served),
    "serving_max_diff": max(float(np.max(np.abs(served[k].numpy() - outputs[k]))) for k in outputs),
    "variables": len(module.variables),
    "trainable_variables": len(module.trainable_variables),
}
labels = np.arange(len(images)) % 3
for name, module_path, trainable in (("trainable", path, True), ("not_trainable", path, False),
                                     ("frozen_bn_trainable", frozen_bn_path, True)):
    tf_keras.utils.set_random_seed(0)
    layer = hub.KerasLayer(module_path, trainable=trainable, output_key="final_avg_pool")
    classifier = tf_keras.Sequential([layer, tf_keras.layers.Dense(3)])
    classifier.compile(tf_keras.optimizers.SGD(0.05),
                       tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    classifier.build((None,) + images.shape[1:])
    before = [w.numpy().copy() for w in layer.weights]
    losses = classifier.fit(images, labels, epochs=5, batch_size=len(images), shuffle=False,
                            verbose=0).history["loss"]
    trainable_ids = {id(w) for w in layer.trainable_weights}
    changed = [id(w) in trainable_ids for b, w in zip(before, layer.weights) if not np.array_equal(b, w.numpy())]
    report[name] = {"losses": losses, "trainable_weights": len(layer.trainable_weights),
                    "weights": len(layer.weights), "changed_trainable": sum(changed),
                    "changed_non_trainable": len(changed) - sum(changed)}
print(json.dumps(report))
"""

# Writes export_dir/<step> through atomic.write_version with a slow fake module (files written
# one by one), printing a line at the moment the test should SIGKILL it:
#   mid_write: after the first file of the module is written;
#   mid_swap: re-exporting an existing step, after the old one is renamed away and before the
#             new one is renamed in (the one moment the step has no directory).
KILLABLE_WRITER = """
import os, sys, time
import tensorflow as tf
from tf_hub_export import atomic

export_dir, step, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def write(directory):
    os.makedirs(directory)
    for i in range(5):
        with open(os.path.join(directory, f"part-{i}"), "w") as f:
            f.write("new" * 1000)
        if mode == "mid_write":
            print("KILL", flush=True)
            time.sleep(60)

rename = tf.io.gfile.rename
def rename_then_wait(src, dst, overwrite=False):
    rename(src, dst, overwrite)
    if mode == "mid_swap" and ".replaced-" in dst:
        print("KILL", flush=True)
        time.sleep(60)
tf.io.gfile.rename = rename_then_wait
atomic.write_version(export_dir, step, write, keep=5)
"""
