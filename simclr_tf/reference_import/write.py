"""Writes an imported model as a simclr_tf.run model_dir: config.json and ckpt-<step>.

The run is written into a sibling temporary directory and renamed into place, so a
failure leaves no half run at `model_dir` (on gs://, where a directory rename copies,
a failure can leave the temporary directory, never a partial model_dir).
"""

from __future__ import annotations

import os
import uuid

import tensorflow as tf

from simclr_tf.config import RunConfig
from simclr_tf.errors import PathError
from simclr_tf.models import SimCLRModel
from simclr_tf.run_dir import CONFIG_FILE
from simclr_tf.training import checkpoints


class ModelDirError(PathError, ValueError):
    """model_dir cannot receive the imported run."""


def check_model_dir(model_dir: str) -> None:
    """Refuses a model_dir that exists and is not empty (it may hold a run)."""
    if not model_dir:
        raise ModelDirError("model_dir", repr(model_dir), "must be set")
    if tf.io.gfile.exists(model_dir):
        if not tf.io.gfile.isdir(model_dir):
            raise ModelDirError("model_dir", model_dir, "exists and is not a directory")
        contents = tf.io.gfile.listdir(model_dir)
        if contents:
            held = "a run" if CONFIG_FILE in contents or "checkpoint" in contents else "files"
            raise ModelDirError("model_dir", model_dir, f"already holds {held} ({', '.join(sorted(contents)[:3])}"
                                                        f"{', ...' if len(contents) > 3 else ''}); choose a new "
                                                        "directory")


def write_run(model: SimCLRModel, config: RunConfig, step: int) -> str:
    """Writes config.json and ckpt-<step> (with its CheckpointManager index) to config.model_dir;
    returns the checkpoint prefix."""
    model_dir = config.model_dir
    check_model_dir(model_dir)
    parent = os.path.dirname(model_dir.rstrip("/")) or "."
    staging = os.path.join(parent, f".{os.path.basename(model_dir.rstrip('/'))}.importing-{uuid.uuid4().hex[:8]}")
    tf.io.gfile.makedirs(staging)
    try:
        config.write(os.path.join(staging, CONFIG_FILE))
        manager = tf.train.CheckpointManager(checkpoints.model_checkpoint(model), staging, max_to_keep=None)
        prefix = manager.save(checkpoint_number=step)
        if tf.io.gfile.exists(model_dir):  # Checked empty above.
            tf.io.gfile.rmtree(model_dir)
        tf.io.gfile.rename(staging, model_dir)
    except BaseException:
        if tf.io.gfile.exists(staging):
            tf.io.gfile.rmtree(staging)
        raise
    return os.path.join(model_dir, os.path.basename(prefix))
