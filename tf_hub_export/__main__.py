"""python -m tf_hub_export --model_dir=DIR [--checkpoint=CKPT] [--export_dir=DIR | --keras_file=F.keras] [options]

Exports a simclr_tf.run checkpoint as a TF2 SavedModel / TF-Hub module to
export_dir/<step>/ (atomically; the newest --keep_hub_module_max are kept) and prints
`exported PATH`. Check the result with `python -m tf_hub_export.verify PATH --model_dir=DIR`.
With --keras_file it writes a native Keras 3 file instead, which keras.saving.load_model
loads without simclr_tf (tf_hub_export.keras_file).
"""

import sys

import tensorflow as tf
from absl import app, flags

from simclr_tf import cli_errors
from simclr_tf.errors import UserError
from tf_hub_export.exporter import export_checkpoint
from tf_hub_export.keras_file import export_keras_file

flags.DEFINE_string("model_dir", None, "A simclr_tf.run model_dir (holds config.json and the checkpoints).")
flags.DEFINE_string("checkpoint", None, "Checkpoint (.../ckpt-<step>) to export; default: the newest in model_dir.")
flags.DEFINE_string("export_dir", None, "Versioned modules go to <export_dir>/<step>/; default: model_dir/saved_model.")
flags.DEFINE_bool("include_projection_head", True, "Export proj_head_input/proj_head_output and the head's weights.")
flags.DEFINE_bool("freeze_batch_norm", False, "BN uses (and keeps) its moving statistics even with training=True.")
flags.DEFINE_integer("keep_hub_module_max", None, "Modules to keep in export_dir, newest steps first (as the "
                     "reference). Default: the run's export.keep_hub_module_max (config.json), 1 unless set.")
flags.DEFINE_string("keras_file", None, "Write a native Keras 3 .keras file (built-in layers only: loads without "
                    "simclr_tf, with safe_mode) to this path instead of a module.")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.model_dir:
        sys.exit("error: --model_dir must be set (a simclr_tf.run model_dir)")
    tf.get_logger().setLevel("WARNING")  # SavedModel's INFO lines would hide the result.
    try:
        if FLAGS.keras_file:
            print(f"exported {export_keras_file(FLAGS.model_dir, FLAGS.keras_file, checkpoint=FLAGS.checkpoint)}")
            return
        path = export_checkpoint(
            FLAGS.model_dir, checkpoint=FLAGS.checkpoint, export_dir=FLAGS.export_dir,
            include_projection_head=FLAGS.include_projection_head, freeze_batch_norm=FLAGS.freeze_batch_norm,
            keep=FLAGS.keep_hub_module_max,
        )
    except UserError as error:
        cli_errors.exit_with(error)
    print(f"exported {path}")


if __name__ == "__main__":
    app.run(main)
