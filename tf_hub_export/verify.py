"""python -m tf_hub_export.verify PATH [--model_dir=DIR [--checkpoint=CKPT]] [--image_size=N]

Loads an exported module with tf.saved_model.load, with hub.KerasLayer and with the session
loader TF Serving uses, runs one batch
of random images and prints the output table (name, shape, dtype). With --model_dir it
also rebuilds the run's model from the matching checkpoint and prints each output's max
absolute difference to it. Exits 1 with `error: ...` when the module cannot be loaded or
an output differs by more than --tolerance.
"""

import os

import numpy as np
import tensorflow as tf
from absl import app, flags

from simclr_tf import cli_errors
from simclr_tf.errors import UserError
from simclr_tf.run_dir import RunDir
from simclr_tf.training.checkpoints import model_from_run
from tf_hub_export.checks import verify

flags.DEFINE_string("model_dir", None, "The simclr_tf.run model_dir of the module: compare with its checkpoint.")
flags.DEFINE_string("checkpoint", None, "Checkpoint to compare with; default: model_dir/ckpt-<step> for .../<step>.")
flags.DEFINE_integer("image_size", None, "Side of the random test images; default: the run's image_size, else 32.")
flags.DEFINE_integer("batch_size", 4, "Test images in the batch.")
flags.DEFINE_float("tolerance", 1e-5, "Largest allowed absolute difference (to the model, and between load paths).")
FLAGS = flags.FLAGS


class UsageError(UserError):
    """The arguments do not say what to compare with."""


def _reference(path: str):
    """(model, checkpoint, image_size) of --model_dir, or Nones without it."""
    if not FLAGS.model_dir:
        if FLAGS.checkpoint:
            raise UsageError("--checkpoint needs --model_dir (its config.json describes the model)")
        return None, None, None
    run = RunDir.open(FLAGS.model_dir)
    checkpoint = FLAGS.checkpoint
    if checkpoint is None:
        step = os.path.basename(os.path.normpath(path))
        checkpoint = run.file(f"ckpt-{step}")
        if not step.isdigit():
            raise UsageError(f"{path} is not named by a step, so its checkpoint is unknown; pass --checkpoint")
    model, checkpoint = model_from_run(run, checkpoint)
    return model, checkpoint, run.config.augment.image_size


def main(argv):
    if len(argv) != 2:
        raise app.UsageError("expected one PATH: python -m tf_hub_export.verify PATH [--model_dir=DIR]")
    path = argv[1]
    tf.get_logger().setLevel("WARNING")  # The session loader's INFO lines would hide the table.
    try:
        model, checkpoint, run_image_size = _reference(path)
        size = FLAGS.image_size or run_image_size or 32
        images = np.random.default_rng(0).uniform(size=(FLAGS.batch_size, size, size, 3)).astype(np.float32)
        table = verify(path, images, reference=model, tolerance=FLAGS.tolerance)
    except UserError as error:  # VerificationError, RunDirError, CheckpointError too.
        cli_errors.exit_with(error)
    print(f"{'output':<18} {'shape':<22} {'dtype':<8}" + (" max |diff|" if model is not None else ""))
    for row in table:
        diff = f" {row.max_abs_diff:.3g}" if row.max_abs_diff is not None else ""
        print(f"{row.name:<18} {str(row.shape):<22} {row.dtype:<8}{diff}")
    if model is not None:
        worst = max(row.max_abs_diff for row in table)
        print(f"max abs difference to {checkpoint}: {worst:.3g} (tolerance {FLAGS.tolerance:g})")
    print(f"ok: {path} loads with tf.saved_model.load, hub.KerasLayer and the TF Serving session loader; "
          f"{len(table)} outputs, serving_default agrees")


if __name__ == "__main__":
    app.run(main)
