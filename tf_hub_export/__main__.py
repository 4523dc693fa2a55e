"""python -m tf_hub_export --model_dir=DIR [--checkpoint=CKPT] [--export_dir=DIR/saved_model]"""

import sys

from absl import app, flags

flags.DEFINE_string("model_dir", None, "A simclr_tf.run model_dir (holds config.json and checkpoints).")
flags.DEFINE_string("checkpoint", None, "Checkpoint to export; default: the newest in model_dir.")
flags.DEFINE_string("export_dir", None, "Where versioned exports go (<export_dir>/<step>/); default model_dir/saved_model.")
flags.DEFINE_bool("include_projection_head", True, "Also export proj_head_input / proj_head_output.")
flags.DEFINE_bool("freeze_batch_norm", False, "BN uses moving statistics even when called with training=True.")
flags.DEFINE_integer("keep_hub_module_max", 1, "Exports to keep in export_dir (newest first).")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.model_dir:
        sys.exit("error: --model_dir must be set")
    from tf_hub_export.exporter import export_checkpoint

    try:
        path = export_checkpoint(
            FLAGS.model_dir, checkpoint=FLAGS.checkpoint, export_dir=FLAGS.export_dir,
            include_projection_head=FLAGS.include_projection_head, freeze_batch_norm=FLAGS.freeze_batch_norm,
            keep=FLAGS.keep_hub_module_max,
        )
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {' '.join(str(error).split())}")
    print(f"exported {path}")


if __name__ == "__main__":
    app.run(main)
