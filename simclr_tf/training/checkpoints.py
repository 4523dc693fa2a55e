"""Training checkpoints: resume from model_dir, or start fine-tuning from a pretraining checkpoint.

The model is checkpointed as a flat {variable.path: variable} dict, not as its
object graph: Keras 3 keeps sub-layers held in Python lists (ResNet block groups,
projection-head layers) out of TensorFlow's checkpoint graph, so `Checkpoint(model=
model)` would silently drop most weights. Variable paths are stable names
("simclr/resnet/block_group1/block1/conv_1/conv2d/kernel"), so checkpoints stay
readable and partial restores (encoder only) are a dict filter.

tf.train.CheckpointManager writes the data files first and the `checkpoint` index
file last (atomically), so a run killed mid-save resumes from the previous one.
"""

from __future__ import annotations

import re

import keras
import tensorflow as tf
from absl import logging

from simclr_tf.models import SimCLRModel
from simclr_tf.run_dir import CheckpointError, RunDir, resolve_checkpoint
from simclr_tf.training.builders import build_model

MODEL_KEY = "model"
PRETRAINED_PARTS = ("/resnet/", "/projection_head/")
# Checkpoint keys of the supervised head's bias: "model/<escaped variable path>/.ATTRIBUTES/...".
_SUPERVISED_BIAS = re.compile(r"^model/[^/]*supervised_head[^/]*\.Sbias/")


def model_variables(model: keras.Model, parts: tuple[str, ...] | None = None) -> dict[str, tf.Variable]:
    """{path: variable} of every model variable (or those whose path contains one of `parts`)."""
    variables = {v.path: v for v in model.variables if parts is None or any(p in f"/{v.path}/" for p in parts)}
    if parts is None and len(variables) != len(model.variables):
        raise ValueError(f"{model.name}: variable paths are not unique; a checkpoint could not tell them apart")
    return variables


def model_checkpoint(model: keras.Model, **others) -> tf.train.Checkpoint:
    return tf.train.Checkpoint(**{MODEL_KEY: model_variables(model)}, **others)


def make_manager(model: SimCLRModel, optimizer, model_dir: str, max_to_keep: int) -> tf.train.CheckpointManager:
    return tf.train.CheckpointManager(model_checkpoint(model, optimizer=optimizer), directory=model_dir,
                                      max_to_keep=max_to_keep)


def _restore_variables(variables: dict[str, tf.Variable], path: str) -> None:
    try:
        tf.train.Checkpoint(**{MODEL_KEY: variables}).read(path).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError) as error:  # Missing variables, or other shapes.
        message = " ".join(str(error).split())[:300]
        raise CheckpointError("checkpoint", path, f"does not hold this model's weights ({message})") from error


def restore_model(model: keras.Model, path: str) -> None:
    """Loads every model variable (evaluation); optimizer state is not read."""
    _restore_variables(model_variables(model), resolve_checkpoint(path))


def restore_pretrained(model: SimCLRModel, path: str, *, zero_init_logits_layer: bool) -> None:
    """Loads encoder and projection head from a (pretraining) checkpoint; not the optimizer or step.

    The supervised head is loaded too when the checkpoint's has the same shape (the
    online linear head of pretraining is a good start for fine-tuning) unless
    `zero_init_logits_layer`; with another number of classes it starts fresh.
    """
    path = resolve_checkpoint(path)
    _restore_variables(model_variables(model, PRETRAINED_PARTS), path)
    head = model.supervised_head
    if head is None:
        return
    if zero_init_logits_layer:
        for variable in head.variables:
            variable.assign(tf.zeros_like(variable))
        return
    try:
        _restore_variables(model_variables(model, ("/supervised_head/",)), path)
        logging.info("supervised head initialised from %s", path)
    except CheckpointError as error:  # Another number of classes, or no head stored.
        logging.info("supervised head starts fresh: %s", error)


def restore_or_initialize(manager: tf.train.CheckpointManager, *, init_checkpoint: str | None, model: SimCLRModel,
                          zero_init_logits_layer: bool) -> str:
    """Resumes from model_dir's newest intact checkpoint; else initialises from `init_checkpoint`; says which.

    A newest checkpoint whose data cannot be read (a disk that filled up, a file lost or
    truncated by hand) is skipped with a warning, and the run resumes from the newest
    one that restores; when the index names checkpoints but none restores, that is an
    error: starting afresh would silently throw the run away. Every restore sets every
    variable, so a half-read broken checkpoint leaves nothing behind.
    """
    skipped = []
    for path in reversed(manager.checkpoints):
        try:
            manager.checkpoint.restore(path).assert_existing_objects_matched()
        # A missing file is NotFound, a damaged one DataLoss; a truncated one comes out of TF's
        # checkpoint reader as IndexError ("Read less bytes than requested").
        except (tf.errors.OpError, IndexError) as error:
            logging.warning("checkpoint %s cannot be read, trying an older one: %s", path,
                            " ".join(str(error).split())[:300])
            skipped.append(path)
            continue
        if skipped:
            return f"resumed from {path} (skipped {', '.join(skipped)}: unreadable)"
        return f"resumed from {path}"
    if skipped:
        raise CheckpointError("model_dir", manager.directory,
                              f"no intact checkpoint: {', '.join(skipped)} cannot be read (see the warnings); "
                              f"move them away to start afresh")
    if init_checkpoint:
        restore_pretrained(model, init_checkpoint, zero_init_logits_layer=zero_init_logits_layer)
        return f"initialised from {init_checkpoint}"
    return "initialised randomly"


def supervised_classes(checkpoint: str) -> int | None:
    """The number of classes of the checkpoint's supervised head; None when it has none."""
    for key, shape in tf.train.list_variables(checkpoint):
        if _SUPERVISED_BIAS.match(key):
            return int(shape[0])
    return None


def model_from_run(run: RunDir, checkpoint: str | None = None) -> tuple[SimCLRModel, str]:
    """The run's model with the weights of `checkpoint` (default: the run's newest); returns
    (model, checkpoint prefix).

    Rebuilt from the run's config on one device with plain BN, in float32 whatever the
    training precision (variables are float32 either way), so what is built from it
    (a module, features) is float32 on any device. Whether there is a supervised head,
    and its classes, are read from the checkpoint, which is what decides them.
    """
    path = run.checkpoint(checkpoint)
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        model = build_model(
            run.config.model,
            image_size=run.config.augment.image_size,
            num_classes=supervised_classes(path),
            train_mode=run.config.train.train_mode,
            num_replicas=1,
        )
    finally:
        keras.config.set_dtype_policy(policy)
    restore_model(model, path)
    return model, path
