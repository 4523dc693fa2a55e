"""From an in-memory model, or a run's checkpoint, to a versioned SavedModel directory."""

from __future__ import annotations

import json
import os
import re

import keras
import tensorflow as tf

from simclr_tf.config import ModelConfig
from simclr_tf.models import SimCLRModel
from simclr_tf.training import checkpoints
from simclr_tf.training.builders import build_model
from tf_hub_export.atomic import write_version
from tf_hub_export.module import SERVING_SIGNATURE, HubModule

# Checkpoint keys of the supervised head's bias: "model/<escaped variable path>/.ATTRIBUTES/...".
_SUPERVISED_BIAS = re.compile(r"^model/[^/]*supervised_head[^/]*\.Sbias/")


def export(model: SimCLRModel, export_dir: str, step: int, *, include_projection_head: bool = True,
           freeze_batch_norm: bool = False, keep: int = 1) -> str:
    """Writes `model` as export_dir/<step>/ atomically, keeps the newest `keep`; returns the path.

    The module computes in the model's dtype policy and returns float32; after
    mixed-precision training, `export_checkpoint` gives a float32 module instead.
    """
    module = HubModule(model, include_projection_head=include_projection_head, freeze_batch_norm=freeze_batch_norm)

    def write(directory: str) -> None:
        tf.saved_model.save(module, directory, signatures={SERVING_SIGNATURE: module.serve})

    return write_version(export_dir, step, write, keep=keep)


def export_checkpoint(model_dir: str, *, checkpoint: str | None = None, export_dir: str | None = None,
                      include_projection_head: bool = True, freeze_batch_norm: bool = False, keep: int = 1) -> str:
    """Exports a run's checkpoint (default: its newest) to export_dir (default model_dir/saved_model)/<step>."""
    model, path, _ = model_from_checkpoint(model_dir, checkpoint)
    return export(model, export_dir or os.path.join(model_dir, "saved_model"), step_of(path),
                  include_projection_head=include_projection_head, freeze_batch_norm=freeze_batch_norm, keep=keep)


def model_from_checkpoint(model_dir: str, checkpoint: str | None = None) -> tuple[SimCLRModel, str, dict]:
    """The run's model with the checkpoint's weights; returns (model, checkpoint prefix, run config dict).

    Rebuilt from model_dir/config.json (what simclr_tf.run wrote) on one device with
    plain BN, in float32 whatever the training precision (variables are float32 either
    way): the module then serves float32 on any device. Whether there is a supervised
    head, and its classes, are read from the checkpoint, which is what decides them.
    """
    config_path = os.path.join(model_dir, "config.json")
    if not tf.io.gfile.exists(config_path):
        raise FileNotFoundError(f"--model_dir={model_dir}: no config.json (not a simclr_tf.run model_dir?)")
    with tf.io.gfile.GFile(config_path) as f:
        run_config = json.load(f)
    path = checkpoints.resolve(checkpoint or model_dir)
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        model = build_model(
            ModelConfig(**run_config["model"]),
            image_size=run_config["augment"]["image_size"],
            num_classes=_num_classes(path),
            train_mode=run_config["train"]["train_mode"],
            num_replicas=1,
        )
    finally:
        keras.config.set_dtype_policy(policy)
    checkpoints.restore_model(model, path)
    return model, path, run_config


def step_of(checkpoint: str) -> int:
    """The training step in a checkpoint's name (simclr_tf.run names them ckpt-<step>)."""
    match = re.search(r"ckpt-(\d+)$", checkpoint)
    if not match:
        raise ValueError(f"--checkpoint={checkpoint}: not named ckpt-<step>, so the export's version is unknown")
    return int(match.group(1))


def _num_classes(checkpoint: str) -> int | None:
    for key, shape in tf.train.list_variables(checkpoint):
        if _SUPERVISED_BIAS.match(key):
            return int(shape[0])
    return None
