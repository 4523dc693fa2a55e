"""From a training checkpoint (or an in-memory model) to a versioned SavedModel directory."""

from __future__ import annotations

import json
import os

import tensorflow as tf

from simclr_tf.config import ModelConfig
from simclr_tf.models import SimCLRModel
from simclr_tf.training import checkpoints
from simclr_tf.training.builders import build_model
from simclr_tf.training.evaluate import step_of
from tf_hub_export.atomic import write_version
from tf_hub_export.module import HubModule


def _num_classes(checkpoint: str) -> int | None:
    for name, shape in tf.train.list_variables(checkpoint):
        if "supervised_head" in name and name.split("/")[1].endswith(".Sbias"):
            return int(shape[0])
    return None


def model_from_checkpoint(model_dir: str, checkpoint: str | None = None) -> tuple[SimCLRModel, str, dict]:
    """Rebuilds the run's model (one device, plain BN) from model_dir/config.json and loads the
    checkpoint (default: the newest in model_dir). Returns (model, checkpoint path, config dict)."""
    config_path = os.path.join(model_dir, "config.json")
    if not os.path.exists(config_path):
        raise FileNotFoundError(f"--model_dir={model_dir}: no config.json (is it a simclr_tf.run model_dir?)")
    with open(config_path) as f:
        run_config = json.load(f)
    path = checkpoints.resolve(checkpoint or model_dir)
    model = build_model(
        ModelConfig(**run_config["model"]),
        image_size=run_config["augment"]["image_size"],
        num_classes=_num_classes(path),
        train_mode=run_config["train"]["train_mode"],
        num_replicas=1,
    )
    checkpoints.restore_model(model, path)
    return model, path, run_config


def export(model: SimCLRModel, export_dir: str, step: int, *, include_projection_head: bool = True,
           freeze_batch_norm: bool = False, keep: int = 1) -> str:
    """Writes export_dir/<step>/ atomically (keeping the newest `keep`); returns its path."""
    module = HubModule(model, include_projection_head=include_projection_head, freeze_batch_norm=freeze_batch_norm)

    def write(directory: str) -> None:
        tf.saved_model.save(module, directory, signatures={"serving_default": module.serve})

    return write_version(export_dir, step, write, keep)


def export_checkpoint(model_dir: str, *, checkpoint: str | None = None, export_dir: str | None = None,
                      include_projection_head: bool = True, freeze_batch_norm: bool = False, keep: int = 1) -> str:
    model, path, _ = model_from_checkpoint(model_dir, checkpoint)
    return export(model, export_dir or os.path.join(model_dir, "saved_model"), step_of(path),
                  include_projection_head=include_projection_head, freeze_batch_norm=freeze_batch_norm, keep=keep)
