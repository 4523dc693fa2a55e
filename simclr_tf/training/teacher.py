"""The frozen teacher of distillation: the class logits of a fine-tuned run or an exported module.

SimCLRv2 (Chen et al. 2020, arXiv:2006.10029, §2, eq. 2) distils a fine-tuned network into a
student on unlabeled images. The teacher is built once under the training strategy (its
variables on every replica), always runs in inference mode (BN moving statistics, no updates)
and is never saved into the student's checkpoints: nothing here is tracked by them.
"""

from __future__ import annotations

import os
from typing import Callable

import tensorflow as tf

from simclr_tf.errors import PathError
from simclr_tf.run_dir import CONFIG_FILE, CheckpointError, RunDir
from simclr_tf.training.builders import build_model
from simclr_tf.training.checkpoints import restore_model, supervised_classes

LOGITS = "logits_sup"


class TeacherError(PathError, ValueError):
    """The teacher cannot be used: the message names the path and the problem."""


class Teacher:
    """`teacher.logits(images)` -> float32 [n, num_classes], no gradient.

    `path`: a simclr_tf.run model_dir (its newest checkpoint), a checkpoint prefix inside one,
    or a SavedModel exported by tf_hub_export (its `__call__(images, training)` and outputs).
    An original google-research/simclr model is first imported as a run by the caller.
    """

    def __init__(self, path: str, strategy: tf.distribute.Strategy, image_size: int):
        saved_model = tf.io.gfile.exists(os.path.join(path, "saved_model.pb"))
        with strategy.scope():
            if saved_model:
                self._call, self.num_classes = _from_module(path, image_size)
                self.description = f"exported module {path}"
            else:
                model, checkpoint = _from_run(path, image_size)
                model.trainable = False
                self._call = lambda images: model(images, training=False)
                self.num_classes = model.supervised_head.num_classes
                self.description = f"{checkpoint} (ResNet-{model.encoder.depth} {model.encoder.width_multiplier:g}x)"

    def logits(self, images: tf.Tensor) -> tf.Tensor:
        return tf.stop_gradient(tf.cast(self._call(images)[LOGITS], tf.float32))


def _from_run(path: str, image_size: int):
    run_path, checkpoint = (path, None) if tf.io.gfile.isdir(path) else (os.path.dirname(path), path)
    if not tf.io.gfile.exists(os.path.join(run_path, CONFIG_FILE)):
        raise TeacherError("teacher", path, "is neither a simclr_tf.run model_dir (or a checkpoint in one) nor an "
                                            "exported module (saved_model.pb)")
    run = RunDir.open(run_path)
    try:
        checkpoint = run.checkpoint(checkpoint)
    except CheckpointError as error:
        raise TeacherError("teacher", path, f"holds no checkpoint ({error})") from error
    num_classes = supervised_classes(checkpoint)
    if not num_classes:
        raise TeacherError("teacher", path, "has no supervised head (logits_sup): distil from a fine-tuned run")
    model = build_model(run.config.model, image_size=image_size, num_classes=num_classes,
                        train_mode=run.config.train.train_mode, num_replicas=1)
    restore_model(model, checkpoint)
    return model, checkpoint


def _from_module(path: str, image_size: int) -> tuple[Callable, int]:
    try:
        module = tf.saved_model.load(path)
    except Exception as error:  # A broken or foreign SavedModel; TF raises several types.
        raise TeacherError("teacher", path, f"cannot be loaded as a SavedModel ({type(error).__name__})") from error
    probe = module(tf.zeros([2, image_size, image_size, 3]), training=False)
    if LOGITS not in probe:
        raise TeacherError("teacher", path, f"the module has no {LOGITS} output (export a fine-tuned run)")
    return (lambda images: module(images, training=False)), int(probe[LOGITS].shape[-1])
