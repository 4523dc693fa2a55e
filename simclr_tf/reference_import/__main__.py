"""python -m simclr_tf.reference_import SRC --model_dir=DIR [--tolerance=1e-5] [--verify] [options]

Imports an original google-research/simclr TF2 model - a SavedModel (.../saved_model/ or
.../saved_model/<step>/, the published format) or a checkpoint (.../ckpt-<step>, or a
directory of them) - as a simclr_tf.run model_dir: prints the inferred architecture and
the number of variables mapped, and writes DIR (config.json, ckpt-<step>). The weights
are read as data (object graph and checkpoint reader), never by running the SavedModel.
With --verify (default for a local SavedModel) it then loads the original module, runs
both models on the same random images (inference mode) and prints, per named output,
max |ours - theirs| and that divided by max |theirs|; above --tolerance it writes
nothing and exits 1.
"""

from __future__ import annotations

import tensorflow as tf
from absl import app, flags

from simclr_tf import cli_errors
from simclr_tf.errors import UserError
from simclr_tf.reference_import.api import DEFAULT_TOLERANCE, OutputMismatchError, import_reference
from simclr_tf.reference_import.compare import OutputDifference

flags.DEFINE_string("model_dir", None, "New directory for the imported run (must not exist, or be empty).")
flags.DEFINE_float("tolerance", DEFAULT_TOLERANCE, "Largest allowed max|ours - theirs| / max|theirs| of any named "
                   "output (SavedModel sources); negative: as --noverify.")
flags.DEFINE_bool("verify", None, "Load the original SavedModel and compare both models' outputs before writing "
                  "(default: on for local SavedModels, off for gs:// and other remote ones). Loading a SavedModel "
                  "runs its graph; the weights themselves are always read as data, never by running it.")
flags.DEFINE_integer("image_size", None, "Image size of the run (and of the comparison); default 32 with the "
                     "CIFAR stem, else 224.")
flags.DEFINE_integer("compare_batch_size", 4, "Random images the comparison runs.")
flags.DEFINE_float("batch_norm_decay", 0.9, "The original run's --batch_norm_decay (not stored in its weights).")
flags.DEFINE_enum("train_mode", "pretrain", ["pretrain", "finetune"], "The run's train_mode.")
flags.DEFINE_integer("ft_proj_selector", 0, "The original run's --ft_proj_selector (not stored in its weights).")
FLAGS = flags.FLAGS


def format_differences(differences: dict[str, OutputDifference], tolerance: float) -> str:
    width = max(len(name) for name in differences)
    lines = [f"{'output':<{width}}  {'max abs diff':>12}  {'relative':>10}"]
    for name, d in differences.items():
        flag = "" if d.relative <= tolerance else "  > tolerance"
        lines.append(f"{name:<{width}}  {d.max_abs:12.3g}  {d.relative:10.3g}{flag}")
    return "\n".join(lines)


def main(argv):
    if len(argv) != 2:
        raise app.UsageError("expected one SRC: an original SimCLR SavedModel directory or checkpoint")
    if not FLAGS.model_dir:
        cli_errors.exit_with(UserError("--model_dir must be set (a new directory for the imported run)"))
    tf.get_logger().setLevel("ERROR")  # Loading a SavedModel warns once per function.
    tolerance = FLAGS.tolerance
    verify = FLAGS.verify if FLAGS.tolerance >= 0 else False  # A negative tolerance: the older way to skip it.
    try:
        result = import_reference(argv[1], FLAGS.model_dir, tolerance=tolerance, verify=verify,
                                  image_size=FLAGS.image_size,
                                  compare_batch_size=FLAGS.compare_batch_size,
                                  batch_norm_decay=FLAGS.batch_norm_decay, train_mode=FLAGS.train_mode,
                                  ft_proj_selector=FLAGS.ft_proj_selector)
    except OutputMismatchError as error:
        print(format_differences(error.differences, tolerance))
        cli_errors.exit_with(error)
    except UserError as error:
        cli_errors.exit_with(error)
    print(f"source: {result.source} ({result.style}, step {result.step})")
    print(f"architecture: {result.architecture.describe()}")
    print(f"mapped {result.num_variables} variables")
    if result.differences is not None:
        print(format_differences(result.differences, tolerance))
    print(f"wrote {result.model_dir} ({result.checkpoint})")


if __name__ == "__main__":
    app.run(main)
